import XCTest
@testable import FacteurIdentity

final class SASLprepTests: XCTestCase {
    /// RFC 4013 §3, the examples table.
    func testRFC4013Examples() throws {
        XCTAssertEqual(try SASLprep.prepare("I\u{00AD}X"), "IX")            // 1: soft hyphen mapped to nothing
        XCTAssertEqual(try SASLprep.prepare("user"), "user")                // 2: no transformation
        XCTAssertEqual(try SASLprep.prepare("USER"), "USER")                // 3: case preserved
        XCTAssertEqual(try SASLprep.prepare("\u{00AA}"), "a")               // 4: NFKC
        XCTAssertEqual(try SASLprep.prepare("\u{2168}"), "IX")              // 5: NFKC, matches #1
        XCTAssertThrowsError(try SASLprep.prepare("\u{0007}")) {            // 6: prohibited character
            XCTAssertEqual($0 as? SASLprep.Failure, .prohibited("\u{0007}"))
        }
        XCTAssertThrowsError(try SASLprep.prepare("\u{0627}\u{0031}")) {    // 7: bidirectional check
            XCTAssertEqual($0 as? SASLprep.Failure, .bidirectional)
        }
    }

    func testNonASCIISpacesBecomeSpaceAndThenPass() throws {
        XCTAssertEqual(try SASLprep.prepare("pen\u{00A0}cil"), "pen cil")
        XCTAssertEqual(try SASLprep.prepare("a\u{3000}b\u{2003}c"), "a b c")
    }

    func testMappedToNothing() throws {
        XCTAssertEqual(try SASLprep.prepare("a\u{200D}b\u{FEFF}c\u{FE0F}"), "abc")
        XCTAssertEqual(try SASLprep.prepare("\u{00AD}"), "")
    }

    func testProhibitedTables() {
        let values: [UInt32] = [0x0000, 0x007F, 0x0085, 0x2028, 0xE000, 0xF0000, 0xFDD0, 0xFFFF, 0x1FFFE, 0xFFFD,
                                0x2FF0, 0x200E, 0x202E, 0xE0001, 0xE0041, 0x1D173, 0x206A, 0x06DD]
        for value in values {
            guard let scalar = Unicode.Scalar(value) else { XCTFail("not a scalar: \(value)"); continue }
            XCTAssertThrowsError(try SASLprep.prepare("ab" + String(scalar)), "U+\(String(value, radix: 16))") {
                XCTAssertEqual($0 as? SASLprep.Failure, .prohibited(scalar))
            }
        }
    }

    /// Prohibition applies to the normalised output (RFC 4013 §2.3): U+0340 is in table
    /// C.8, but NFKC turns it into U+0300, which is allowed.
    func testProhibitionIsCheckedAfterNormalisation() throws {
        XCTAssertEqual(try SASLprep.prepare("a\u{0340}").unicodeScalars.map(\.value), [0xE0])
    }

    func testUnassignedCodePointsOnlyRefusedWhenStored() throws {
        // U+0378 is unassigned.
        XCTAssertThrowsError(try SASLprep.prepare("a\u{0378}", profile: .stored)) {
            XCTAssertEqual($0 as? SASLprep.Failure, .unassigned("\u{0378}"))
        }
        XCTAssertEqual(try SASLprep.prepare("a\u{0378}", profile: .query), "a\u{0378}")
    }

    func testRightToLeftStrings() throws {
        // All right-to-left: accepted.
        XCTAssertEqual(try SASLprep.prepare("\u{05D0}\u{05D1}"), "\u{05D0}\u{05D1}")
        // Digits inside RTL text are fine if it starts and ends with RandALCat.
        XCTAssertNoThrow(try SASLprep.prepare("\u{0627}1\u{0628}"))
        // Mixed with left-to-right letters: refused.
        XCTAssertThrowsError(try SASLprep.prepare("\u{0627}a\u{0628}"))
        // Starts with a digit: refused.
        XCTAssertThrowsError(try SASLprep.prepare("1\u{0627}"))
    }

    func testOrdinaryInternationalText() throws {
        XCTAssertEqual(try SASLprep.prepare("Grüße", profile: .stored), "Grüße")
        XCTAssertEqual(try SASLprep.prepare("パスワード", profile: .stored), "パスワード")
        // NFKC composes a decomposed e + combining acute.
        XCTAssertEqual(try SASLprep.prepare("e\u{0301}").unicodeScalars.map(\.value), [0xE9])
    }
}
