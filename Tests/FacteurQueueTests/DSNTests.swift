// DSN generation checked against RFC 3464's grammar (§2.1 message/delivery-status body: a
// per-message group, then per-recipient groups separated by blank lines) and RFC 3461's RET.

import Foundation
import XCTest
@testable import FacteurQueue

final class DSNTests: XCTestCase {
    let original = crlf("From: a@example.net\nTo: b@example.org\nSubject: original\n\nthe body\n")
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func build(_ recipients: [DSNRecipient], ret: DSNReturn? = nil, envid: String? = "E1", retryUntil: Date? = nil) -> String {
        let bytes = DSNBuilder(reportingMTA: "out.example.net").build(
            to: "a@example.net", envelopeID: envid, arrival: now, recipients: recipients, original: original, ret: ret,
            willRetryUntil: retryUntil, now: now, boundary: "BOUNDARY", messageID: "id1")
        XCTAssertFalse(bytes.enumerated().contains { i, b in b == 0x0A && (i == 0 || bytes[i - 1] != 0x0D) }, "CRLF only")
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The body parts between `--BOUNDARY` lines.
    func parts(_ text: String) -> [String] {
        let body = text.components(separatedBy: "\r\n--BOUNDARY--")[0]
        return Array(body.components(separatedBy: "\r\n--BOUNDARY\r\n").dropFirst())
    }

    /// RFC 3464 §2.1: groups of `field: value` lines separated by blank lines.
    func groups(_ part: String) -> [[String: String]] {
        let content = part.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return content.components(separatedBy: "\r\n\r\n").filter { !$0.isEmpty }.map { group in
            var fields: [String: String] = [:]
            for line in group.components(separatedBy: "\r\n") where !line.isEmpty {
                let pieces = line.split(separator: ":", maxSplits: 1)
                XCTAssertEqual(pieces.count, 2, "field syntax: \(line)")
                XCTAssertNil(fields[String(pieces[0]).lowercased()], "a field repeated in one group: \(line)")
                fields[String(pieces[0]).lowercased()] = pieces.count == 2 ? pieces[1].trimmingCharacters(in: .whitespaces) : ""
            }
            return fields
        }
    }

    func testFailureReportFollowsRFC3464() throws {
        let text = build([
            DSNRecipient(finalRecipient: "b@example.org", originalRecipient: "rfc822;B@example.org", action: .failed,
                         diagnostic: "550 5.1.1 <b@example.org>: no such user", remoteMTA: "mx.example.org", lastAttempt: now),
            DSNRecipient(finalRecipient: "c@example.org", action: .failed, diagnostic: "554 rejected"),
        ])
        XCTAssertTrue(text.contains("\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"BOUNDARY\"\r\n"))
        XCTAssertTrue(text.contains("\r\nAuto-Submitted: auto-replied\r\n"))
        XCTAssertTrue(text.hasPrefix("From: Mail Delivery System <MAILER-DAEMON@out.example.net>\r\nTo: <a@example.net>\r\n"))
        let sections = parts(text)
        XCTAssertEqual(sections.count, 3, "text, delivery-status, returned message")
        XCTAssertTrue(sections[0].hasPrefix("Content-Type: text/plain"))
        XCTAssertTrue(sections[1].hasPrefix("Content-Type: message/delivery-status\r\n\r\n"))
        let fieldGroups = groups(sections[1])
        XCTAssertEqual(fieldGroups.count, 3, "per-message + two recipients")
        XCTAssertEqual(fieldGroups[0]["reporting-mta"], "dns; out.example.net")
        XCTAssertEqual(fieldGroups[0]["original-envelope-id"], "E1")
        XCTAssertNotNil(fieldGroups[0]["arrival-date"])
        let status = try NSRegularExpression(pattern: "^[245]\\.[0-9]{1,3}\\.[0-9]{1,3}$")
        for recipient in fieldGroups.dropFirst() {
            for required in ["final-recipient", "action", "status"] { XCTAssertNotNil(recipient[required], required) }
            let value = recipient["status"] ?? ""
            XCTAssertEqual(status.numberOfMatches(in: value, range: NSRange(value.startIndex..., in: value)), 1, value)
        }
        XCTAssertEqual(fieldGroups[1]["final-recipient"], "rfc822; b@example.org")
        XCTAssertEqual(fieldGroups[1]["original-recipient"], "rfc822;B@example.org")
        XCTAssertEqual(fieldGroups[1]["status"], "5.1.1")
        XCTAssertEqual(fieldGroups[1]["remote-mta"], "dns; mx.example.org")
        XCTAssertEqual(fieldGroups[1]["diagnostic-code"], "smtp; 550 5.1.1 <b@example.org>: no such user")
        XCTAssertEqual(fieldGroups[2]["status"], "5.0.0", "derived from the reply class")
        XCTAssertTrue(sections[2].hasPrefix("Content-Type: message/rfc822\r\n\r\n"))
        XCTAssertTrue(sections[2].contains("the body"), "a failure returns the whole message by default")
    }

    func testRETHeadersReturnsOnlyTheHeader() {
        let text = build([DSNRecipient(finalRecipient: "b@example.org", action: .failed, diagnostic: "550 5.1.1 no")], ret: .headers)
        let sections = parts(text)
        XCTAssertTrue(sections[2].hasPrefix("Content-Type: text/rfc822-headers\r\n\r\n"))
        XCTAssertTrue(sections[2].contains("Subject: original"))
        XCTAssertFalse(sections[2].contains("the body"))
    }

    func testDelayReportHasWillRetryUntil() {
        let text = build([DSNRecipient(finalRecipient: "b@example.org", action: .delayed, diagnostic: "451 4.7.1 later")],
                         envid: nil, retryUntil: now.addingTimeInterval(86400))
        let fieldGroups = groups(parts(text)[1])
        XCTAssertNil(fieldGroups[0]["original-envelope-id"])
        XCTAssertEqual(fieldGroups[1]["action"], "delayed")
        XCTAssertEqual(fieldGroups[1]["status"], "4.7.1")
        XCTAssertEqual(fieldGroups[1]["will-retry-until"], "Sat, 16 Jan 2027 08:00:00 +0000")
        XCTAssertTrue(text.contains("Subject: Delivery delayed"))
    }

    func testSMTPUTF8MessagesGetRFC6533Types() {
        let bytes = DSNBuilder(reportingMTA: "out.example.net").build(
            to: "josé@example.net", envelopeID: nil, arrival: now,
            recipients: [DSNRecipient(finalRecipient: "élodie@example.org", action: .failed, diagnostic: "550 5.1.1 no")],
            original: original, ret: nil, now: now, utf8: true, boundary: "BOUNDARY", messageID: "x")
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("Content-Type: message/global-delivery-status\r\n"))
        XCTAssertTrue(text.contains("Content-Type: message/global\r\n"))
        XCTAssertTrue(text.contains("Final-Recipient: rfc822; élodie@example.org"))
    }

    func testHostileReplyTextCannotInjectFields() {
        let text = build([DSNRecipient(finalRecipient: "b@example.org", action: .failed,
                                       diagnostic: "550 5.1.1 x\r\nAction: delivered\r\n\r\nFinal-Recipient: rfc822; evil@x")])
        let fieldGroups = groups(parts(text)[1])
        XCTAssertEqual(fieldGroups.count, 2, "no injected group")
        XCTAssertEqual(fieldGroups[1]["action"], "failed")
    }
}
