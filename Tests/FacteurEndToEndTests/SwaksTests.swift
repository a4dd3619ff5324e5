// Delivery with swaks, a widely used SMTP test client: plaintext and STARTTLS (RFC 3207).

import Foundation
import XCTest

final class SwaksTests: E2ETestCase {
    private func swaks(_ extra: [String], subject: String) throws -> ToolResult {
        let swaks = try RequiredTool.path("swaks")
        return try Subprocess.run(swaks, ["--to", "admin@localhost", "--from", "swaks@e2e.test",
                                          "--server", "127.0.0.1:\(server.smtpPort)", "--helo", "swaks.e2e.test",
                                          "--header", "Subject: \(subject)", "--body", "sent by swaks\n.leading dot\n",
                                          "--timeout", "30"] + extra, timeout: 60)
    }

    func testSwaksDelivers() throws {
        let subject = "swaks-\(UUID().uuidString.prefix(8))"
        let result = try swaks([], subject: subject)
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.stdoutText.contains("<-  250"), "swaks saw no 250: \(result.stdoutText)")
        let (listed, stored) = try server.findMessage("admin@localhost", subject: subject)
        XCTAssertEqual(listed.size, stored.count)
        let text = String(decoding: stored, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("Return-Path: <swaks@e2e.test>\r\n") || text.contains("\r\nReturn-Path: <swaks@e2e.test>\r\n"),
                      "Return-Path missing: \(text.prefix(400))")
        // swaks dot-stuffs the ".leading dot" line; the store must hold it unstuffed.
        XCTAssertTrue(text.contains("\r\n.leading dot\r\n"), "dot-unstuffing: \(text.suffix(200).debugDescription)")
        XCTAssertFalse(text.contains("\r\n..leading dot"), "stored still dot-stuffed")
    }

    func testSwaksDeliversOverSTARTTLS() throws {
        let subject = "swaks-tls-\(UUID().uuidString.prefix(8))"
        let result = try swaks(["-tls"], subject: subject)
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.stdoutText.contains("TLS started"), "swaks did not start TLS: \(result.stdoutText.prefix(3000))")
        let (_, stored) = try server.findMessage("admin@localhost", subject: subject)
        XCTAssertTrue(String(decoding: stored, as: UTF8.self).contains("with ESMTPS"), "Received should say ESMTPS")
    }

    func testSwaksUnknownRecipientFails() throws {
        let swaks = try RequiredTool.path("swaks")
        let result = try Subprocess.run(swaks, ["--to", "nobody@localhost", "--server", "127.0.0.1:\(server.smtpPort)",
                                                "--timeout", "30"], timeout: 60)
        // swaks exits 24 when the RCPT is refused.
        XCTAssertEqual(result.status, 24, result.summary)
        XCTAssertTrue(result.stdoutText.contains("<** 550 5.1.1"), "expected 550 5.1.1 in: \(result.stdoutText)")
        XCTAssertEqual(try messageCount(), 0)
    }
}
