import Crypto
import FacteurStore
import XCTest
@testable import FacteurIdentity

final class SCRAMServerTests: XCTestCase {
    static let rfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    static let rfcSalt = Array(Data(base64Encoded: "W22ZaJ0SNY7soEsUEjb6gQ==")!)

    /// Credentials for "user" / "pencil" with RFC 7677's salt and iteration count.
    static func rfcCredentials(password: String = "pencil") throws -> StoredCredentials {
        let keys = try SCRAMCredentials.derive(preparedPassword: bytes(password), salt: rfcSalt, iterations: 4096)
        return StoredCredentials(passwordHash: "$scrypt$unused", scramSHA256: keys.rfc5803)
    }

    static func options(nonce: String = rfcServerNonce, secret: SymmetricKey = SymmetricKey(size: .bits256)) -> SASLOptions {
        SASLOptions(unknownUserSecret: secret, serverNonce: { nonce })
    }

    func expectFailure(_ step: SASLStep, _ reason: SASLFailure.Reason, _ scramError: String?,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(step, .failure(SASLFailure(reason, scramError: scramError)), file: file, line: line)
    }

    /// The SCRAM-SHA-256 exchange of RFC 7677 §3, byte for byte.
    func testRFC7677Exchange() throws {
        var scram = try XCTUnwrap(SASLMechanism(name: "SCRAM-SHA-256", options: Self.options()))
        XCTAssertEqual(scram.step(bytes("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")), .needCredentials(authcid: "user"))
        XCTAssertEqual(scram.provide(try Self.rfcCredentials()),
                       .challenge(bytes("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")))
        let final = scram.step(bytes("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
        XCTAssertEqual(final, .success(authcid: "user", authzid: nil,
                                       finalData: bytes("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")))
        // Finished: anything more is out of turn.
        expectFailure(scram.step([]), .malformed, "other-error")
    }

    func testNoInitialResponseGetsEmptyChallenge() throws {
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        XCTAssertEqual(scram.step(nil), .challenge([]))
        XCTAssertEqual(scram.step(bytes("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")), .needCredentials(authcid: "user"))
    }

    /// Runs client-first, provide, and returns the server-first-message.
    func start(_ scram: inout SASLMechanism, clientFirst: String, credentials: StoredCredentials?,
               expectedUser: String = "user") throws -> String {
        XCTAssertEqual(scram.step(bytes(clientFirst)), .needCredentials(authcid: expectedUser))
        guard case .challenge(let serverFirst) = scram.provide(credentials) else {
            XCTFail("no server-first"); return ""
        }
        return text(serverFirst)
    }

    func testYFlagAndAuthzidAndExtensions() throws {
        let client = TestSCRAMClient(password: "pencil")
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        let bare = "n=User,r=abcdef,x=ignored"
        let serverFirst = try start(&scram, clientFirst: "y,a=user,\(bare)", credentials: try Self.rfcCredentials())
        // c= carries the gs2-header "y,a=user," verbatim.
        let withoutProof = "c=\(Data("y,a=user,".utf8).base64EncodedString()),r=\(nonce(of: serverFirst)),z=ext"
        let final = try client.clientFinal(clientFirstBare: bare, serverFirst: serverFirst, withoutProof: withoutProof)
        let expected = try client.serverSignature(clientFirstBare: bare, serverFirst: serverFirst, withoutProof: withoutProof)
        XCTAssertEqual(scram.step(bytes(final)), .success(authcid: "user", authzid: "user", finalData: bytes(expected)))
    }

    func testEscapedUsername() throws {
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        XCTAssertEqual(scram.step(bytes("n,,n=a=2Cb=3Dc@example.org,r=x")), .needCredentials(authcid: "a,b=c@example.org"))
    }

    func testChannelBindingRequestedIsRefused() {
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        expectFailure(scram.step(bytes("p=tls-exporter,,n=user,r=abc")), .authenticationFailed, "channel-binding-not-supported")
    }

    func testMalformedClientFirstMessages() {
        let cases: [([UInt8], SASLFailure.Reason, String)] = [
            (bytes(""), .malformed, "invalid-encoding"),
            (bytes("n,,"), .malformed, "invalid-encoding"),
            (bytes("x,,n=user,r=abc"), .malformed, "invalid-encoding"),
            (bytes("n"), .malformed, "invalid-encoding"),
            (bytes("n,b=user,n=user,r=abc"), .malformed, "invalid-encoding"),
            (bytes("n,a=,n=user,r=abc"), .malformed, "invalid-encoding"),
            (bytes("n,,r=abc"), .malformed, "invalid-encoding"),
            (bytes("n,,r=abc,n=user"), .malformed, "invalid-username-encoding"),
            (bytes("n,,n=,r=abc"), .malformed, "invalid-username-encoding"),
            (bytes("n,,n=us=er,r=abc"), .malformed, "invalid-username-encoding"),
            (bytes("n,,n=user=2,r=abc"), .malformed, "invalid-username-encoding"),
            (bytes("n,,n=user"), .malformed, "invalid-encoding"),
            (bytes("n,,n=user,r="), .malformed, "invalid-encoding"),
            (bytes("n,,n=user,x=abc"), .malformed, "invalid-encoding"),
            (bytes("n,,n=user,r=ab\u{7F}"), .malformed, "invalid-encoding"),
            (bytes("n,,n=user,r=abc,"), .malformed, "invalid-encoding"),
            (bytes("n,,m=must,n=user,r=abc"), .malformed, "extensions-not-supported"),
            ([0x6E, 0x2C, 0x2C, 0x6E, 0x3D, 0xFF, 0x2C, 0x72, 0x3D, 0x61], .malformed, "invalid-encoding"),
            (Array(repeating: UInt8(ascii: "a"), count: 5000), .malformed, "invalid-encoding"),
            (bytes("n,,n=bell\u{7},r=abc"), .authenticationFailed, "invalid-username-encoding"),
        ]
        for (message, reason, error) in cases {
            var scram = SASLMechanism(.scramSHA256, options: Self.options())
            expectFailure(scram.step(message), reason, error)
        }
    }

    func testMalformedClientFinalMessages() throws {
        for bad in ["", "c=biws", "c=biws,r=\u{0}", "p=abc", "c=biws,p=abc", "r=x,c=biws,p=abc",
                    "c=b!ws,r=NONCE,p=AAAA", "c=biws,r=NONCE,p=A", "c=biws,r=NONCE,1=x,p=AAAA"] {
            var scram = SASLMechanism(.scramSHA256, options: Self.options(nonce: "srv"))
            let serverFirst = try start(&scram, clientFirst: "n,,n=user,r=abc", credentials: try Self.rfcCredentials())
            let message = bad.replacingOccurrences(of: "NONCE", with: nonce(of: serverFirst))
            let step = scram.step(bytes(message))
            guard case .failure(let failure) = step else { XCTFail("\(bad): \(step)"); continue }
            XCTAssertEqual(failure.reason, .malformed, bad)
            XCTAssertEqual(failure.scramError, "invalid-encoding", bad)
        }
    }

    func testWrongNonceFails() throws {
        let client = TestSCRAMClient(password: "pencil")
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        let serverFirst = try start(&scram, clientFirst: "n,,n=user,r=abc", credentials: try Self.rfcCredentials())
        // Only the client's own part: the server's part is missing.
        let withoutProof = "c=biws,r=abc"
        let final = try client.clientFinal(clientFirstBare: "n=user,r=abc", serverFirst: serverFirst, withoutProof: withoutProof)
        expectFailure(scram.step(bytes(final)), .authenticationFailed, "other-error")
    }

    func testWrongProofFails() throws {
        let client = TestSCRAMClient(password: "pencil!")
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        let serverFirst = try start(&scram, clientFirst: "n,,n=user,r=abc", credentials: try Self.rfcCredentials())
        let withoutProof = "c=biws,r=\(nonce(of: serverFirst))"
        let final = try client.clientFinal(clientFirstBare: "n=user,r=abc", serverFirst: serverFirst, withoutProof: withoutProof)
        let failure = scram.step(bytes(final))
        expectFailure(failure, .authenticationFailed, "invalid-proof")
        if case .failure(let f) = failure { XCTAssertEqual(f.serverFinalMessage, bytes("e=invalid-proof")) }
    }

    func testProofOfWrongLengthFails() throws {
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        let serverFirst = try start(&scram, clientFirst: "n,,n=user,r=abc", credentials: try Self.rfcCredentials())
        expectFailure(scram.step(bytes("c=biws,r=\(nonce(of: serverFirst)),p=AAAA")), .authenticationFailed, "invalid-proof")
    }

    func testChannelBindingMismatchFails() throws {
        let client = TestSCRAMClient(password: "pencil")
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        let serverFirst = try start(&scram, clientFirst: "n,,n=user,r=abc", credentials: try Self.rfcCredentials())
        // "eSws" is base64("y,,"), but the client said "n,,".
        let withoutProof = "c=eSws,r=\(nonce(of: serverFirst))"
        let final = try client.clientFinal(clientFirstBare: "n=user,r=abc", serverFirst: serverFirst, withoutProof: withoutProof)
        expectFailure(scram.step(bytes(final)), .authenticationFailed, "channel-bindings-dont-match")
    }

    func testAuthzidMismatchFailsAfterValidProof() throws {
        let client = TestSCRAMClient(password: "pencil")
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        let serverFirst = try start(&scram, clientFirst: "n,a=admin,n=user,r=abc", credentials: try Self.rfcCredentials())
        let withoutProof = "c=\(Data("n,a=admin,".utf8).base64EncodedString()),r=\(nonce(of: serverFirst))"
        let final = try client.clientFinal(clientFirstBare: "n=user,r=abc", serverFirst: serverFirst, withoutProof: withoutProof)
        expectFailure(scram.step(bytes(final)), .authorizationFailed, "other-error")
    }

    func testUnknownUserLooksLikeAKnownOneUntilTheProof() throws {
        let secret = SymmetricKey(size: .bits256)
        func serverFirst(for user: String, credentials: StoredCredentials?) throws -> String {
            var scram = SASLMechanism(.scramSHA256, options: Self.options(nonce: "srv", secret: secret))
            return try start(&scram, clientFirst: "n,,n=\(user),r=abc", credentials: credentials, expectedUser: user)
        }
        let first = try serverFirst(for: "ghost", credentials: nil)
        // Stable for the same name (a probing client sees no change between attempts)...
        XCTAssertEqual(first, try serverFirst(for: "ghost", credentials: nil))
        // ...different for another name, shaped like a real one: 16-byte salt, 4096 rounds.
        XCTAssertNotEqual(first, try serverFirst(for: "phantom", credentials: nil))
        let salt = String(first.split(separator: ",")[1].dropFirst(2))
        XCTAssertEqual(Data(base64Encoded: salt)?.count, 16)
        XCTAssertTrue(first.hasSuffix(",i=4096"))

        // The exchange then fails at the proof, like a wrong password.
        var scram = SASLMechanism(.scramSHA256, options: Self.options(nonce: "srv", secret: secret))
        let sf = try start(&scram, clientFirst: "n,,n=ghost,r=abc", credentials: nil, expectedUser: "ghost")
        let withoutProof = "c=biws,r=\(nonce(of: sf))"
        let final = try TestSCRAMClient(password: "anything").clientFinal(clientFirstBare: "n=ghost,r=abc", serverFirst: sf,
                                                                          withoutProof: withoutProof)
        expectFailure(scram.step(bytes(final)), .authenticationFailed, "invalid-proof")
    }

    func testAccountWithoutSCRAMKeysCannotUseSCRAM() throws {
        var stored = try Self.rfcCredentials()
        stored.scramSHA256 = nil
        let client = TestSCRAMClient(password: "pencil")
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        let serverFirst = try start(&scram, clientFirst: "n,,n=user,r=abc", credentials: stored)
        let withoutProof = "c=biws,r=\(nonce(of: serverFirst))"
        let final = try client.clientFinal(clientFirstBare: "n=user,r=abc", serverFirst: serverFirst, withoutProof: withoutProof)
        expectFailure(scram.step(bytes(final)), .authenticationFailed, "invalid-proof")
    }

    func testBadInjectedNonceFallsBackToRandom() throws {
        var scram = SASLMechanism(.scramSHA256, options: Self.options(nonce: "has,comma"))
        let serverFirst = try start(&scram, clientFirst: "n,,n=user,r=abc", credentials: try Self.rfcCredentials())
        let combined = nonce(of: serverFirst)
        XCTAssertTrue(combined.hasPrefix("abc"))
        XCTAssertGreaterThanOrEqual(combined.count, 3 + 24)
        XCTAssertFalse(combined.contains(","))
    }

    func testRandomNoncesDiffer() throws {
        var a = SASLMechanism(.scramSHA256), b = SASLMechanism(.scramSHA256)
        let na = nonce(of: try start(&a, clientFirst: "n,,n=user,r=abc", credentials: try Self.rfcCredentials()))
        let nb = nonce(of: try start(&b, clientFirst: "n,,n=user,r=abc", credentials: try Self.rfcCredentials()))
        XCTAssertNotEqual(na, nb)
    }

    func testOutOfTurnCalls() throws {
        var scram = SASLMechanism(.scramSHA256, options: Self.options())
        // provide before client-first
        expectFailure(scram.provide(nil), .malformed, "other-error")
        var other = SASLMechanism(.scramSHA256, options: Self.options())
        XCTAssertEqual(other.step(bytes("n,,n=user,r=abc")), .needCredentials(authcid: "user"))
        // a response while waiting for credentials
        expectFailure(other.step(bytes("c=biws")), .malformed, "other-error")
        var third = SASLMechanism(.scramSHA256, options: Self.options())
        expectFailure(third.passwordChecked(true), .malformed, "other-error")
    }

    func testMechanismNames() {
        XCTAssertEqual(SASLMechanism(name: "scram-sha-256")?.name, .scramSHA256)
        XCTAssertEqual(SASLMechanism(name: "Plain")?.name, .plain)
        XCTAssertEqual(SASLMechanism(name: "login")?.name, .login)
        XCTAssertNil(SASLMechanism(name: "SCRAM-SHA-256-PLUS"))
        XCTAssertNil(SASLMechanism(name: "CRAM-MD5"))
        XCTAssertNil(SASLMechanism(name: ""))
        XCTAssertNil(SASLMechanism(name: "plaın"))      // dotless i uppercases to I: not folded
        XCTAssertNil(SASLMechanism(name: String(repeating: "PLAIN", count: 100)))
    }
}
