// RFC 5322 §3.3 dates, the obsolete forms of §4.3, and garbage.

import FacteurMIME
import Foundation
import XCTest

final class MailDateTests: XCTestCase {
    func seconds(_ s: String) -> Int? { MailDate.parse(s).map { Int($0.timeIntervalSince1970) } }

    func testRFC5322Examples() {
        // A.1.1
        XCTAssertEqual(seconds("Fri, 21 Nov 1997 09:55:06 -0600"), 880_127_706)
        // A.5: folding white space and a comment everywhere.
        XCTAssertEqual(seconds("Thu,\r\n      13\r\n        Feb\r\n          1969\r\n      23:32\r\n               -0330 (Newfoundland Time)"),
                       -27_723_480)
        // A.6.2: obsolete two-digit year and zone name.
        XCTAssertEqual(seconds("21 Nov 97 09:55:06 GMT"), 880_106_106)
        // A.6.3: comments and spaces inside the time.
        XCTAssertEqual(seconds("Fri, 21 Nov 1997 09(comment):   55  :  06 -0600"), 880_127_706)
    }

    func testComponentsAndZones() throws {
        let d = try XCTUnwrap(MailDate(parsing: "Tue, 1 Jul 2003 10:52:37 +0200"))
        XCTAssertEqual([d.year, d.month, d.day, d.hour, d.minute, d.second, d.zoneOffset], [2003, 7, 1, 10, 52, 37, 7200])
        XCTAssertEqual(seconds("Tue, 1 Jul 2003 10:52:37 +0200"), 1_057_049_557)
        XCTAssertEqual(seconds("Fri, 21 Nov 1997 09:55:06 EST"), 880_124_106)
        XCTAssertEqual(seconds("Mon, 2 Jan 2006 15:04:05 Z"), 1_136_214_245)
        // Military zones and unknown names mean -0000 (§4.3).
        XCTAssertEqual(seconds("Mon, 2 Jan 2006 15:04:05 J"), 1_136_214_245)
        XCTAssertEqual(seconds("Mon, 2 Jan 2006 15:04:05 XYZT"), 1_136_214_245)
        XCTAssertEqual(seconds("Mon, 2 Jan 2006 15:04:05 +00:00"), 1_136_214_245)
        XCTAssertEqual(seconds("Mon, 02 Jan 2006 15:04 -0700"), 1_136_239_440)
        XCTAssertEqual(seconds("Sat, 29 Feb 2020 12:00:00 +0000"), 1_582_977_600)
        XCTAssertEqual(seconds("Monday, 2 January 2006 15:04:05 +0000"), 1_136_214_245)
    }

    func testYears() {
        XCTAssertEqual(MailDate(parsing: "1 Jan 49 00:00 +0000")?.year, 2049)
        XCTAssertEqual(MailDate(parsing: "1 Jan 50 00:00 +0000")?.year, 1950)
        XCTAssertEqual(MailDate(parsing: "1 Jan 103 00:00 +0000")?.year, 2003)
        XCTAssertEqual(seconds("1 Jan 49 00:00:00 +0000"), 2_493_072_000)
    }

    func testAsctimeLayout() {
        XCTAssertEqual(seconds("Mon Jan  2 15:04:05 2006"), 1_136_214_245)
        XCTAssertEqual(seconds("Mon Jan  2 15:04:05 MST 2006"), 1_136_239_445)
    }

    func testGarbageIsNil() {
        for s in ["", "hello", "Whenever", "32 Jan 2020 10:00 +0000", "29 Feb 2019 10:00 +0000", "1 Jan 2020 25:00 +0000",
                  "1 Jan 2020 10:61 +0000", "1 Foo 2020 10:00 +0000", "Mon, 2 Jan 2006 15:04:05 -0700 extra words here",
                  "1 Jan 2020", "2006-01-02 15:04:05", "1 Jan 2020 10:00 +99999", "1 Jan 123456 10:00 +0000",
                  String(repeating: "1 ", count: 500)] {
            XCTAssertNil(MailDate.parse(s), s)
        }
    }

    func testCorpusDates() throws {
        // Every Date field of the corpus parses, except these, which are garbage indeed.
        let garbage: Set<String> = [
            "Whenever", "Malformed Date.", "<HR>", "Wed, 15 Dec 2010    59:10 -0500", "Tue, 12 Oct 2010 16:21:05 H0500",
            "Pn, 29 paX 2007 21:13:00 +0100", "Tue, 7 Apr 2026 10:00:t <rimap-test@example.test>",
        ]
        var unparsed: Set<String> = []
        var parsed = 0
        for (_, bytes) in try Fixtures.corpusMessages() {
            guard let date = MessageSummary(parsing: bytes).envelope.date, !date.isEmpty else { continue }
            if MailDate.parse(date) != nil { parsed += 1 } else { unparsed.insert(date) }
        }
        XCTAssertEqual(unparsed, garbage)
        XCTAssertEqual(parsed, 144)
    }
}
