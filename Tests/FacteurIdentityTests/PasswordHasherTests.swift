import FacteurStore
import XCTest
@testable import FacteurIdentity

final class PasswordHasherTests: XCTestCase {
    /// RFC 7914 §12, the third test vector: scrypt itself is right.
    func testScryptKnownAnswer() throws {
        let derived = try PasswordHasher.derive(bytes("password"), salt: bytes("NaCl"),
                                                parameters: ScryptParameters(logN: 10, r: 8, p: 16), count: 64)
        XCTAssertEqual(derived.map { String(format: "%02x", $0) }.joined(),
                       "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640")
    }

    func testHashAndVerifyRoundTrip() throws {
        let phc = try cheapHasher.hash(bytes("correct horse"))
        XCTAssertTrue(phc.hasPrefix("$scrypt$ln=10,r=8,p=1$"), phc)
        XCTAssertFalse(phc.split(separator: "$").suffix(2).contains { $0.hasSuffix("=") }, "PHC base64 is unpadded: \(phc)")
        XCTAssertTrue(cheapHasher.verify(bytes("correct horse"), against: phc))
        XCTAssertFalse(cheapHasher.verify(bytes("correct horsE"), against: phc))
        XCTAssertFalse(cheapHasher.verify(bytes("correct horse "), against: phc))
        XCTAssertFalse(cheapHasher.verify([], against: phc))
    }

    func testSaltsDiffer() throws {
        let a = try PasswordHash(phc: try cheapHasher.hash(bytes("same")))
        let b = try PasswordHash(phc: try cheapHasher.hash(bytes("same")))
        XCTAssertEqual(a.salt.count, 16)
        XCTAssertEqual(a.hash.count, 32)
        XCTAssertNotEqual(a.salt, b.salt)
        XCTAssertNotEqual(a.hash, b.hash)
    }

    func testPHCRoundTripAndPaddedInputAccepted() throws {
        let phc = try cheapHasher.hash(bytes("pw"))
        let parsed = try PasswordHash(phc: phc)
        XCTAssertEqual(parsed.phcString, phc)
        // Some writers pad their base64; we read it all the same.
        let padded = "$scrypt$ln=10,r=8,p=1$\(Bytes.base64(parsed.salt))$\(Bytes.base64(parsed.hash))"
        XCTAssertEqual(try PasswordHash(phc: padded), parsed)
        XCTAssertTrue(cheapHasher.verify(bytes("pw"), against: padded))
    }

    func testEmptyPasswordRefused() {
        XCTAssertThrowsError(try cheapHasher.hash([])) { XCTAssertEqual($0 as? PasswordHashError, .emptyPassword) }
    }

    func testParseErrors() {
        let salt = "c2FsdHNhbHRzYWx0c2FsdA"            // 16 bytes
        let hash = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g" // 32 bytes
        let cases: [(String, PasswordHashError)] = [
            ("", .malformed("does not start with $")),
            ("scrypt$ln=10,r=8,p=1$\(salt)$\(hash)", .malformed("does not start with $")),
            ("$argon2id$v=19$m=65536,t=2,p=1$\(salt)$\(hash)", .unsupportedAlgorithm("argon2id")),
            ("$scrypt$ln=10,r=8,p=1$\(salt)", .malformed("expected $scrypt$<params>$<salt>$<hash>")),
            ("$scrypt$ln=10,r=8$\(salt)$\(hash)", .malformed("missing ln, r or p")),
            ("$scrypt$ln=10,r=8,p=1,ln=4$\(salt)$\(hash)", .malformed("unknown or repeated parameter ln")),
            ("$scrypt$ln=10,r=8,p=1,x=1$\(salt)$\(hash)", .malformed("unknown or repeated parameter x")),
            ("$scrypt$ln=010,r=8,p=1$\(salt)$\(hash)", .malformed("bad parameter ln=010")),
            ("$scrypt$ln=-1,r=8,p=1$\(salt)$\(hash)", .malformed("bad parameter ln=-1")),
            ("$scrypt$ln=99999999999,r=8,p=1$\(salt)$\(hash)", .malformed("bad parameter ln=99999999999")),
            ("$scrypt$ln=30,r=8,p=1$\(salt)$\(hash)", .parametersOutOfRange("ln=30,r=8,p=1")),
            ("$scrypt$ln=0,r=8,p=1$\(salt)$\(hash)", .parametersOutOfRange("ln=0,r=8,p=1")),
            ("$scrypt$ln=20,r=32,p=16$\(salt)$\(hash)", .parametersOutOfRange("ln=20,r=32,p=16")),
            ("$scrypt$ln=19,r=8,p=1$\(salt)$\(hash)", .parametersOutOfRange("ln=19,r=8,p=1")),   // 512 MiB
            ("$scrypt$ln=10,r=8,p=1$!!!!$\(hash)", .malformed("bad salt")),
            ("$scrypt$ln=10,r=8,p=1$c2FsdA$\(hash)", .malformed("bad salt")),              // 4 bytes
            ("$scrypt$ln=10,r=8,p=1$\(salt)$aGFzaA", .malformed("bad hash")),              // 4 bytes
            ("$scrypt$ln=10,r=8,p=1$\(salt)$\(hash)$extra", .malformed("expected $scrypt$<params>$<salt>$<hash>")),
            ("$scrypt$" + String(repeating: "x", count: 600), .malformed("too long")),
        ]
        for (input, expected) in cases {
            XCTAssertThrowsError(try PasswordHash(phc: input), input) { XCTAssertEqual($0 as? PasswordHashError, expected, input) }
            XCTAssertFalse(cheapHasher.verify(bytes("pw"), against: input), input)
            XCTAssertTrue(cheapHasher.needsRehash(input), input)
        }
        XCTAssertNoThrow(try PasswordHash(phc: "$scrypt$ln=10,r=8,p=1$\(salt)$\(hash)"))
    }

