// PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login-00) servers. Both carry the
// password in clear, so protocol layers offer them only under TLS (RFC 4954 §4,
// RFC 9051 §6.2.2); that policy lives there, not here.

import FacteurStore

/// RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd.
struct PlainServer: Sendable {
    /// RFC 4616 §2 asks for at least 255 octets per field; we take passphrases longer.
    static let maximumFieldLength = Credentials.maximumPasswordBytes

    private enum State: Sendable {
        case start, awaitingMessage, awaitingCheck(authcid: String, authzid: String?), done
    }

    private var state = State.start
    private let maximumMessageLength: Int

    init(options: SASLOptions) { maximumMessageLength = options.maximumMessageLength }

    mutating func step(_ response: [UInt8]?) -> SASLStep {
        switch state {
        case .start:
            // No initial response: RFC 4422 §5 "an empty challenge" asks for it.
            guard let response else { state = .awaitingMessage; return .challenge([]) }
            return parse(response)
        case .awaitingMessage:
            guard let response else { return fail(.malformed) }
            return parse(response)
        case .awaitingCheck, .done:
            return outOfTurn()
        }
    }

    mutating func passwordChecked(_ matches: Bool) -> SASLStep {
        guard case .awaitingCheck(let authcid, let authzid) = state else { return outOfTurn() }
        guard matches else { return fail(.authenticationFailed) }
        guard authorizationMatches(authzid: authzid, authcid: authcid) else { return fail(.authorizationFailed) }
        state = .done
        return .success(authcid: authcid, authzid: authzid.flatMap(Credentials.normalizeUsername), finalData: nil)
    }

    mutating func outOfTurn() -> SASLStep { fail(.malformed) }

    private mutating func parse(_ message: [UInt8]) -> SASLStep {
        guard message.count <= maximumMessageLength else { return fail(.malformed) }
        let fields = message.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3,
              !fields[2].contains(0),
              fields.allSatisfy({ $0.count <= Self.maximumFieldLength }),
              let authzid = String(validating: fields[0], as: UTF8.self),
              let authcid = String(validating: fields[1], as: UTF8.self),
              let password = String(validating: fields[2], as: UTF8.self),
              !authcid.isEmpty, !password.isEmpty else {
            return fail(.malformed)
        }
        guard let user = Credentials.normalizeUsername(authcid) else { return fail(.authenticationFailed) }
        state = .awaitingCheck(authcid: user, authzid: authzid.isEmpty ? nil : authzid)
        return .verifyPassword(authcid: user, password: password)
    }

    private mutating func fail(_ failure: SASLFailure) -> SASLStep {
        state = .done
        return .failure(failure)
    }
}

/// draft-murchison-sasl-login-00: the server asks "Username:" then "Password:"; each
/// answer is one client response. Some clients put the user name in the initial
/// response (`AUTH LOGIN <base64 name>`); that is accepted too.
struct LoginServer: Sendable {
    static let usernameChallenge = Array("Username:".utf8)
    static let passwordChallenge = Array("Password:".utf8)

    private enum State: Sendable {
        case start, awaitingUsername, awaitingPassword(authcid: String), awaitingCheck(authcid: String), done
    }

    private var state = State.start
    private let maximumMessageLength: Int

    init(options: SASLOptions) { maximumMessageLength = min(options.maximumMessageLength, Credentials.maximumPasswordBytes) }

    mutating func step(_ response: [UInt8]?) -> SASLStep {
        switch state {
        case .start:
            guard let response else { state = .awaitingUsername; return .challenge(Self.usernameChallenge) }
            return username(response)
        case .awaitingUsername:
            guard let response else { return fail(.malformed) }
            return username(response)
        case .awaitingPassword(let authcid):
            guard let response, response.count <= maximumMessageLength, !response.contains(0),
                  let password = String(validating: response, as: UTF8.self) else { return fail(.malformed) }
            // An empty password cannot match anything; failing at once tells nothing
            // about the account, since it is refused the same way for every name.
            guard !password.isEmpty else { return fail(.authenticationFailed) }
            state = .awaitingCheck(authcid: authcid)
            return .verifyPassword(authcid: authcid, password: password)
        case .awaitingCheck, .done:
            return outOfTurn()
        }
    }

    mutating func passwordChecked(_ matches: Bool) -> SASLStep {
        guard case .awaitingCheck(let authcid) = state else { return outOfTurn() }
        guard matches else { return fail(.authenticationFailed) }
        state = .done
        return .success(authcid: authcid, authzid: nil, finalData: nil)
    }

    mutating func outOfTurn() -> SASLStep { fail(.malformed) }

    private mutating func username(_ response: [UInt8]) -> SASLStep {
        guard !response.isEmpty, response.count <= maximumMessageLength, !response.contains(0),
              let name = String(validating: response, as: UTF8.self) else { return fail(.malformed) }
        guard let user = Credentials.normalizeUsername(name) else { return fail(.authenticationFailed) }
        state = .awaitingPassword(authcid: user)
        return .challenge(Self.passwordChallenge)
    }

    private mutating func fail(_ failure: SASLFailure) -> SASLStep {
        state = .done
        return .failure(failure)
    }
}
