// AUTHENTICATE over IMAP (RFC 9051 §6.2.2) with SCRAM-SHA-256 (RFC 5802, RFC 7677), LOGIN
// (draft-murchison-sasl-login) and SASL-IR (RFC 4959), driven by a small SCRAM client written
// here from RFC 5802 §3 so that the server is checked against an independent computation.

import Crypto
import _CryptoExtras
import FacteurIdentity
@testable import FacteurIMAP
import Foundation
import XCTest

/// RFC 5802 §3 client side: enough to authenticate, and to check the server's signature.
struct SCRAMTestClient {
    let user: String
    let password: String
    let clientNonce: String
    var clientFirstBare: String { "n=\(user),r=\(clientNonce)" }
    var clientFirst: String { "n,," + clientFirstBare }
    private(set) var expectedServerSignature: [UInt8] = []

    init(user: String, password: String, clientNonce: String = "rOprNGfwEbeRWgbNEkqO") {
        self.user = user; self.password = password; self.clientNonce = clientNonce
    }

    static func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }

    /// The client-final-message for `serverFirst`, or nil if the server's message is malformed.
    mutating func clientFinal(serverFirst: String, proofTamper: Bool = false) throws -> String? {
        var fields: [Character: String] = [:]
        for part in serverFirst.split(separator: ",") where part.count >= 2 {
            fields[part.first!] = String(part.dropFirst(2))
        }
        guard let nonce = fields["r"], nonce.hasPrefix(clientNonce), nonce.count > clientNonce.count,
              let saltText = fields["s"], let salt = Data(base64Encoded: saltText),
              let iterationsText = fields["i"], let iterations = Int(iterationsText) else { return nil }
        let salted = try KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256,
                                                       outputByteCount: 32, unsafeUncheckedRounds: iterations)
        let saltedPassword = salted.withUnsafeBytes { Array($0) }
        let clientKey = Self.hmac(saltedPassword, Array("Client Key".utf8))
        let storedKey = Array(SHA256.hash(data: clientKey))
        let withoutProof = "c=biws,r=\(nonce)"
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        let signature = Self.hmac(storedKey, authMessage)
        var proof = zip(clientKey, signature).map { $0 ^ $1 }
        if proofTamper { proof[0] ^= 0xFF }
        let serverKey = Self.hmac(saltedPassword, Array("Server Key".utf8))
        expectedServerSignature = Self.hmac(serverKey, authMessage)
        return "\(withoutProof),p=\(Data(proof).base64EncodedString())"
    }
}

func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

/// The text after "+ " in a continuation request, base64-decoded.
func challenge(_ reply: String) -> String? {
    guard reply.hasPrefix("+ "), reply.hasSuffix("\r\n") else { return nil }
    // "\r\n" is one Character in Swift.
    let encoded = reply.dropFirst(2).dropLast(1)
    guard let data = Data(base64Encoded: String(encoded)) else { return nil }
    return String(decoding: data, as: UTF8.self)
}

final class IMAPSASLTests: IMAPStoreTestCase {
    func testSCRAMSHA256WithoutInitialResponse() async throws {
        var c = connect()
        var scram = SCRAMTestClient(user: "alice@example.org", password: "secret")
        // RFC 9051 §6.2.2: no initial response: the server sends an empty challenge first.
        let r1 = await c.send("a1 AUTHENTICATE SCRAM-SHA-256\r\n")
        XCTAssertEqual(r1, "+ \r\n")
        let r2 = await c.send(base64(scram.clientFirst) + "\r\n")
        let serverFirst = try XCTUnwrap(challenge(r2))
        XCTAssertTrue(serverFirst.hasPrefix("r=" + scram.clientNonce), serverFirst)
        XCTAssertTrue(serverFirst.contains(",i=4096"), serverFirst)
        let final = try XCTUnwrap(try scram.clientFinal(serverFirst: serverFirst))
        let r3 = await c.send(base64(final) + "\r\n")
        let serverFinal = try XCTUnwrap(challenge(r3))
        XCTAssertEqual(serverFinal, "v=" + Data(scram.expectedServerSignature).base64EncodedString(),
                       "the server proves it knows the password too")
        let done = await c.send("\r\n")
        XCTAssertTrue(done.hasPrefix("a1 OK [CAPABILITY IMAP4rev1 IMAP4rev2"), done)
        XCTAssertEqual(c.session.state, .authenticated)
        XCTAssertEqual(c.session.account?.address, "alice@example.org")
    }

    func testSCRAMSHA256WithSASLIR() async throws {
        var c = connect()
        var scram = SCRAMTestClient(user: "alice@example.org", password: "secret", clientNonce: "fyko+d2lbbFgONRv9qkxdawL")
        let r4 = await c.send("a1 AUTHENTICATE SCRAM-SHA-256 \(base64(scram.clientFirst))\r\n")
        let serverFirst = try XCTUnwrap(challenge(r4))
        let final = try XCTUnwrap(try scram.clientFinal(serverFirst: serverFirst))
        let r5 = await c.send(base64(final) + "\r\n")
        XCTAssertNotNil(challenge(r5))
        let r6 = await c.send("\r\n").hasPrefix("a1 OK")
        XCTAssertTrue(r6)
        XCTAssertEqual(c.session.state, .authenticated)
    }

