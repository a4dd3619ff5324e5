// SCRAM-SHA-256 server (RFC 5802, RFC 7677) without channel binding: the gs2 flags
// `n` (client does not support it) and `y` (client does, but thinks we don't: true,
// we never advertise SCRAM-SHA-256-PLUS) are accepted; `p=` is refused (RFC 5802 §6).
//
//   C: n,,n=user,r=<client nonce>                       client-first-message
//   S: r=<client nonce><server nonce>,s=<salt>,i=4096   server-first-message
//   C: c=biws,r=<nonce>,p=<ClientProof>                 client-final-message
//   S: v=<ServerSignature>   or   e=<error>             server-final-message
//
// Unknown accounts get a salt derived from the name with a server secret (HMAC), so
// server-first looks the same whether or not the account exists (RFC 5802 §9), and the
// exchange fails only at the proof, with `e=invalid-proof`.

import Crypto
import FacteurStore

struct SCRAMServer: Sendable {
    /// RFC 5802 §7 `printable`: %x21-2B / %x2D-7E, anything visible but the comma.
    static func isPrintable(_ byte: UInt8) -> Bool { (0x21...0x7E).contains(byte) && byte != UInt8(ascii: ",") }

    /// A parsed client-first-message.
    struct ClientFirst: Sendable {
        /// `gs2-header`, kept byte for byte: `c=` must echo it (RFC 5802 §7).
        var gs2Header: [UInt8]
        var authzid: String?
        var username: String
        var clientNonce: String
        /// `client-first-message-bare`, part of AuthMessage.
        var bare: String
    }

    private enum State: Sendable {
        case start
        case awaitingClientFirst
        case awaitingCredentials(ClientFirst)
        case awaitingClientFinal(ClientFirst, serverFirst: String, nonce: String, keys: SCRAMCredentials, isGenuine: Bool)
        case done
    }

    private var state = State.start
    private let options: SASLOptions

    init(options: SASLOptions) { self.options = options }

    mutating func step(_ response: [UInt8]?) -> SASLStep {
        switch state {
        case .start:
            // No initial response: send an empty challenge to get client-first.
            guard let response else { state = .awaitingClientFirst; return .challenge([]) }
            return clientFirst(response)
        case .awaitingClientFirst:
            guard let response else { return fail(.malformed, "invalid-encoding") }
            return clientFirst(response)
        case .awaitingClientFinal(let first, let serverFirst, let nonce, let keys, let isGenuine):
            guard let response else { return fail(.malformed, "invalid-encoding") }
            return clientFinal(response, first: first, serverFirst: serverFirst, nonce: nonce, keys: keys, isGenuine: isGenuine)
        case .awaitingCredentials, .done:
            return outOfTurn()
        }
    }

    mutating func provide(_ credentials: StoredCredentials?) -> SASLStep {
        guard case .awaitingCredentials(let first) = state else { return outOfTurn() }
        let stored = credentials?.scramSHA256.flatMap { try? SCRAMCredentials(rfc5803: $0) }
        // An account without SCRAM keys cannot use SCRAM: it is treated like an unknown
        // one (and can log in with PLAIN, which adds the keys; see `Authenticator`).
        let keys = stored ?? fakeCredentials(for: first.username)

        var serverPart = options.serverNonce()
        if serverPart.isEmpty || serverPart.utf8.count > 128 || !serverPart.utf8.allSatisfy(Self.isPrintable) {
            serverPart = SASLOptions.randomNonce()
        }
        let nonce = first.clientNonce + serverPart
        let serverFirst = "r=\(nonce),s=\(Bytes.base64(keys.salt)),i=\(keys.iterations)"
        state = .awaitingClientFinal(first, serverFirst: serverFirst, nonce: nonce, keys: keys, isGenuine: stored != nil)
        return .challenge(Array(serverFirst.utf8))
    }

    mutating func outOfTurn() -> SASLStep { fail(.malformed, "other-error") }

    // MARK: - client-first-message

    // Parsing is done on bytes, not Characters: a comma followed by a combining mark is
    // one Swift Character, which would move the field boundaries (SWIFT-NOTES §8.3).
    private typealias Field = ArraySlice<UInt8>

