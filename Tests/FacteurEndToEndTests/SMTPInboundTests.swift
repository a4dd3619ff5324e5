// Inbound SMTP against the real server (RFC 5321, with RFC 1870 SIZE, 2920 PIPELINING,
// 3030 CHUNKING, 3207 STARTTLS, 6152 8BITMIME, 6531 SMTPUTF8, 2034 ENHANCEDSTATUSCODES),
// driven by Python's smtplib and by a raw-socket client (Tests/e2e/smtp_cases.py),
// then checked byte for byte through `facteur message show`.

import Foundation
import XCTest

final class SMTPInboundTests: E2ETestCase {
    let sender = "tester@e2e.test"

    func testEHLOAdvertisesTheContractedExtensions() throws {
        let result = try smtpCase("ehlo")
        let size = result["size"] as? Int ?? 0
        XCTAssertGreaterThan(size, 1024 * 1024, "SIZE should allow at least a 1 MB message")
        let extensions = result["extensions"] as? [String: String] ?? [:]
        XCTAssertNotNil(extensions["DSN"], "DSN must be advertised (RFC 3461 §4)")
    }

    func testPlainDeliveryIsStoredByteForByte() throws {
        let before = try messageCount()
        let result = try smtpCase("plain", ["--to", "admin@localhost", "--sender", sender])
        let subject = try XCTUnwrap(result["subject"] as? String)
        let fields = try assertDelivered(try Self.bytes(result), subject: subject, to: "admin@localhost", sender: sender)
        XCTAssertEqual(try messageCount(), before + 1)
        // `message list` shows the summary's From and Subject.
        let listed = try server.messages("admin@localhost")
        XCTAssertEqual(listed.last?.subject, subject, "SUBJECT column of `message list`")
        XCTAssertTrue(listed.last?.from.contains(sender) ?? false, "FROM column of `message list`: \(listed.last?.from ?? "")")
        let received = fields["received"]?.first ?? ""
        XCTAssertFalse(received.contains("ESMTPS"), "a plaintext session must not be recorded as ESMTPS: \(received)")
    }

    func testMultipleRecipientsEachGetTheirOwnCopyAndPrefix() throws {
        try server.addAccount("bob@localhost")
        try server.addAccount("carol@localhost")
        let recipients = ["admin@localhost", "bob@localhost", "carol@localhost"]
        let result = try smtpCase("plain", recipients.flatMap { ["--to", $0] } + ["--sender", sender])
        let subject = try XCTUnwrap(result["subject"] as? String)
        let sent = try Self.bytes(result)
        for recipient in recipients {
            let fields = try assertDelivered(sent, subject: subject, to: recipient, sender: sender)
            XCTAssertEqual(fields["delivered-to"]?.count, 1, "one Delivered-To per stored copy, got \(fields["delivered-to"] ?? [])")
        }
    }

    func testAliasDeliversToItsTargets() throws {
        try server.addAccount("bob@localhost")
        try server.cli(["alias", "add", "team@localhost", "admin@localhost", "bob@localhost"])
        let result = try smtpCase("plain", ["--to", "team@localhost", "--sender", sender])
        let subject = try XCTUnwrap(result["subject"] as? String)
        for account in ["admin@localhost", "bob@localhost"] {
            let (_, stored) = try server.findMessage(account, subject: subject)
            XCTAssertTrue(stored.suffix(try Self.bytes(result).count) == (try Self.bytes(result)), "alias copy for \(account) not byte-exact")
        }
    }

    func testUnknownLocalUserIsRefusedWith550_5_1_1() throws {
        let result = try smtpCase("reject", ["--rcpt", "nobody@localhost", "--code", "550", "--enhanced", "5.1.1"])
        // The transaction went on with the valid recipient only.
        try assertDelivered(try Self.bytes(result), subject: try XCTUnwrap(result["subject"] as? String),
                            to: "admin@localhost", sender: sender)
    }

    func testRelayIsRefusedWith550_5_7_1() throws {
        try smtpCase("reject", ["--rcpt", "someone@example.com", "--code", "550", "--enhanced", "5.7.1"])
        // Loopback is no exception, and neither is an address literal.
        try smtpCase("reject", ["--rcpt", "someone@[192.0.2.1]", "--code", "550", "--enhanced", "5.7.1"])
    }

    func testUnknownDomainIsNotDeliveredAnywhere() throws {
        let before = try messageCount()
        try smtpCase("reject", ["--rcpt", "admin@example.net", "--code", "550", "--enhanced", "5.7.1"])
        XCTAssertEqual(try messageCount(), before + 1, "only the follow-up message to admin@localhost is stored")
    }

