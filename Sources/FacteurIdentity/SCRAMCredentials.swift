// SCRAM-SHA-256 keys (RFC 5802 §3, RFC 7677) and their stored form (RFC 5803 §3):
//
//     SCRAM-SHA-256$<iteration count>:<salt, base64>$<StoredKey, base64>:<ServerKey, base64>
//
// The server never keeps the password or SaltedPassword, only StoredKey (to check the
// client's proof) and ServerKey (to prove itself to the client).

import Crypto
import _CryptoExtras

public struct SCRAMCredentials: Sendable, Equatable {
    public static let scheme = "SCRAM-SHA-256"
    /// RFC 7677 §4: at least 4096 iterations.
    public static let minimumIterations = 4096
    public static let defaultIterations = 4096
    /// Stored values above this are refused: every login makes the client (and, when
    /// the keys are made, the server) run that many PBKDF2 rounds.
    public static let maximumIterations = 10_000_000
    public static let defaultSaltLength = 16
    static let keyLength = SHA256.byteCount

    public var iterations: Int
    public var salt: [UInt8]
    public var storedKey: [UInt8]
    public var serverKey: [UInt8]

    public init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations; self.salt = salt; self.storedKey = storedKey; self.serverKey = serverKey
    }

    /// Derives the keys from an already SASLprep-ed password (RFC 5802 §3):
    /// SaltedPassword = Hi(password, salt, i) (PBKDF2-HMAC-SHA-256),
    /// ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey),
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    public static func derive(preparedPassword password: [UInt8], salt: [UInt8],
                              iterations: Int) throws(SCRAMCredentialsError) -> SCRAMCredentials {
        guard !password.isEmpty else { throw .emptyPassword }
        guard !salt.isEmpty else { throw .malformed("empty salt") }
        guard (1...maximumIterations).contains(iterations) else { throw .malformed("iteration count out of range") }
        let salted: SymmetricKey
        do {
            salted = try KDF.Insecure.PBKDF2.deriveKey(from: password, salt: salt, using: .sha256,
                                                       outputByteCount: keyLength, unsafeUncheckedRounds: iterations)
        } catch {
            throw .derivationFailed
        }
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: salted))
        let serverKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: salted))
        return SCRAMCredentials(iterations: iterations, salt: salt,
                                storedKey: Array(SHA256.hash(data: clientKey)), serverKey: serverKey)
    }

    /// Parses RFC 5803's `SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>`.
    public init(rfc5803 text: String) throws(SCRAMCredentialsError) {
        guard text.utf8.count <= 1024 else { throw .malformed("too long") }
        let parts = text.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == Self.scheme else { throw .malformed("expected SCRAM-SHA-256$…$…") }
        let left = parts[1].split(separator: ":", omittingEmptySubsequences: false)
        let right = parts[2].split(separator: ":", omittingEmptySubsequences: false)
        guard left.count == 2, right.count == 2 else { throw .malformed("expected <i>:<salt>$<StoredKey>:<ServerKey>") }
        guard left[0].count <= 9, left[0].utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              let iterations = Int(left[0]), (1...Self.maximumIterations).contains(iterations) else {
            throw .malformed("bad iteration count")
        }
        guard let salt = Bytes.decodeBase64(left[1]), !salt.isEmpty, salt.count <= 128 else { throw .malformed("bad salt") }
        guard let storedKey = Bytes.decodeBase64(right[0]), storedKey.count == Self.keyLength,
              let serverKey = Bytes.decodeBase64(right[1]), serverKey.count == Self.keyLength else {
            throw .malformed("bad keys")
        }
        self.init(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
    }

    public var rfc5803: String {
        "\(Self.scheme)$\(iterations):\(Bytes.base64(salt))$\(Bytes.base64(storedKey)):\(Bytes.base64(serverKey))"
    }
}

public enum SCRAMCredentialsError: Error, Sendable, Equatable {
    case emptyPassword
    case malformed(String)
    case derivationFailed
}