    // client-first-message = gs2-header client-first-message-bare
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    private mutating func clientFirst(_ message: [UInt8]) -> SASLStep {
        guard !message.isEmpty, message.count <= options.maximumMessageLength,
              String(validating: message, as: UTF8.self) != nil else { return fail(.malformed, "invalid-encoding") }
        let parts = message.split(separator: Self.comma, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return fail(.malformed, "invalid-encoding") }

        // gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
        if parts[0].starts(with: Self.bytes("p=")) { return fail(.authenticationFailed, "channel-binding-not-supported") }
        guard parts[0].elementsEqual(Self.bytes("n")) || parts[0].elementsEqual(Self.bytes("y")) else {
            return fail(.malformed, "invalid-encoding")
        }
        // authzid = "a=" saslname
        var authzid: String?
        if !parts[1].isEmpty {
            guard let name = Self.value(parts[1], "a"), let decoded = Self.decodeSASLName(name), !decoded.isEmpty else {
                return fail(.malformed, "invalid-encoding")
            }
            authzid = decoded
        }
        let bare = parts[2]
        let gs2Header = Array(message[..<bare.startIndex])

        let attributes = bare.split(separator: Self.comma, omittingEmptySubsequences: false)
        guard attributes.count >= 2 else { return fail(.malformed, "invalid-encoding") }
        // reserved-mext = "m=" 1*(value-char): a mandatory extension we do not know.
        if Self.value(attributes[0], "m") != nil { return fail(.malformed, "extensions-not-supported") }
        guard let encodedName = Self.value(attributes[0], "n"), let rawName = Self.decodeSASLName(encodedName),
              !rawName.isEmpty else {
            return fail(.malformed, "invalid-username-encoding")
        }
        guard let clientNonce = Self.value(attributes[1], "r"), !clientNonce.isEmpty,
              clientNonce.allSatisfy(Self.isPrintable) else {
            return fail(.malformed, "invalid-encoding")
        }
        // Optional extensions (attr-val) after the nonce are ignored, as RFC 5802 §5.1 allows.
        guard attributes.dropFirst(2).allSatisfy(Self.isAttributeValue) else { return fail(.malformed, "invalid-encoding") }

        guard let username = Credentials.normalizeUsername(rawName) else {
            return fail(.authenticationFailed, "invalid-username-encoding")
        }
        state = .awaitingCredentials(ClientFirst(gs2Header: gs2Header, authzid: authzid, username: username,
                                                 clientNonce: String(decoding: clientNonce, as: UTF8.self),
                                                 bare: String(decoding: bare, as: UTF8.self)))
        return .needCredentials(authcid: username)
    }

    // MARK: - client-final-message