    func testQuotaIsEnforcedAtRCPT() throws {
        try server.addAccount("bob@localhost")
        try server.cli(["account", "quota", "bob@localhost", "--bytes", "50000", "--messages", "1"])
        // A declared size that can never fit the quota: 552 5.2.2 (RFC 3463: mailbox full, permanent).
        try smtpCase("reject", ["--rcpt", "bob@localhost", "--mail-size", "60000", "--code", "552", "--enhanced", "5.2.2"])
        // The first message fits; then the message count is used up: 452 4.2.2 (temporary).
        let first = try smtpCase("plain", ["--to", "bob@localhost", "--sender", sender])
        try assertDelivered(try Self.bytes(first), subject: try XCTUnwrap(first["subject"] as? String), to: "bob@localhost", sender: sender)
        try smtpCase("reject", ["--rcpt", "bob@localhost", "--code", "452", "--enhanced", "4.2.2"])
        XCTAssertEqual(try server.messages("bob@localhost").count, 1)
    }

    func testSTARTTLSDeliveryIsRecordedAsESMTPS() throws {
        let result = try smtpCase("starttls", ["--to", "admin@localhost", "--sender", sender])
        let subject = try XCTUnwrap(result["subject"] as? String)
        let fields = try assertDelivered(try Self.bytes(result), subject: subject, to: "admin@localhost", sender: sender)
        let received = fields["received"]?.first ?? ""
        // RFC 3848: ESMTPS once TLS is in use.
        XCTAssertTrue(received.contains("with ESMTPS"), "Received should say `with ESMTPS`: \(received)")
    }

    func testGeneratedCertificateVerifiesForLocalhost() throws {
        let certificate = dataDir.appendingPathComponent("tls/cert.pem")
        XCTAssertTrue(FileManager.default.fileExists(atPath: certificate.path), "no self-signed certificate at \(certificate.path)")
        let result = try smtpCase("starttls-verify", ["--cafile", certificate.path])
        XCTAssertTrue(["TLSv1.2", "TLSv1.3"].contains(result["tls"] as? String ?? ""), "TLS version \(result["tls"] ?? "")")
    }

