// Authentication-Results parsing (RFC 8601 §2.2): the examples of RFC 8601 Appendix B, comments,
// quoted strings, errors, limits, and seeded fuzzing.

import FacteurMailAuth
import FacteurTestSupport
import XCTest

final class AuthenticationResultsParserTests: XCTestCase {
    func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> AuthenticationResultsHeader {
        do {
            return try AuthenticationResultsParser.parse(text)
        } catch {
            XCTFail("\(text): \(error)", file: file, line: line)
            throw error
        }
    }

    // RFC 8601 Appendix B.2: nothing was checked.
    func testNoneWithVersion() throws {
        let h = try parse(" example.org 1; none")
        XCTAssertEqual(h.authservID, "example.org")
        XCTAssertEqual(h.version, 1)
        XCTAssertTrue(h.isNone)
    }

    // B.3 and B.4: SPF, SMTP AUTH with a comment, iprev.
    func testSimpleResultsWithComments() throws {
        let h = try parse(" example.com;\r\n          auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n          spf=pass smtp.mailfrom=example.net")
        XCTAssertEqual(h.authservID, "example.com")
        XCTAssertNil(h.version)
        XCTAssertEqual(h.results.map(\.method), ["auth", "spf"])
        XCTAssertEqual(h.results[0].property("smtp", "auth"), "sender@example.net")
        XCTAssertEqual(h.results[1].properties, [AuthenticationResultsProperty(ptype: "smtp", property: "mailfrom", value: "example.net")])
        let iprev = try parse(" example.com; iprev=pass\r\n           policy.iprev=192.0.2.200")
        XCTAssertEqual(iprev.results.first?.property("policy", "iprev"), "192.0.2.200")
    }

    // B.6: two DKIM results with header.d and header.b.
    func testTwoDKIMResults() throws {
        let h = try parse("""
             mail-router.example.net;\r
                  dkim=pass (good signature) header.d=newyork.example.com\r
                        header.b=oINEO8hg;\r
                  dkim=fail (bad signature) header.d=mail-router.example.net\r
                        header.b=EToRSuvU
            """)
        XCTAssertEqual(h.results(for: "dkim").map(\.result), ["pass", "fail"])
        XCTAssertEqual(h.results[0].property("header", "d"), "newyork.example.com")
        XCTAssertEqual(h.results[1].property("header", "b"), "EToRSuvU")
    }

    func testReasonVersionQuotedStringsAndNestedComments() throws {
        let h = try parse("""
             (leading) "quoted.example" (a (nested) comment); DKIM / 1 = Pass reason="good \\"key\\"" header.I=@d1.example;\
             spf=fail (x) reason = nope smtp.mailfrom="john doe"@example.com; dmarc=pass (p=none; dis=none) header.from=example.com;
            """)
        XCTAssertEqual(h.authservID, "quoted.example")
        XCTAssertEqual(h.results.count, 3)
        XCTAssertEqual(h.results[0].method, "dkim")
        XCTAssertEqual(h.results[0].methodVersion, 1)
        XCTAssertEqual(h.results[0].result, "pass")
        XCTAssertEqual(h.results[0].reason, "good \"key\"")
        XCTAssertEqual(h.results[0].property("header", "i"), "@d1.example")
        XCTAssertEqual(h.results[1].reason, "nope")
        XCTAssertEqual(h.results[1].property("smtp", "mailfrom"), "john doe@example.com")
        XCTAssertEqual(h.results[2].property("header", "from"), "example.com")
    }

    func testRealWorldValues() throws {
        // Gmail-style, with an IPv6 address and a base64 header.b fragment.
        let h = try parse("""
             mx.google.com;\r
                   dkim=pass header.i=@example.com header.s=20230601 header.b=Ab+/c=;\r
                   spf=pass (google.com: domain of a@example.com designates 2001:db8::1 as permitted sender) smtp.mailfrom=a@example.com;\r
                   arc=pass (i=1 spf=pass spfdomain=example.com);\r
                   dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com
            """)
        XCTAssertEqual(h.results.map(\.method), ["dkim", "spf", "arc", "dmarc"])
        XCTAssertEqual(h.results[0].property("header", "b"), "Ab+/c=")
        XCTAssertEqual(h.results[1].property("smtp", "mailfrom"), "a@example.com")
        let ip = try parse(" example.org; iprev=pass policy.iprev=2001:db8::1 (mail.example.net)")
        XCTAssertEqual(ip.results.first?.property("policy", "iprev"), "2001:db8::1")
    }

