// HeaderText: values from outside put in header fields without injecting lines or specials.

import FacteurMIME
import XCTest

final class HeaderTextTests: XCTestCase {
    func testUnsafeCharactersAreRemoved() {
        XCTAssertEqual(HeaderText.headerSafe("id\r\nBcc: victim@example.org"), "idBcc: victim@example.org")
        XCTAssertEqual(HeaderText.asciiSafe("café\u{7}"), "caf??")
        XCTAssertEqual(HeaderText.tokenSafe("example.org!x y/z"), "example.orgxyz")
    }

    func testFoldingKeepsLinesShortAndLosesNothing() {
        let long = "Subject: " + Array(repeating: "word", count: 40).joined(separator: " ")
        let lines = HeaderText.fold(long)
        XCTAssertGreaterThan(lines.count, 1)
        XCTAssertTrue(lines.allSatisfy { $0.count <= 78 })
        XCTAssertTrue(lines.dropFirst().allSatisfy { $0.hasPrefix(" ") })
        XCTAssertEqual(lines.joined(), long, "unfolding (removing the line breaks) gives the line back")
        XCTAssertEqual(HeaderText.fold("Subject: short"), ["Subject: short"])
    }
}