    func testOpenSSLClientVerifiesSTARTTLS() throws {
        let openssl = try RequiredTool.path("openssl")
        let certificate = dataDir.appendingPathComponent("tls/cert.pem")
        let result = try Subprocess.run(openssl, ["s_client", "-starttls", "smtp", "-connect", "127.0.0.1:\(server.smtpPort)",
                                                  "-CAfile", certificate.path, "-verify_hostname", "localhost",
                                                  "-verify_return_error", "-brief", "-ign_eof"],
                                        stdin: Data("EHLO openssl.e2e.test\r\nQUIT\r\n".utf8), timeout: 60)
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.stderrText.contains("Verification: OK"), "openssl: \(result.stderrText)")
        XCTAssertTrue(result.stdoutText.contains("250-PIPELINING"), "no EHLO reply inside TLS: \(result.stdoutText)")
        XCTAssertFalse(result.stdoutText.contains("STARTTLS"), "STARTTLS offered again inside TLS (RFC 3207 §4.2)")
        XCTAssertTrue(result.stdoutText.contains("221 "), "no reply to QUIT: \(result.stdoutText)")
    }

    func testCommandPipelinedWithSTARTTLSIsNotExecuted() throws {
        let result = try smtpCase("starttls-injection")
        let outcome = result["outcome"] as? String ?? ""
        XCTAssertTrue(["ignored", "dropped-before-220", "dropped-during-handshake", "dropped-after-handshake"].contains(outcome),
                      "unexpected outcome \(outcome)")
    }

    func testPipelinedTransactionGetsRepliesInOrder() throws {
        let result = try smtpCase("pipelining", ["--sender", sender])
        try assertDelivered(try Self.bytes(result), subject: try XCTUnwrap(result["subject"] as? String),
                            to: "admin@localhost", sender: sender)
        XCTAssertEqual(try messageCount(), 1, "the second, recipient-less transaction must store nothing")
    }

    func testSMTPUTF8AddressesAndHeaders() throws {
        let recipient = "élodie@localhost"
        let utf8Sender = "rené@e2e.test"
        try server.addAccount(recipient)
        let result = try smtpCase("smtputf8", ["--to", recipient, "--sender", utf8Sender])
        let subject = try XCTUnwrap(result["subject"] as? String)
        let sent = try Self.bytes(result)
        XCTAssertTrue(sent.contains(where: { $0 >= 0x80 }), "the test message must carry 8-bit octets")
        let fields = try assertDelivered(sent, subject: subject, to: recipient, sender: utf8Sender)
        // RFC 6531 §3.7.3: a transaction with SMTPUTF8 is recorded as UTF8SMTP.
        XCTAssertTrue(fields["received"]?.first?.contains("with UTF8SMTP") ?? false, "Received: \(fields["received"] ?? [])")
    }

    func testBDATChunksAreStoredVerbatim() throws {
        let result = try smtpCase("bdat")
        let messages = try XCTUnwrap(result["messages"] as? [[String: Any]])
        XCTAssertEqual(messages.count, 2)
        for message in messages {
            try assertDelivered(try Self.bytes(message), subject: try XCTUnwrap(message["subject"] as? String),
                                to: "admin@localhost", sender: "bdat@e2e.test")
        }
        XCTAssertEqual(try messageCount(), 2, "the transaction reset after DATA-in-BDAT must store nothing")
    }

    func testDotStuffingRoundTrip() throws {
        let result = try smtpCase("dotstuff")
        let sent = try Self.bytes(result)
        XCTAssertTrue(sent.range(of: Data("\r\n.\r\n".utf8)) != nil && sent.range(of: Data("\r\n..double".utf8)) != nil,
                      "the test message must contain lines starting with dots")
        try assertDelivered(sent, subject: try XCTUnwrap(result["subject"] as? String), to: "admin@localhost",
                            sender: "dots@e2e.test")
    }

    func testBareLFAndCRAreStoredAsCRLF() throws {
        let result = try smtpCase("bare-lf")
        try assertDelivered(try Self.bytes(result), subject: try XCTUnwrap(result["subject"] as? String),
                            to: "admin@localhost", sender: "lf@e2e.test")
    }

    func testSMTPSmugglingDoesNotSplitTheMessage() throws {
        for variant in ["lf-dot-crlf", "lf-dot-lf", "crlf-dot-lf", "cr-dot-crlf", "crlf-dot-cr"] {
            let before = try server.storedMessages("admin@localhost")
            let result = try smtpCase("smuggling", ["--variant", variant])
            let outer = try XCTUnwrap(result["outer_subject"] as? String)
            let smuggled = try XCTUnwrap(result["smuggled_subject"] as? String)
            let after = try server.storedMessages("admin@localhost")
            XCTAssertFalse(after.contains { $0.subject.contains(smuggled) }, "\(variant): the smuggled message became a message of its own")
            XCTAssertLessThanOrEqual(after.count, before.count + 1, "\(variant): more than one message stored from one DATA")
            if result["outcome"] as? String == "accepted" {
                let (_, stored) = try server.findMessage("admin@localhost", subject: outer)
                let text = String(decoding: stored, as: UTF8.self)
                XCTAssertTrue(text.contains("MAIL FROM:<evil@e2e.test>") && text.contains(smuggled),
                              "\(variant): the smuggled commands must stay inside the one message")
            } else {
                XCTAssertEqual(after.count, before.count, "\(variant): refused message must not be stored")
            }
        }
    }

    func testDeclaredSizeOverTheLimitIsRefused() throws {
        try smtpCase("oversize-declared")
        XCTAssertEqual(try messageCount(), 0)
    }

    func testOversizedDataIsRefusedWhileStreaming() throws {
        let result = try smtpCase("oversize-stream", ["--mode", "data"], timeout: 300)
        XCTAssertEqual(try messageCount(), 0, "an oversized message (\(result["outcome"] ?? "")) must not be stored")
        let bdat = try smtpCase("oversize-stream", ["--mode", "bdat"], timeout: 300)
        XCTAssertEqual(try messageCount(), 0, "an oversized BDAT message (\(bdat["outcome"] ?? "")) must not be stored")
        XCTAssertTrue(server.isRunning)
    }

    func testClientDisconnectingMidTransferLeavesNothing() throws {
        for mode in ["data-fin", "data-rst", "bdat-fin", "bdat-rst"] {
            for size in ["10240", "2000000"] {
                let result = try smtpCase("disconnect", ["--mode", mode, "--bytes", size])
                let subject = try XCTUnwrap(result["subject"] as? String)
                usleep(300_000)
                let stored = try server.storedMessages("admin@localhost")
                XCTAssertFalse(stored.contains { $0.subject.contains(subject) }, "\(mode) \(size): a cut message was stored")
                XCTAssertEqual(stored.count, 0, "\(mode) \(size): nothing may be stored")
            }
        }
        XCTAssertTrue(server.isRunning)
        // No spool file left behind in the data folder either (SQLite's own files aside).
        var leftovers: [String] = []
        for _ in 0..<30 {
            leftovers = filesInDataDir(containing: Data("cut line 0000010".utf8))
            if leftovers.isEmpty { break }
            usleep(100_000)
        }
        XCTAssertEqual(leftovers, [], "partial messages left in the data folder")
    }

    /// Regular files under the data folder (not SQLite's) whose bytes contain `needle`.
    func filesInDataDir(containing needle: Data) -> [String] {
        guard let walker = FileManager.default.enumerator(at: dataDir, includingPropertiesForKeys: [.isRegularFileKey, .fileSizeKey]) else { return [] }
        var found: [String] = []
        for case let url as URL in walker {
            let name = url.lastPathComponent
            if name.hasSuffix("-wal") || name.hasSuffix("-shm") || name.hasSuffix("-journal") || name.contains(".db") || name.contains("sqlite") { continue }
            guard let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey]), values.isRegularFile == true,
                  (values.fileSize ?? 0) < 64 * 1024 * 1024, let data = try? Data(contentsOf: url) else { continue }
            if data.range(of: needle) != nil { found.append(url.path) }
        }
        return found
    }

    func testDSNParametersAreAcceptedAndMalformedOnesRefusedWith501() throws {
        // RFC 3461 §4: RET, ENVID, NOTIFY, ORCPT are accepted; bad values are 501 5.5.4.
        let result = try smtpCase("dsn")
        XCTAssertEqual(result["checked"] as? Int, 10)
        XCTAssertEqual(try messageCount(), 0)
    }
}