    func testNeedsRehash() throws {
        let current = cheapHasher
        let weaker = PasswordHasher(parameters: ScryptParameters(logN: 9, r: 8, p: 1))
        let stronger = PasswordHasher(parameters: ScryptParameters(logN: 11, r: 8, p: 1))
        let smallerBlocks = PasswordHasher(parameters: ScryptParameters(logN: 10, r: 4, p: 1))
        XCTAssertFalse(current.needsRehash(try current.hash(bytes("pw"))))
        XCTAssertTrue(current.needsRehash(try weaker.hash(bytes("pw"))))
        XCTAssertTrue(current.needsRehash(try smallerBlocks.hash(bytes("pw"))))
        XCTAssertFalse(current.needsRehash(try stronger.hash(bytes("pw"))))
        // Same work spread as more passes over less memory: weaker (memory matters too)...
        let lessMemory = PasswordHasher(parameters: ScryptParameters(logN: 9, r: 8, p: 2))
        XCTAssertTrue(current.needsRehash(try lessMemory.hash(bytes("pw"))))
        // ...while more memory for the same work is not.
        let moreMemory = PasswordHasher(parameters: ScryptParameters(logN: 9, r: 8, p: 2))
        XCTAssertFalse(moreMemory.needsRehash(try current.hash(bytes("pw"))))
        // A shorter salt than we now use is an upgrade too.
        let shortSalt = PasswordHasher(parameters: current.parameters, saltLength: 8)
        XCTAssertTrue(current.needsRehash(try shortSalt.hash(bytes("pw"))))
        // Verification still works across parameter changes: they are read from the string.
        XCTAssertTrue(current.verify(bytes("pw"), against: try weaker.hash(bytes("pw"))))
    }

    func testDefaultParametersAreTheDocumentedOnes() {
        XCTAssertEqual(ScryptParameters.default, ScryptParameters(logN: 14, r: 8, p: 2))
        XCTAssertTrue(ScryptParameters.default.isWithinLimits)
        XCTAssertEqual(ScryptParameters.default.memoryBytes, 16 << 20)
    }

    func testDefaultHasherRoundTrip() throws {
        let hasher = PasswordHasher()
        let phc = try hasher.hash(bytes("pencil"))
        XCTAssertTrue(phc.hasPrefix("$scrypt$ln=14,r=8,p=2$"), phc)
        XCTAssertTrue(hasher.verify(bytes("pencil"), against: phc))
        XCTAssertFalse(hasher.needsRehash(phc))
    }
}

final class CredentialsTests: XCTestCase {
    func testMakeProducesBothFormsThatVerify() throws {
        let stored = try Credentials.make(password: "pencil", hasher: cheapHasher)
        XCTAssertTrue(stored.passwordHash.hasPrefix("$scrypt$"))
        let scram = try SCRAMCredentials(rfc5803: try XCTUnwrap(stored.scramSHA256))
        XCTAssertEqual(scram.iterations, 4096)
        XCTAssertEqual(scram.salt.count, 16)
        // The SCRAM keys are those of the same password.
        XCTAssertEqual(try SCRAMCredentials.derive(preparedPassword: bytes("pencil"), salt: scram.salt, iterations: 4096), scram)
        XCTAssertTrue(Credentials.verify(password: "pencil", against: stored, hasher: cheapHasher))
        XCTAssertFalse(Credentials.verify(password: "Pencil", against: stored, hasher: cheapHasher))
        XCTAssertFalse(Credentials.verify(password: "pencil", against: nil, hasher: cheapHasher))
        XCTAssertFalse(Credentials.needsUpgrade(stored, hasher: cheapHasher))
    }

