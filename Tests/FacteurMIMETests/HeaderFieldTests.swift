// RFC 5322 §2.2 header fields: splitting, unfolding (§2.2.3), obsolete forms, lookup, limits.

import FacteurMIME
import XCTest

final class HeaderFieldTests: XCTestCase {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testFoldedFieldIsUnfoldedAndRawKept() {
        // RFC 5322 §2.2.3: "Subject: This is a test" may be folded as "Subject: This\r\n is a test".
        let h = MessageHeader(parsing: bytes("Subject: This\r\n is a test\r\nTo: a@b.example\r\n\r\nbody"))
        XCTAssertEqual(h.fields.count, 2)
        XCTAssertEqual(h.fields[0].name, "Subject")
        XCTAssertEqual(h.fields[0].value, "This is a test")
        XCTAssertEqual(h.fields[0].rawValue, bytes(" This\r\n is a test"))
        XCTAssertEqual(h.fields[0].range, 0..<27)
        XCTAssertEqual(h.fields[1].range, 27..<44)
        XCTAssertEqual(h.bodyOffset, 46)
        XCTAssertTrue(h.hasSeparator)
        XCTAssertEqual(h.defects, [])
    }

    func testUnfoldKeepsTheWhitespaceAndLoneLineBreaks() {
        XCTAssertEqual(HeaderField.unfold(bytes("a\r\n\tb\r\n  c")), bytes("a\tb  c"))
        XCTAssertEqual(HeaderField.unfold(bytes("a\n b")), bytes("a b"))
        // A line break not followed by WSP is not folding (it cannot occur inside a field) and is kept.
        XCTAssertEqual(HeaderField.unfold(bytes("a\r\nb")), bytes("a\r\nb"))
        XCTAssertEqual(HeaderField.unfoldAndTrim(bytes("  x y \r\n ")), bytes("x y"))
    }

    func testLookupIgnoresCaseAndKeepsOrder() {
        let h = MessageHeader(parsing: bytes("received: one\r\nSubject: s\r\nRECEIVED: two\r\n\r\n"))
        XCTAssertEqual(h["subject"], "s")
        XCTAssertEqual(h["Received"], "one")
        XCTAssertEqual(h.fields(named: "Received").map(\.value), ["one", "two"])
        XCTAssertNil(h["Cc"])
        XCTAssertTrue(h.fields[2].hasName("received"))
    }

    func testBareLineFeeds() {
        let h = MessageHeader(parsing: bytes("A: 1\nB: 2\n 3\n\nbody\n"))
        XCTAssertEqual(h.fields.map(\.value), ["1", "2 3"])
        XCTAssertEqual(h.bodyOffset, 14)
    }

    func testObsoleteSpaceBeforeColon() {
        // RFC 5322 §4.5.3 obs-optional: field-name *WSP ":".
        let h = MessageHeader(parsing: bytes("Subject \t: hello\r\n\r\n"))
        XCTAssertEqual(h.fields.first?.name, "Subject")
        XCTAssertEqual(h["subject"], "hello")
    }

    func testLineWithoutColonStartsTheBody() {
        let h = MessageHeader(parsing: bytes("A: 1\r\nthis is body text\r\nB: 2\r\n"))
        XCTAssertEqual(h.fields.map(\.name), ["A"])
        XCTAssertEqual(h.bodyOffset, 6)
        XCTAssertFalse(h.hasSeparator)
        XCTAssertEqual(h.defects.count, 1)
    }

    func testMboxFromLineAndLeadingContinuationAreSkipped() {
        let h = MessageHeader(parsing: bytes("From someone@example.com Mon Jan  2 15:04:05 2006\r\nA: 1\r\n\r\n"))
        XCTAssertEqual(h.fields.map(\.name), ["A"])
        let g = MessageHeader(parsing: bytes(" stray\r\nA: 1\r\n\r\n"))
        XCTAssertEqual(g.fields.map(\.name), ["A"])
        XCTAssertEqual(g.defects.count, 1)
    }

    func testEmptyInputAndHeaderWithoutBody() {
        let e = MessageHeader(parsing: [UInt8]())
        XCTAssertEqual(e.fields.count, 0)
        XCTAssertEqual(e.bodyOffset, 0)
        let h = MessageHeader(parsing: bytes("A: 1\r\nB: 2"))
        XCTAssertEqual(h.fields.map(\.value), ["1", "2"])
        XCTAssertEqual(h.bodyOffset, 10)
        XCTAssertFalse(h.hasSeparator)
    }

    func testEmptyValueAndEightBitValue() {
        let h = MessageHeader(parsing: bytes("X-Empty:\r\nSubject: Grüße\r\n\r\n"))
        XCTAssertEqual(h["x-empty"], "")
        XCTAssertEqual(h["subject"], "Grüße")
        // Not UTF-8: read as windows-1252 rather than lost.
        let latin = MessageHeader(parsing: Array("Subject: caf".utf8) + [0xE9] + Array("\r\n\r\n".utf8))
        XCTAssertEqual(latin["subject"], "café")
    }

    func testWorksOnSlicesWithOffsetsFromTheSliceStart() {
        let all = bytes("garbageA: 1\r\n\r\nbody")
        let h = MessageHeader(parsing: all[7...])
        XCTAssertEqual(h.fields.first?.range, 0..<6)
        XCTAssertEqual(h.bodyOffset, 8)
    }

    func testFieldCountIsCapped() {
        var text = ""
        for i in 0..<(MIMELimits.maxHeaderFields + 10) { text += "X-\(i): v\r\n" }
        let h = MessageHeader(parsing: bytes(text + "\r\nbody"))
        XCTAssertEqual(h.fields.count, MIMELimits.maxHeaderFields)
        XCTAssertEqual(h.bodyOffset, text.utf8.count + 2)
        XCTAssertFalse(h.defects.isEmpty)
    }
}
