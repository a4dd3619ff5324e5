// Interoperability with a real Postfix (Debian's postfix 3.x), end to end over loopback: a
// private Postfix instance (its own config, queue and data folders under the test's temporary
// folder, Tests/e2e/postfix_instance.py) plays "partner.test", a real unbound serves the MX
// records Facteur routes by (RFC 5321 §5.1), and Postfix reaches Facteur through a transport map
// to an address literal, so neither side depends on the machine's DNS.
//
// Facteur → Postfix: a submitted message arrives in Postfix's Maildir signed (RFC 6376) and traced
// (RFC 5321 §4.4); while Postfix is down it waits in the queue and goes on retry (§4.5.4.1); a
// recipient Postfix refuses comes back to the sender as an RFC 3464 report quoting Postfix's reply.
// Postfix → Facteur: mail given to Postfix's sendmail(1) is relayed into a Facteur mailbox.

import FacteurTestSupport
import Foundation
import XCTest

final class PostfixEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    var unbound: UnboundProcess?
    var facteur: FacteurProcess!
    var facteurConfig: URL!
    /// The private Postfix instance's folder and smtpd port; `postfixStarted` once `start` ran.
    var postfixDir: URL!
    var postfixPort = 0
    var postfixStarted = false
    /// facteur.test's DKIM key records, zone-file lines, as published in unbound.
    var dkimRecords: [String] = []

    static let password = "alice-password-1"

    override func tearDownWithError() throws {
        if let facteur, facteur.isRunning {
            XCTAssertEqual(facteur.stop(), 0, "graceful stop; log: \(facteur.logExcerpt)")
        }
        let failed = (testRun?.failureCount ?? 0) > 0 || (testRun?.unexpectedExceptionCount ?? 0) > 0
        if let postfixDir, postfixStarted {
            if failed { print("postfix log:\n\(postfixLog.suffix(4000))") }
            // Always, even after a failure: a stray master(8) would hold its port and queue.
            _ = try? Subprocess.run(try RequiredTool.path("python3"),
                                    [E2EScripts.path("postfix_instance.py"), "stop", "--dir", postfixDir.path], timeout: 60)
        }
        if failed, let facteur { print("facteur log:\n\(facteur.logExcerpt)") }
        unbound?.stop()
        try super.tearDownWithError()
    }

    // MARK: - The world

    /// unbound with partner.test's and facteur.test's records, Facteur (smtp + submission) with
    /// alice@facteur.test and bob@facteur.test, and Postfix for partner.test (user@partner.test
    /// has a Maildir; anything for facteur.test goes to Facteur's smtp port).
    func startWorld(postfixRunning: Bool = true) throws {
        _ = try RequiredTool.path("postfix")
        _ = try RequiredTool.path("python3")
        guard let unboundExecutable = UnboundProcess.executable() else {
            _ = try RequiredTool.path("unbound")
            throw XCTSkip("unbound is not installed")
        }
        guard geteuid() == 0 else {
            let message = "Postfix's master(8) must be started as root"
            if RequiredTool.requireAll { XCTFail("FACTEUR_REQUIRE_ALL=1 but " + message) }
            throw XCTSkip(message)
        }
        guard let dnsPort = UnboundProcess.freePort(), let port = UnboundProcess.freePort() else {
            throw XCTSkip("no free loopback ports")
        }
        postfixPort = port
        postfixDir = dataRoot.url.appendingPathComponent("postfix")

        let data = dataRoot.url.appendingPathComponent("facteur")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        facteurConfig = dataRoot.url.appendingPathComponent("facteur.toml")
        try """
        hostname = "mx.facteur.test"
        primary_domain = "facteur.test"
        dns_servers = ["127.0.0.1:\(dnsPort)"]
        [delivery]
        mx_port = \(postfixPort)
        [mail_auth]
        trusted_networks = []
        """.write(to: facteurConfig, atomically: true, encoding: .utf8)
        let added = try FacteurProcess.cli(["domain", "add", "facteur.test", "--config", facteurConfig.path], dataDir: data)
        XCTAssertEqual(added.status, 0, added.summary)
        for account in ["alice@facteur.test", "bob@facteur.test"] {
            let result = try FacteurProcess.cli(["account", "add", account, "--password-stdin", "--config", facteurConfig.path],
                                                dataDir: data, stdin: Self.password + "\n")
            XCTAssertEqual(result.status, 0, result.summary)
        }
        let records = try FacteurProcess.cli(["dkim", "record", "facteur.test", "--config", facteurConfig.path], dataDir: data)
        XCTAssertEqual(records.status, 0, records.summary)
        dkimRecords = records.stdoutText.split(separator: "\n").filter { !$0.hasPrefix(";") && $0.contains(" IN TXT ") }.map(String.init)
        XCTAssertFalse(dkimRecords.isEmpty, "facteur.test's DKIM records: \(records.stdoutText)")

        unbound = try UnboundProcess(executable: unboundExecutable, port: dnsPort, zones: [
            "partner.test": [
                "partner.test. 300 IN MX 10 mx.partner.test.",
                "mx.partner.test. 300 IN A 127.0.0.1",
                "partner.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"",
            ],
            "facteur.test": [
                "facteur.test. 300 IN MX 10 mx.facteur.test.",
                "mx.facteur.test. 300 IN A 127.0.0.1",
                "facteur.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"",
            ] + dkimRecords,
            "1.0.0.127.in-addr.arpa": [
                "1.0.0.127.in-addr.arpa. 300 IN PTR mx.partner.test.",
            ],
        ])
        facteur = try FacteurProcess(dataDir: data, listen: ["smtp=127.0.0.1:0", "submission=127.0.0.1:0"], config: facteurConfig)
        if postfixRunning { try startPostfix() }
    }

    func startPostfix() throws {
        postfixStarted = true
        let started = try python("postfix_instance.py", [
            "start", "--dir", postfixDir.path, "--smtpd-port", String(postfixPort), "--hostname", "mx.partner.test",
            "--mailbox", "user@partner.test",
            "--transport", "facteur.test=[127.0.0.1]:\(facteur.smtpPort)",
        ], timeout: 90)
        XCTAssertEqual(started["ok"] as? Bool, true, "\(started)")
    }

    var postfixLog: String {
        (try? String(contentsOf: postfixDir.appendingPathComponent("postfix.log"), encoding: .utf8)) ?? ""
    }

    /// alice@facteur.test submits (AUTH, RFC 4954) a message from herself.
    func submit(to recipient: String, subject: String) throws {
        guard let submission = facteur.ports["submission"] else { throw HarnessError("no submission listener") }
        let reply = try python("mailauth_send.py", [
            "submit", "--port", String(submission), "--user", "alice@facteur.test", "--password", Self.password,
            "--mail-from", "alice@facteur.test", "--from-header", "alice@facteur.test", "--to", recipient,
            "--subject", subject, "--helo", "client.facteur.test",
        ])
        XCTAssertEqual(reply["accepted"] as? Bool, true, "submission accepted: \(reply)")
    }

    /// The messages in user@partner.test's Maildir (new/ and cur/) whose text contains `marker`.
    func postfixMailbox(containing marker: String) -> [String] { postfixMailboxFiles(containing: marker).map(\.text) }

    func postfixMailboxFiles(containing marker: String) -> [(path: String, text: String)] {
        var found: [(path: String, text: String)] = []
        for sub in ["new", "cur"] {
            let folder = postfixDir.appendingPathComponent("vmail/user/\(sub)")
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] {
                let path = folder.appendingPathComponent(name).path
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                let text = String(decoding: data, as: UTF8.self)
                if text.contains(marker) { found.append((path, text)) }
            }
        }
        return found
    }

    func waitForPostfixDelivery(_ marker: String, timeout: TimeInterval = 60) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let message = postfixMailbox(containing: marker).first { return message }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let queue = (try? facteur.cli(["queue", "list", "--config", facteurConfig.path], expectSuccess: false).stdoutText) ?? ""
        XCTFail("\(marker) did not reach Postfix's Maildir within \(timeout) s; Facteur's queue: \(queue)")
        throw HarnessError("not delivered to Postfix")
    }

    func waitForFacteurMessage(_ account: String, subject: String, timeout: TimeInterval = 60) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = try facteur.storedMessages(account).first(where: { $0.subject.contains(subject) }) {
                return String(decoding: found.bytes, as: UTF8.self)
            }
            Thread.sleep(forTimeInterval: 0.3)
        }
        XCTFail("no message \(subject) in \(account) INBOX after \(timeout) s")
        throw HarnessError("not delivered to Facteur")
    }

    /// The header fields called `name`, unfolded (RFC 5322 §2.2.3). Postfix's Maildir files end
    /// lines with LF; Facteur's store keeps CRLF: both are accepted.
    func fields(_ name: String, _ message: String) -> [String] {
        let normalized = message.replacingOccurrences(of: "\r\n", with: "\n")
        let header = normalized.components(separatedBy: "\n\n").first ?? normalized
        var all: [String] = []
        for line in header.components(separatedBy: "\n") {
            if line.hasPrefix(" ") || line.hasPrefix("\t") {
                if !all.isEmpty { all[all.count - 1] += " " + line.trimmingCharacters(in: .whitespaces) }
            } else {
                all.append(line)
            }
        }
        return all.filter { $0.lowercased().hasPrefix(name.lowercased() + ":") }
    }

    /// Verifies the DKIM signatures of a stored file with dkimpy (Tests/e2e/dkim_verify.py), a
    /// verifier that is not ours, against facteur.test's published keys. Debian's python3-dkim is
    /// installed for the system python3, which may not be the first one on PATH.
    func independentDKIMResults(_ path: String) throws -> [[String: Any]] {
        let candidates = [Subprocess.find("python3"), "/usr/bin/python3"].compactMap { $0 }
        for python in candidates {
            let result = try Subprocess.run(python, [E2EScripts.path("dkim_verify.py"), path] + dkimRecords.flatMap { ["--record", $0] })
            if result.status == 3 { continue }
            XCTAssertEqual(result.status, 0, result.summary)
            let line = result.stdoutText.split(separator: "\n").last.map(String.init) ?? ""
            let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return json?["signatures"] as? [[String: Any]] ?? []
        }
        let message = "dkimpy (Debian python3-dkim) is not installed; the .ci/run script installs it"
        if RequiredTool.requireAll { XCTFail("FACTEUR_REQUIRE_ALL=1 but " + message) }
        throw XCTSkip("skipped the independent DKIM check: " + message)
    }

    func queueList() throws -> String {
        try facteur.cli(["queue", "list", "--config", facteurConfig.path]).stdoutText
    }

    // MARK: - Facteur → Postfix

    func testSubmittedMessageArrivesAtPostfixSignedAndTraced() throws {
        try startWorld()
        let subject = "to-postfix-\(UUID().uuidString.prefix(8))"
        try submit(to: "user@partner.test", subject: subject)
        let message = try waitForPostfixDelivery(subject)

        // Postfix's virtual(8) adds the envelope (RFC 5321 §4.4 Return-Path) and Delivered-To.
        XCTAssertEqual(fields("Return-Path", message), ["Return-Path: <alice@facteur.test>"], message)
        XCTAssertEqual(fields("Delivered-To", message), ["Delivered-To: user@partner.test"], message)
        // Postfix's smtpd traced the hop from Facteur: the client named itself by our hostname.
        let received = fields("Received", message)
        XCTAssertTrue(received.first?.contains("from mx.facteur.test") == true, "\(received)")
        XCTAssertTrue(received.first?.contains("[127.0.0.1]") == true, "\(received)")
        XCTAssertTrue(received.first?.contains("by mx.partner.test (Postfix)") == true, "\(received)")
        XCTAssertTrue(received.first?.contains("for <user@partner.test>") == true, "\(received)")
        // …and Facteur's own Received from the submission (RFC 6409 §8.1) is below it.
        XCTAssertTrue(received.dropFirst().contains { $0.contains("by mx.facteur.test") }, "Facteur's Received: \(received)")
        // RFC 6376: Facteur signed it with facteur.test's keys on the way out.
        let signatures = fields("DKIM-Signature", message)
        XCTAssertFalse(signatures.isEmpty, "no DKIM-Signature: \(message)")
        for signature in signatures {
            XCTAssertTrue(signature.contains("d=facteur.test;"), signature)
            XCTAssertTrue(signature.contains("h=") && signature.lowercased().contains("from"), signature)
            XCTAssertTrue(signature.contains("b="), signature)
        }
        XCTAssertTrue(signatures.contains { $0.contains("a=rsa-sha256") }, "an RSA signature for verifiers without Ed25519: \(signatures)")
        XCTAssertEqual(fields("Subject", message), ["Subject: \(subject)"])
        XCTAssertTrue(message.contains("A message to check sender authentication."), "body intact: \(message)")
        XCTAssertTrue(postfixLog.contains("to=<user@partner.test>, relay=virtual"), postfixLog)

        // Delivered, so the queue lets it go.
        let deadline = Date().addingTimeInterval(20)
        var queue = try queueList()
        while !queue.contains("The queue is empty."), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.3)
            queue = try queueList()
        }
        XCTAssertTrue(queue.contains("The queue is empty."), queue)

        // Postfix changed nothing the signatures cover: another verifier passes both on the file
        // Postfix wrote (RFC 6376 §6.1; the Ed25519 one per RFC 8463).
        let file = try XCTUnwrap(postfixMailboxFiles(containing: subject).first)
        let results = try independentDKIMResults(file.path)
        XCTAssertEqual(results.count, signatures.count, "\(results)")
        for result in results {
            XCTAssertEqual(result["pass"] as? Bool, true, "dkimpy: \(result)")
            XCTAssertEqual(result["d"] as? String, "facteur.test", "\(result)")
        }
        XCTAssertEqual(Set(results.compactMap { $0["a"] as? String }), ["ed25519-sha256", "rsa-sha256"], "\(results)")
    }

    func testPostfixDownAtFirstThenDeliveredOnRetry() throws {
        try startWorld(postfixRunning: false)
        let subject = "deferred-\(UUID().uuidString.prefix(8))"
        try submit(to: "user@partner.test", subject: subject)

        // Nothing listens on partner.test's MX port: the recipient is deferred, not failed (RFC 5321 §4.5.4.1).
        let deadline = Date().addingTimeInterval(30)
        var queue = try queueList()
        while !queue.contains("user@partner.test (deferred)"), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.3)
            queue = try queueList()
        }
        XCTAssertTrue(queue.contains("user@partner.test (deferred)"), queue)
        let id = queue.split(separator: "\n").first { $0.contains("user@partner.test") }?.split(separator: " ").first.map(String.init) ?? ""
        let shown = try facteur.cli(["queue", "show", id, "--config", facteurConfig.path]).stdoutText
        XCTAssertTrue(shown.contains("<user@partner.test>: deferred, 1 attempt(s)"), shown)
        XCTAssertTrue(shown.contains("last reply"), "the reason is recorded: \(shown)")
        XCTAssertTrue(postfixMailbox(containing: subject).isEmpty)

        try startPostfix()
        let retried = try facteur.cli(["queue", "retry", "--all", "--config", facteurConfig.path]).stdoutText
        XCTAssertTrue(retried.contains("1 recipient(s) will be tried"), retried)
        // The worker looks at the queue at least every 30 s.
        let message = try waitForPostfixDelivery(subject, timeout: 90)
        XCTAssertFalse(fields("DKIM-Signature", message).isEmpty, message)
        XCTAssertEqual(postfixMailbox(containing: subject).count, 1, "delivered once")
    }

    func testRecipientPostfixRefusesBouncesToTheSenderQuotingPostfix() throws {
        try startWorld()
        let subject = "unknown-user-\(UUID().uuidString.prefix(8))"
        try submit(to: "nobody@partner.test", subject: subject)

        let report = try waitForFacteurMessage("alice@facteur.test", subject: "Undelivered mail returned to sender")
        // RFC 3464 §2: a multipart/report with a delivery-status part; RFC 3462 report-type.
        XCTAssertTrue(report.contains("Content-Type: multipart/report; report-type=delivery-status;"), report)
        XCTAssertTrue(report.contains("Content-Type: message/delivery-status"), report)
        XCTAssertTrue(report.contains("Reporting-MTA: dns; mx.facteur.test"), report)
        XCTAssertTrue(report.contains("Final-Recipient: rfc822; nobody@partner.test"), report)
        XCTAssertTrue(report.contains("Action: failed"), report)
        // RFC 3463 code from Postfix's reply (RFC 2034 enhanced status code).
        XCTAssertTrue(report.contains("Status: 5.1.1"), report)
        XCTAssertTrue(report.contains("Remote-MTA: dns; mx.partner.test"), report)
        // Postfix's own words, quoted (RFC 3464 §2.3.6).
        XCTAssertTrue(report.contains("Diagnostic-Code: smtp; 550 5.1.1 <nobody@partner.test>: Recipient address rejected: User unknown in virtual mailbox table"),
                      report)
        // The original comes back with it (RFC 3462 third part), so alice knows which message.
        XCTAssertTrue(report.contains("Subject: \(subject)"), report)
        // The report goes to the sender's mailbox, from the null sender (RFC 5321 §4.5.5).
        XCTAssertEqual(fields("Return-Path", report).first, "Return-Path: <>", report)
        XCTAssertTrue(postfixLog.contains("NOQUEUE: reject: RCPT from") && postfixLog.contains("<nobody@partner.test>"), postfixLog)
        XCTAssertTrue(postfixMailbox(containing: subject).isEmpty)
    }

    // MARK: - Postfix → Facteur

    func testPostfixSendmailRelaysIntoAFacteurMailbox() throws {
        try startWorld()
        // Postfix's own sendmail(1), wherever this installation put it (`-C` is Postfix's option).
        let postconf = try RequiredTool.path("postconf")
        let sendmail = try Subprocess.run(postconf, ["-h", "sendmail_path"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: sendmail), "postconf sendmail_path: \(sendmail)")
        let subject = "from-postfix-\(UUID().uuidString.prefix(8))"
        // sendmail(1) takes LF-terminated text, as a local program writes it.
        let text = """
        From: User <user@partner.test>
        To: Bob <bob@facteur.test>
        Subject: \(subject)
        Message-ID: <\(UUID().uuidString)@partner.test>

        Written to Postfix's sendmail, relayed by its smtp client.
        Second line.

        """
        let result = try Subprocess.run(sendmail, ["-C", postfixDir.appendingPathComponent("etc").path, "-f", "user@partner.test",
                                                   "bob@facteur.test"], stdin: Data(text.utf8), timeout: 60)
        XCTAssertEqual(result.status, 0, result.summary)

        let stored = try waitForFacteurMessage("bob@facteur.test", subject: subject)
        XCTAssertTrue(stored.hasPrefix("Return-Path: <user@partner.test>\r\n"), stored)
        // Postfix's cleanup(8) gave it a Date; smtp(8) sent it with CRLF, which Facteur keeps.
        XCTAssertFalse(fields("Date", stored).isEmpty, stored)
        XCTAssertTrue(stored.contains("Written to Postfix's sendmail, relayed by its smtp client.\r\nSecond line.\r\n"), stored)
        let received = fields("Received", stored)
        // Facteur's trace of the hop from Postfix, then Postfix's own from pickup(8).
        XCTAssertTrue(received.first?.contains("from mx.partner.test") == true, "\(received)")
        XCTAssertTrue(received.first?.contains("by mx.facteur.test") == true, "\(received)")
        XCTAssertTrue(received.contains { $0.contains("by mx.partner.test (Postfix") }, "\(received)")
        // Checked as mail from another organisation: SPF passes for partner.test (RFC 7208).
        let results = fields("Authentication-Results", stored)
        XCTAssertTrue(results.contains { $0.contains("mx.facteur.test") && $0.contains("spf=pass") && $0.contains("smtp.mailfrom=user@partner.test") },
                      "\(results)")
        XCTAssertTrue(postfixLog.contains("to=<bob@facteur.test>, relay=127.0.0.1[127.0.0.1]:\(facteur.smtpPort)"), postfixLog)
        XCTAssertTrue(postfixLog.contains("status=sent"), postfixLog)
    }
}
