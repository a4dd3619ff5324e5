// Helpers shared by FacteurIdentity's tests: a minimal SCRAM-SHA-256 client written
// from RFC 5802 §3 (so the server can be driven with any message we like), cheap scrypt
// parameters so tests stay fast in debug builds, and a manual clock.

import Crypto
import FacteurStore
import Foundation
import XCTest
@testable import FacteurIdentity

/// ln=10 (1 MiB): fast enough for many tests in a debug build.
let cheapHasher = PasswordHasher(parameters: ScryptParameters(logN: 10, r: 8, p: 1))

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// RFC 5802 §3 client-side computations.
struct TestSCRAMClient {
    var password: String

    /// The client-final-message for `serverFirst`, given the client-first-message-bare
    /// and the exact `c=`/`r=` part the client wants to send.
    func clientFinal(clientFirstBare: String, serverFirst: String, withoutProof: String) throws -> String {
        let fields = Dictionary(uniqueKeysWithValues: serverFirst.split(separator: ",").map {
            (String($0.prefix(1)), String($0.dropFirst(2)))
        })
        let salt = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(fields["s"])))
        let iterations = try XCTUnwrap(Int(try XCTUnwrap(fields["i"])))
        let salted = Self.hi(password: bytes(password), salt: Array(salt), iterations: iterations)
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: bytes("Client Key"), using: salted))
        let storedKey = SymmetricKey(data: SHA256.hash(data: clientKey))
        let authMessage = "\(clientFirstBare),\(serverFirst),\(withoutProof)"
        let signature = Array(HMAC<SHA256>.authenticationCode(for: bytes(authMessage), using: storedKey))
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        return "\(withoutProof),p=\(Data(proof).base64EncodedString())"
    }

    /// RFC 5802 §2.2 Hi(str, salt, i): PBKDF2 with HMAC-SHA-256 and one output block,
    /// written out here so the test client does not share the server's PBKDF2 call.
    static func hi(password: [UInt8], salt: [UInt8], iterations: Int) -> SymmetricKey {
        let key = SymmetricKey(data: password)
        var u = Array(HMAC<SHA256>.authenticationCode(for: salt + [0, 0, 0, 1], using: key))
        var result = u
        for _ in 1..<iterations {
            u = Array(HMAC<SHA256>.authenticationCode(for: u, using: key))
            for index in result.indices { result[index] ^= u[index] }
        }
        return SymmetricKey(data: result)
    }

    /// The server signature the client expects in `v=`.
    func serverSignature(clientFirstBare: String, serverFirst: String, withoutProof: String) throws -> String {
        let fields = Dictionary(uniqueKeysWithValues: serverFirst.split(separator: ",").map {
            (String($0.prefix(1)), String($0.dropFirst(2)))
        })
        let salt = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(fields["s"])))
        let iterations = try XCTUnwrap(Int(try XCTUnwrap(fields["i"])))
        let salted = Self.hi(password: bytes(password), salt: Array(salt), iterations: iterations)
        let serverKey = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: bytes("Server Key"), using: salted))
        let authMessage = "\(clientFirstBare),\(serverFirst),\(withoutProof)"
        return "v=" + Data(HMAC<SHA256>.authenticationCode(for: bytes(authMessage), using: serverKey)).base64EncodedString()
    }
}

/// The nonce of a server-first-message (`r=` value).
func nonce(of serverFirst: String) -> String {
    String(serverFirst.split(separator: ",").first { $0.hasPrefix("r=") }?.dropFirst(2) ?? "")
}

/// A clock tests move by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = ContinuousClock.now
    var now: ContinuousClock.Instant { lock.withLock { current } }
    func advance(by duration: Duration) { lock.withLock { current = current + duration } }
}

/// Records the delays an `Authenticator` asks to wait, without waiting.
final class SleepRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Duration] = []
    var delays: [Duration] { lock.withLock { recorded } }
    func sleep(_ duration: Duration) { lock.withLock { recorded.append(duration) } }
}