    func testMalformedValuesThrow() {
        for bad in [
            "", "   ", "; spf=pass", "example.com spf=pass", "example.com; spf", "example.com; spf=",
            "example.com; spf=pass smtp", "example.com; spf=pass smtp.mailfrom", "example.com; spf=pass (unterminated",
            "example.com; spf=pass reason=\"unterminated", "example.com; none; spf=pass", "example.com; =pass",
            "example.com; spf=pass smtp.=x", "\"unterminated",
        ] {
            XCTAssertThrowsError(try AuthenticationResultsParser.parse(bad), "\(bad) should not parse")
        }
    }

    func testAuthservIDIsReadEvenWhenTheRestIsBroken() {
        XCTAssertEqual(AuthenticationResultsParser.authservID(of: Array(" (c) mx.example.org; spf=((".utf8)), "mx.example.org")
        XCTAssertEqual(AuthenticationResultsParser.authservID(of: Array(" \"q.example\"; x".utf8)), "q.example")
        XCTAssertNil(AuthenticationResultsParser.authservID(of: Array(" ; spf=pass".utf8)))
        XCTAssertNil(AuthenticationResultsParser.authservID(of: Array(" (unterminated".utf8)))
    }

    func testLimits() {
        // Comment nesting deeper than the cap is refused, not recursed into.
        let deep = " example.com; spf=pass " + String(repeating: "(", count: 10_000) + String(repeating: ")", count: 10_000)
        XCTAssertThrowsError(try AuthenticationResultsParser.parse(deep))
        let many = " example.com" + String(repeating: "; spf=pass", count: AuthenticationResultsLimits.maxResults + 1)
        XCTAssertThrowsError(try AuthenticationResultsParser.parse(many))
        let props = " example.com; spf=pass" + String(repeating: " smtp.a=b", count: AuthenticationResultsLimits.maxPropertiesPerResult + 1)
        XCTAssertThrowsError(try AuthenticationResultsParser.parse(props))
        let long = " example.com; spf=pass smtp.a=" + String(repeating: "x", count: AuthenticationResultsLimits.maxValueLength)
        XCTAssertThrowsError(try AuthenticationResultsParser.parse(long))
        XCTAssertNil(AuthenticationResultsParser.authservID(of: Array(long.utf8)))
        // Within the limits, the same shapes parse.
        XCTAssertNoThrow(try AuthenticationResultsParser.parse(" example.com; spf=pass (a (b (c) b) a) smtp.a=b"))
    }

    func testFuzzedValuesNeverCrash() {
        let seeds = [
            " mx.example.org 1; dkim/1=pass (c (n)) reason=\"r\\\"q\" header.d=example.com header.b=Ab+/; spf=fail smtp.mailfrom=\"a b\"@c.d; none",
            " example.org; arc=pass (i=2); dmarc=pass header.from=example.org",
        ].map { Array($0.utf8) }
        let alphabet = Array(" ;=.()\"\\@/:\r\n\tanoe1".utf8) + [0x00, 0xFF]
        var random = SeededRandom(seed: 0xA5A5)
        var parsed = 0
        for round in 0..<20_000 {
            var bytes = seeds[round % seeds.count]
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                let at = Int.random(in: 0...bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0 where at < bytes.count: bytes.remove(at: at)
                case 1: bytes.insert(alphabet.randomElement(using: &random) ?? 0, at: at)
                default: if at < bytes.count { bytes[at] = UInt8.random(in: 0...255, using: &random) }
                }
            }
            if let header = try? AuthenticationResultsParser.parse(bytes) {
                parsed += 1
                XCTAssertFalse(header.authservID.isEmpty)
            }
            _ = AuthenticationResultsParser.authservID(of: bytes)
        }
        // Most single mutations leave a parseable value; the count shows the parser was exercised.
        XCTAssertGreaterThan(parsed, 1_000)
    }
}