    func testSASLprepAppliesToHashAndSCRAM() throws {
        let stored = try Credentials.make(password: "I\u{00AD}X", hasher: cheapHasher)
        XCTAssertTrue(Credentials.verify(password: "IX", against: stored, hasher: cheapHasher))
        XCTAssertTrue(Credentials.verify(password: "\u{2168}", against: stored, hasher: cheapHasher))
        let scram = try SCRAMCredentials(rfc5803: try XCTUnwrap(stored.scramSHA256))
        XCTAssertEqual(try SCRAMCredentials.derive(preparedPassword: bytes("IX"), salt: scram.salt, iterations: scram.iterations), scram)
    }

    func testMakeRefusesBadPasswords() {
        XCTAssertThrowsError(try Credentials.make(password: "", hasher: cheapHasher)) {
            XCTAssertEqual($0 as? CredentialsError, .emptyPassword)
        }
        XCTAssertThrowsError(try Credentials.make(password: "\u{00AD}", hasher: cheapHasher)) {
            XCTAssertEqual($0 as? CredentialsError, .emptyPassword)
        }
        XCTAssertThrowsError(try Credentials.make(password: "bell\u{7}", hasher: cheapHasher)) {
            XCTAssertEqual($0 as? CredentialsError, .unpreparable(.prohibited("\u{7}")))
        }
        XCTAssertThrowsError(try Credentials.make(password: String(repeating: "a", count: 1025), hasher: cheapHasher)) {
            XCTAssertEqual($0 as? CredentialsError, .passwordTooLong)
        }
        XCTAssertThrowsError(try Credentials.make(password: "pencil", hasher: cheapHasher, scramIterations: 4095)) {
            XCTAssertEqual($0 as? CredentialsError, .iterationCountOutOfRange(4095))
        }
    }

    func testConfigurableIterations() throws {
        let stored = try Credentials.make(password: "pencil", hasher: cheapHasher, scramIterations: 8192)
        XCTAssertEqual(try SCRAMCredentials(rfc5803: try XCTUnwrap(stored.scramSHA256)).iterations, 8192)
        XCTAssertTrue(Credentials.needsUpgrade(stored, hasher: cheapHasher, scramIterations: 10_000))
    }

    func testNeedsUpgradeWithoutSCRAMKeys() throws {
        var stored = try Credentials.make(password: "pencil", hasher: cheapHasher)
        stored.scramSHA256 = nil
        XCTAssertTrue(Credentials.needsUpgrade(stored, hasher: cheapHasher))
        stored.scramSHA256 = "SCRAM-SHA-256$garbage"
        XCTAssertTrue(Credentials.needsUpgrade(stored, hasher: cheapHasher))
    }

    func testNormalizeUsername() {
        XCTAssertEqual(Credentials.normalizeUsername("Alice@Example.ORG"), "alice@example.org")
        XCTAssertEqual(Credentials.normalizeUsername("\u{FF21}lice@example.org"), "alice@example.org") // fullwidth A
        XCTAssertNil(Credentials.normalizeUsername(""))
        XCTAssertNil(Credentials.normalizeUsername("\u{00AD}"))
        XCTAssertNil(Credentials.normalizeUsername("a\u{0}b"))
        XCTAssertNil(Credentials.normalizeUsername(String(repeating: "a", count: 321)))
    }

    func testRFC5803Format() throws {
        let keys = try SCRAMCredentials.derive(preparedPassword: bytes("pencil"),
                                               salt: Array(Data(base64Encoded: "W22ZaJ0SNY7soEsUEjb6gQ==")!), iterations: 4096)
        // StoredKey and ServerKey for RFC 7677's example, checked independently with Python's hashlib.
        XCTAssertEqual(keys.rfc5803,
                       "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
        XCTAssertEqual(try SCRAMCredentials(rfc5803: keys.rfc5803), keys)
        for bad in ["", "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$a:b", "SCRAM-SHA-256$x:W22ZaJ0SNY7soEsUEjb6gQ==$a:b",
                    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
                    "SCRAM-SHA-256$99999999999:W22ZaJ0SNY7soEsUEjb6gQ==$a:b",
                    "SCRAM-SHA-256$4096:***$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
                    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="] {
            XCTAssertThrowsError(try SCRAMCredentials(rfc5803: bad), bad)
        }
    }
}