    // client-final-message-without-proof = channel-binding "," nonce ["," extensions]
    // client-final-message = client-final-message-without-proof "," proof
    private mutating func clientFinal(_ message: [UInt8], first: ClientFirst, serverFirst: String, nonce: String,
                                      keys: SCRAMCredentials, isGenuine: Bool) -> SASLStep {
        guard !message.isEmpty, message.count <= options.maximumMessageLength,
              String(validating: message, as: UTF8.self) != nil else { return fail(.malformed, "invalid-encoding") }
        let attributes = message.split(separator: Self.comma, omittingEmptySubsequences: false)
        guard attributes.count >= 3, let proofAttribute = attributes.last,
              let encodedProof = Self.value(proofAttribute, "p"),
              let encodedBinding = Self.value(attributes[0], "c"),
              let finalNonce = Self.value(attributes[1], "r"),
              attributes.dropFirst(2).dropLast().allSatisfy(Self.isAttributeValue) else {
            return fail(.malformed, "invalid-encoding")
        }
        // c= is base64(gs2-header [cbind-data]); without channel binding, exactly the
        // gs2-header of client-first (so "biws" for "n,,").
        guard let binding = Bytes.decodeBase64(Self.substring(encodedBinding)) else {
            return fail(.malformed, "invalid-encoding")
        }
        guard binding == first.gs2Header else { return fail(.authenticationFailed, "channel-bindings-dont-match") }
        // The nonce must be the combined one we sent, client part first (RFC 5802 §5.1).
        // Compared as bytes: String equality would accept canonically equivalent text.
        guard finalNonce.elementsEqual(nonce.utf8) else { return fail(.authenticationFailed, "other-error") }
        guard let proof = Bytes.decodeBase64(Self.substring(encodedProof)) else { return fail(.malformed, "invalid-encoding") }

        // proofAttribute.startIndex - 1 is the comma before "p=".
        let withoutProof = message[..<(proofAttribute.startIndex - 1)]
        let authMessage = Array(first.bare.utf8) + Self.bytes(",") + Array(serverFirst.utf8) + Self.bytes(",") + Array(withoutProof)

        // RFC 5802 §3: ClientSignature = HMAC(StoredKey, AuthMessage);
        // ClientKey = ClientProof XOR ClientSignature; accept if H(ClientKey) == StoredKey.
        let clientSignature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: keys.storedKey)))
        var proofMatches = false
        if proof.count == clientSignature.count {
            let clientKey = zip(proof, clientSignature).map { $0 ^ $1 }
            proofMatches = Bytes.constantTimeEquals(Array(SHA256.hash(data: clientKey)), keys.storedKey)
        }
        guard proofMatches && isGenuine else { return fail(.authenticationFailed, "invalid-proof") }
        guard authorizationMatches(authzid: first.authzid, authcid: first.username) else {
            return fail(.authorizationFailed, "other-error")
        }

        let serverSignature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: keys.serverKey)))
        state = .done
        return .success(authcid: first.username, authzid: first.authzid.flatMap(Credentials.normalizeUsername),
                        finalData: Array("v=\(Bytes.base64(serverSignature))".utf8))
    }

    // MARK: - Helpers

    /// A stable, plausible salt and iteration count for a name that has no SCRAM keys;
    /// the keys themselves are random, so no proof can match them.
    private func fakeCredentials(for username: String) -> SCRAMCredentials {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("scram-sha-256 salt\u{0}\(username)".utf8),
                                                  using: options.unknownUserSecret)
        return SCRAMCredentials(iterations: options.unknownUserIterations,
                                salt: Array(Array(mac).prefix(SCRAMCredentials.defaultSaltLength)),
                                storedKey: Bytes.random(count: SCRAMCredentials.keyLength),
                                serverKey: Bytes.random(count: SCRAMCredentials.keyLength))
    }

    private static let comma = UInt8(ascii: ",")
    private static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
    private static func substring(_ field: Field) -> Substring { String(decoding: field, as: UTF8.self)[...] }

    /// The value of `<name>=<value>` when `field` has that attribute name, else nil.
    private static func value(_ field: Field, _ name: Character) -> Field? {
        guard let nameByte = name.asciiValue, field.count >= 2, field.first == nameByte,
              field[field.startIndex + 1] == UInt8(ascii: "=") else { return nil }
        return field.dropFirst(2)
    }

    /// saslname (RFC 5802 §7): "," is sent as "=2C" and "=" as "=3D"; any other "="
    /// is an error. The result must be UTF-8.
    static func decodeSASLName(_ encoded: ArraySlice<UInt8>) -> String? {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(encoded.count)
        var index = encoded.startIndex
        while index < encoded.endIndex {
            let byte = encoded[index]
            guard byte == UInt8(ascii: "=") else { decoded.append(byte); index += 1; continue }
            let escape = encoded[index...].prefix(3)
            if escape.elementsEqual("=2C".utf8) {
                decoded.append(UInt8(ascii: ","))
            } else if escape.elementsEqual("=3D".utf8) {
                decoded.append(UInt8(ascii: "="))
            } else {
                return nil
            }
            index += 3
        }
        return String(validating: decoded, as: UTF8.self)
    }

    /// attr-val = ALPHA "=" value (RFC 5802 §7).
    private static func isAttributeValue(_ field: Field) -> Bool {
        guard field.count >= 2, let first = field.first, field[field.startIndex + 1] == UInt8(ascii: "=") else { return false }
        return (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(first)
    }

    private mutating func fail(_ reason: SASLFailure.Reason, _ scramError: String) -> SASLStep {
        state = .done
        return .failure(SASLFailure(reason, scramError: scramError))
    }
}
