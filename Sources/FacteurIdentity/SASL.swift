// SASL (RFC 4422) server mechanisms as pure state machines: the protocol layer (SMTP
// AUTH RFC 4954, IMAP AUTHENTICATE RFC 9051 §6.2.2, POP3 AUTH RFC 5034) decodes base64,
// feeds the client's bytes to `step`, and acts on the `SASLStep` it gets back. Looking
// accounts up and running the slow password KDF are left to the caller (or to
// `Authenticator`), so a mechanism never blocks and never does I/O.

import Crypto
import FacteurStore

/// What a mechanism asks of its caller next.
public enum SASLStep: Sendable, Equatable, CustomStringConvertible {
    /// Send these bytes to the client (base64-encoded by the protocol) and call
    /// `step` with its answer. An empty challenge is a valid challenge.
    case challenge([UInt8])
    /// SCRAM: look `authcid` up (already normalised) and call `provide(_:)` with what
    /// the store has, or `nil` for an unknown account.
    case needCredentials(authcid: String)
    /// PLAIN and LOGIN: look `authcid` up, check `password` against its hash off the
    /// event loop (`Credentials.verify`), and call `passwordChecked(_:)`.
    case verifyPassword(authcid: String, password: String)
    /// Authenticated. `authzid` is the requested authorisation identity if the client
    /// sent one (it equals `authcid`: proxy authorisation is not offered). `finalData`
    /// is the mechanism's additional data with success (SCRAM's `v=` message).
    case success(authcid: String, authzid: String?, finalData: [UInt8]?)
    case failure(SASLFailure)

    /// Never shows the password, so a step can be logged.
    public var description: String {
        switch self {
        case .challenge(let bytes): return "challenge(\(bytes.count) bytes)"
        case .needCredentials(let authcid): return "needCredentials(\(authcid))"
        case .verifyPassword(let authcid, _): return "verifyPassword(\(authcid), <redacted>)"
        case .success(let authcid, let authzid, let finalData):
            return "success(\(authcid), authzid: \(authzid ?? "-"), finalData: \(finalData?.count ?? 0) bytes)"
        case .failure(let failure): return "failure(\(failure))"
        }
    }
}

/// Why an exchange failed, in terms each protocol maps to its own replies.
public struct SASLFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// The client's message broke the mechanism's syntax (SMTP 501 5.5.2, IMAP BAD).
        case malformed
        /// Wrong password or proof, or no such account: the two are never told apart
        /// (SMTP 535 5.7.8, IMAP NO [AUTHENTICATIONFAILED], POP3 -ERR [AUTH]).
        case authenticationFailed
        /// Authenticated, but asked to act as someone else (SMTP 535 5.7.8,
        /// IMAP NO [AUTHORIZATIONFAILED]).
        case authorizationFailed
        /// The client cancelled with "*" (SMTP 501 5.0.0, IMAP BAD).
        case cancelled
        /// Not the client's fault: the store failed or the server is too busy to hash
        /// (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]).
        case temporarilyUnavailable
        /// Too many recent failures from this client or for this account; try again
        /// after the delay (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE]).
        case tooManyFailures(retryAfter: Duration)
    }

    public var reason: Reason
    /// SCRAM's server-error-value (RFC 5802 §7), e.g. `invalid-proof`. A protocol may
    /// send `serverFinalMessage` to the client before failing; none is required to.
    public var scramError: String?

    public init(_ reason: Reason, scramError: String? = nil) { self.reason = reason; self.scramError = scramError }

    /// `e=<scramError>`, SCRAM's server-final-message for a failure.
    public var serverFinalMessage: [UInt8]? { scramError.map { Array("e=\($0)".utf8) } }

    public var description: String {
        let base: String
        switch reason {
        case .malformed: base = "malformed"
        case .authenticationFailed: base = "authentication failed"
        case .authorizationFailed: base = "authorization failed"
        case .cancelled: base = "cancelled"
        case .temporarilyUnavailable: base = "temporarily unavailable"
        case .tooManyFailures(let retryAfter): base = "too many failures (retry after \(retryAfter))"
        }
        return scramError.map { "\(base) (e=\($0))" } ?? base
    }

    static let malformed = SASLFailure(.malformed)
    static let authenticationFailed = SASLFailure(.authenticationFailed)
    static let authorizationFailed = SASLFailure(.authorizationFailed)
}