    func testSCRAMWithWrongProofFails() async throws {
        var c = connect()
        var scram = SCRAMTestClient(user: "alice@example.org", password: "secret")
        let r7 = await c.send("a1 AUTHENTICATE SCRAM-SHA-256 \(base64(scram.clientFirst))\r\n")
        let serverFirst = try XCTUnwrap(challenge(r7))
        let final = try XCTUnwrap(try scram.clientFinal(serverFirst: serverFirst, proofTamper: true))
        let reply = await c.send(base64(final) + "\r\n")
        XCTAssertTrue(reply.hasPrefix("a1 NO [AUTHENTICATIONFAILED]"), reply)
        XCTAssertEqual(c.session.state, .notAuthenticated)
        // The session goes on.
        let r8 = await c.send("a2 NOOP\r\n")
        XCTAssertEqual(r8, "a2 OK NOOP completed\r\n")
    }

    func testSCRAMWithWrongPasswordFails() async throws {
        var c = connect()
        var scram = SCRAMTestClient(user: "alice@example.org", password: "not-the-password")
        let r9 = await c.send("a1 AUTHENTICATE SCRAM-SHA-256 \(base64(scram.clientFirst))\r\n")
        let serverFirst = try XCTUnwrap(challenge(r9))
        let final = try XCTUnwrap(try scram.clientFinal(serverFirst: serverFirst))
        let r10 = await c.send(base64(final) + "\r\n").hasPrefix("a1 NO [AUTHENTICATIONFAILED]")
        XCTAssertTrue(r10)
        XCTAssertEqual(c.session.state, .notAuthenticated)
    }

    func testSCRAMCancelledWithStar() async throws {
        var c = connect()
        let scram = SCRAMTestClient(user: "alice@example.org", password: "secret")
        let r11 = await c.send("a1 AUTHENTICATE SCRAM-SHA-256 \(base64(scram.clientFirst))\r\n")
        XCTAssertNotNil(challenge(r11))
        let r12 = await c.send("*\r\n")
        XCTAssertEqual(r12, "a1 BAD Authentication cancelled\r\n")
        XCTAssertEqual(c.session.state, .notAuthenticated)
    }

    func testSCRAMIsOfferedWithoutTLSButPlainIsNot() async throws {
        var c = connect(tls: false)
        let caps = await c.send("a1 CAPABILITY\r\n")
        XCTAssertTrue(caps.contains("AUTH=SCRAM-SHA-256"), caps)
        XCTAssertTrue(caps.contains("LOGINDISABLED"), caps)
        XCTAssertFalse(caps.contains("AUTH=PLAIN"), caps)
        XCTAssertFalse(caps.contains("AUTH=LOGIN"), caps)
        let r13 = await c.send("a2 AUTHENTICATE LOGIN\r\n").hasPrefix("a2 NO [CANNOT]")
        XCTAssertTrue(r13)
        let r14 = await c.send("a3 AUTHENTICATE PLAIN \(base64("\0alice@example.org\0secret"))\r\n").hasPrefix("a3 NO [CANNOT]")
        XCTAssertTrue(r14)
        // SCRAM never sends the password, so it works in the clear.
        var scram = SCRAMTestClient(user: "alice@example.org", password: "secret")
        let r15 = await c.send("a4 AUTHENTICATE SCRAM-SHA-256 \(base64(scram.clientFirst))\r\n")
        let serverFirst = try XCTUnwrap(challenge(r15))
        let final = try XCTUnwrap(try scram.clientFinal(serverFirst: serverFirst))
        let r16 = await c.send(base64(final) + "\r\n")
        XCTAssertNotNil(challenge(r16))
        let r17 = await c.send("\r\n").hasPrefix("a4 OK")
        XCTAssertTrue(r17)
    }

    func testAuthenticateLOGIN() async throws {
        var c = connect()
        let r18 = await c.send("a1 AUTHENTICATE LOGIN\r\n")
        XCTAssertEqual(challenge(r18), "Username:")
        let r19 = await c.send(base64("alice@example.org") + "\r\n")
        XCTAssertEqual(challenge(r19), "Password:")
        let reply = await c.send(base64("secret") + "\r\n")
        XCTAssertTrue(reply.hasPrefix("a1 OK [CAPABILITY"), reply)
        XCTAssertEqual(c.session.state, .authenticated)
    }

    func testAuthenticateLOGINWithInitialResponseAndWrongPassword() async throws {
        var c = connect()
        let r20 = await c.send("a1 AUTHENTICATE LOGIN \(base64("alice@example.org"))\r\n")
        XCTAssertEqual(challenge(r20), "Password:")
        let r21 = await c.send(base64("wrong") + "\r\n").hasPrefix("a1 NO [AUTHENTICATIONFAILED]")
        XCTAssertTrue(r21)
        XCTAssertEqual(c.session.state, .notAuthenticated)
    }

    func testAuthenticationLineThatIsNotBase64IsRejected() async throws {
        var c = connect()
        let r22 = await c.send("a1 AUTHENTICATE LOGIN\r\n")
        XCTAssertNotNil(challenge(r22))
        let reply = await c.send("not base64!\r\n")
        XCTAssertTrue(reply.hasPrefix("a1 BAD") || reply.hasPrefix("a1 NO"), reply)
        XCTAssertEqual(c.session.state, .notAuthenticated)
        let r23 = await c.send("a2 NOOP\r\n")
        XCTAssertEqual(r23, "a2 OK NOOP completed\r\n")
    }

    func testUnknownMechanism() async throws {
        var c = connect()
        let r24 = await c.send("a1 AUTHENTICATE CRAM-MD5\r\n")
        XCTAssertEqual(r24, "a1 NO [CANNOT] Mechanism CRAM-MD5 is not available\r\n")
    }
}
