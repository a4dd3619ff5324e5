import FacteurStore
import XCTest
@testable import FacteurIdentity

final class PlainTests: XCTestCase {
    func testSuccessWithInitialResponse() {
        var plain = SASLMechanism(.plain)
        XCTAssertEqual(plain.step(bytes("\u{0}User@Example.org\u{0}pencil")),
                       .verifyPassword(authcid: "user@example.org", password: "pencil"))
        XCTAssertEqual(plain.passwordChecked(true), .success(authcid: "user@example.org", authzid: nil, finalData: nil))
    }

    func testSuccessAfterEmptyChallenge() {
        var plain = SASLMechanism(.plain)
        XCTAssertEqual(plain.step(nil), .challenge([]))
        XCTAssertEqual(plain.step(bytes("\u{0}user\u{0}pencil")), .verifyPassword(authcid: "user", password: "pencil"))
        XCTAssertEqual(plain.passwordChecked(true), .success(authcid: "user", authzid: nil, finalData: nil))
    }

    func testAuthzidEqualToAuthcidIsAccepted() {
        var plain = SASLMechanism(.plain)
        XCTAssertEqual(plain.step(bytes("USER\u{0}user\u{0}pencil")), .verifyPassword(authcid: "user", password: "pencil"))
        XCTAssertEqual(plain.passwordChecked(true), .success(authcid: "user", authzid: "user", finalData: nil))
    }

    func testAuthzidMismatchIsAnAuthorizationFailure() {
        var plain = SASLMechanism(.plain)
        XCTAssertEqual(plain.step(bytes("admin\u{0}user\u{0}pencil")), .verifyPassword(authcid: "user", password: "pencil"))
        XCTAssertEqual(plain.passwordChecked(true), .failure(SASLFailure(.authorizationFailed)))
    }

    func testWrongPassword() {
        var plain = SASLMechanism(.plain)
        _ = plain.step(bytes("admin\u{0}user\u{0}wrong"))
        // A wrong password is an authentication failure, whatever the authzid.
        XCTAssertEqual(plain.passwordChecked(false), .failure(SASLFailure(.authenticationFailed)))
        XCTAssertEqual(plain.passwordChecked(true), .failure(SASLFailure(.malformed)))
    }

    func testMalformedMessages() {
        let cases: [[UInt8]] = [
            [], bytes("userpencil"), bytes("\u{0}userpencil"), bytes("\u{0}\u{0}pencil"), bytes("\u{0}user\u{0}"),
            bytes("\u{0}user\u{0}pen\u{0}cil"), [0, 0x75, 0, 0xFF, 0xFE],
            [0] + Array(repeating: UInt8(ascii: "u"), count: 2000) + [0, 0x70],
        ]
        for message in cases {
            var plain = SASLMechanism(.plain)
            XCTAssertEqual(plain.step(message), .failure(SASLFailure(.malformed)), "\(message.prefix(16))")
        }
        var twice = SASLMechanism(.plain)
        _ = twice.step(nil)
        XCTAssertEqual(twice.step(nil), .failure(SASLFailure(.malformed)))
    }

    func testUnpreparableUsernameFailsAuthentication() {
        var plain = SASLMechanism(.plain)
        XCTAssertEqual(plain.step(bytes("\u{0}us\u{7}er\u{0}pencil")), .failure(SASLFailure(.authenticationFailed)))
    }

    func testOutOfTurn() {
        var plain = SASLMechanism(.plain)
        XCTAssertEqual(plain.provide(nil), .failure(SASLFailure(.malformed)))
        var other = SASLMechanism(.plain)
        XCTAssertEqual(other.passwordChecked(true), .failure(SASLFailure(.malformed)))
    }

    func testPasswordIsRedactedFromDescriptions() {
        let step = SASLStep.verifyPassword(authcid: "user", password: "hunter2")
        XCTAssertFalse(step.description.contains("hunter2"))
        XCTAssertFalse("\(step)".contains("hunter2"))
    }
}

final class LoginTests: XCTestCase {
    func testSuccess() {
        var login = SASLMechanism(.login)
        XCTAssertEqual(login.step(nil), .challenge(bytes("Username:")))
        XCTAssertEqual(login.step(bytes("User")), .challenge(bytes("Password:")))
        XCTAssertEqual(login.step(bytes("pencil")), .verifyPassword(authcid: "user", password: "pencil"))
        XCTAssertEqual(login.passwordChecked(true), .success(authcid: "user", authzid: nil, finalData: nil))
    }

    func testUsernameAsInitialResponse() {
        var login = SASLMechanism(.login)
        XCTAssertEqual(login.step(bytes("user")), .challenge(bytes("Password:")))
        XCTAssertEqual(login.step(bytes("pencil")), .verifyPassword(authcid: "user", password: "pencil"))
    }

    func testWrongPassword() {
        var login = SASLMechanism(.login)
        _ = login.step(nil); _ = login.step(bytes("user")); _ = login.step(bytes("nope"))
        XCTAssertEqual(login.passwordChecked(false), .failure(SASLFailure(.authenticationFailed)))
    }

    func testFailures() {
        var emptyName = SASLMechanism(.login)
        _ = emptyName.step(nil)
        XCTAssertEqual(emptyName.step([]), .failure(SASLFailure(.malformed)))

        var emptyPassword = SASLMechanism(.login)
        _ = emptyPassword.step(bytes("user"))
        XCTAssertEqual(emptyPassword.step([]), .failure(SASLFailure(.authenticationFailed)))

        var nul = SASLMechanism(.login)
        _ = nul.step(bytes("user"))
        XCTAssertEqual(nul.step(bytes("pen\u{0}cil")), .failure(SASLFailure(.malformed)))

        var invalidUTF8 = SASLMechanism(.login)
        XCTAssertEqual(invalidUTF8.step([0xC3, 0x28]), .failure(SASLFailure(.malformed)))

        var missing = SASLMechanism(.login)
        _ = missing.step(nil)
        XCTAssertEqual(missing.step(nil), .failure(SASLFailure(.malformed)))

        var outOfTurn = SASLMechanism(.login)
        XCTAssertEqual(outOfTurn.provide(nil), .failure(SASLFailure(.malformed)))
    }
}