/// Settings shared by every exchange of a server.
public struct SASLOptions: Sendable {
    /// Secret from which SCRAM salts for unknown accounts are derived (RFC 5802 §9
    /// suggests answering for unknown users as if they existed). Keep it stable across
    /// restarts (persist it in the data folder), or a client could see a "user"'s salt
    /// change after a restart and learn that the account does not exist.
    public var unknownUserSecret: SymmetricKey
    /// Iteration count announced for unknown accounts: the count real accounts use.
    public var unknownUserIterations: Int
    /// The server's half of the SCRAM nonce: random by default; tests inject a fixed one.
    /// It must be printable ASCII without commas (RFC 5802 §7 `printable`).
    public var serverNonce: @Sendable () -> String
    /// Longest message accepted from a client, in bytes, for any mechanism.
    public var maximumMessageLength: Int

    public init(unknownUserSecret: SymmetricKey = SymmetricKey(size: .bits256),
                unknownUserIterations: Int = SCRAMCredentials.defaultIterations,
                serverNonce: @escaping @Sendable () -> String = SASLOptions.randomNonce,
                maximumMessageLength: Int = 4096) {
        self.unknownUserSecret = unknownUserSecret
        self.unknownUserIterations = unknownUserIterations
        self.serverNonce = serverNonce
        self.maximumMessageLength = maximumMessageLength
    }

    /// 18 random bytes in base64 (24 printable characters, no comma).
    @Sendable public static func randomNonce() -> String { Bytes.base64(Bytes.random(count: 18)) }
}

/// One SASL exchange, server side, for a mechanism chosen by name.
public struct SASLMechanism: Sendable {
    public enum Name: String, Sendable, CaseIterable {
        case scramSHA256 = "SCRAM-SHA-256"
        case plain = "PLAIN"
        case login = "LOGIN"
    }

    private enum Machine: Sendable {
        case plain(PlainServer)
        case login(LoginServer)
        case scram(SCRAMServer)
    }

    public let name: Name
    private var machine: Machine

    /// `nil` for a mechanism we do not offer. Names are ASCII and case-insensitive
    /// (RFC 4422 §3.1); only ASCII is folded, so "plaın" (dotless i) is not PLAIN.
    public init?(name: String, options: SASLOptions = SASLOptions()) {
        guard name.utf8.count <= 20, name.utf8.allSatisfy({ $0 < 0x80 }),
              let known = Name(rawValue: name.uppercased()) else { return nil }
        self.init(known, options: options)
    }

    public init(_ name: Name, options: SASLOptions = SASLOptions()) {
        self.name = name
        switch name {
        case .plain: machine = .plain(PlainServer(options: options))
        case .login: machine = .login(LoginServer(options: options))
        case .scramSHA256: machine = .scram(SCRAMServer(options: options))
        }
    }

    /// Feeds the client's response (already base64-decoded). `nil` means the client sent
    /// no initial response (as opposed to an empty one, `[]`).
    public mutating func step(_ clientResponse: [UInt8]?) -> SASLStep {
        switch machine {
        case .plain(var m): defer { machine = .plain(m) }; return m.step(clientResponse)
        case .login(var m): defer { machine = .login(m) }; return m.step(clientResponse)
        case .scram(var m): defer { machine = .scram(m) }; return m.step(clientResponse)
        }
    }

    /// Answers `.needCredentials`. Other mechanisms fail if called out of turn.
    public mutating func provide(_ credentials: StoredCredentials?) -> SASLStep {
        switch machine {
        case .scram(var m): defer { machine = .scram(m) }; return m.provide(credentials)
        case .plain(var m): defer { machine = .plain(m) }; return m.outOfTurn()
        case .login(var m): defer { machine = .login(m) }; return m.outOfTurn()
        }
    }

    /// Answers `.verifyPassword` with whether the password matched.
    public mutating func passwordChecked(_ matches: Bool) -> SASLStep {
        switch machine {
        case .plain(var m): defer { machine = .plain(m) }; return m.passwordChecked(matches)
        case .login(var m): defer { machine = .login(m) }; return m.passwordChecked(matches)
        case .scram(var m): defer { machine = .scram(m) }; return m.outOfTurn()
        }
    }
}

/// RFC 4616 §2 / RFC 5802: an authzid equal to the authcid is no proxy at all.
func authorizationMatches(authzid: String?, authcid: String) -> Bool {
    guard let authzid else { return true }
    return Credentials.normalizeUsername(authzid) == authcid
}
