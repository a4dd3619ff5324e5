// Sender authentication end to end: two Facteur instances and a real unbound on loopback.
// "sender.test" (instance B) signs what its users submit and delivers it through MX lookups to
// "receiver.test" (instance A), which checks SPF, DKIM, iprev and DMARC and records them in
// Authentication-Results; forged mail is refused, quarantined or stripped of forged results.

import FacteurTestSupport
import Foundation
import XCTest

final class MailAuthEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    var unbound: UnboundProcess?
    var receiver: FacteurProcess!
    var sender: FacteurProcess?
    var receiverSetup: (data: URL, config: URL, port: Int)?
    var senderSetup: (data: URL, config: URL)?

    override func tearDownWithError() throws {
        for instance in [sender, receiver] {
            if let instance, instance.isRunning { XCTAssertEqual(instance.stop(), 0, "graceful stop; log: \(instance.logExcerpt)") }
        }
        if (testRun?.failureCount ?? 0) > 0 {
            if let receiver { print("receiver log:\n\(receiver.logExcerpt)") }
            if let sender { print("sender log:\n\(sender.logExcerpt)") }
        }
        unbound?.stop()
        try super.tearDownWithError()
    }

    /// Starts unbound with the test zones, the receiving instance, and (optionally) the sending one.
    func startWorld(withSender: Bool, receiverPort: Int = 0, senderSMTPPort: Int? = nil, receiverMailAuth: String = "") throws {
        guard let executable = UnboundProcess.executable() else {
            _ = try RequiredTool.path("unbound")
            return
        }
        guard let dnsPort = UnboundProcess.freePort() else { throw XCTSkip("no free port for unbound") }
        let receiverData = dataRoot.url.appendingPathComponent("receiver")
        let receiverConfig = dataRoot.url.appendingPathComponent("receiver.toml")
        try """
        hostname = "mx.receiver.test"
        primary_domain = "receiver.test"
        dns_servers = ["127.0.0.1:\(dnsPort)"]
        [mail_auth]
        trusted_networks = []
        \(receiverMailAuth)
        \(senderSMTPPort.map { "[delivery]\nmx_port = \($0)" } ?? "")
        """.write(to: receiverConfig, atomically: true, encoding: .utf8)
        receiver = try FacteurProcess(dataDir: receiverData, listen: ["smtp=127.0.0.1:\(receiverPort)"], config: receiverConfig)
        receiverSetup = (receiverData, receiverConfig, receiverPort)
        try receiver.addAccount("bob@receiver.test")
        let receiverKeys = try receiver.cli(["dkim", "record", "receiver.test", "--config", receiverConfig.path]).stdoutText
            .split(separator: "\n").filter { !$0.hasPrefix(";") && $0.contains(" IN TXT ") }.map(String.init)

        // The sender's keys exist before it starts, so that their records can be published.
        let senderData = dataRoot.url.appendingPathComponent("sender")
        try FileManager.default.createDirectory(at: senderData, withIntermediateDirectories: true)
        let senderConfig = dataRoot.url.appendingPathComponent("sender.toml")
        try """
        hostname = "mx.sender.test"
        primary_domain = "sender.test"
        dns_servers = ["127.0.0.1:\(dnsPort)"]
        [delivery]
        mx_port = \(receiver.smtpPort)
        [mail_auth]
        trusted_networks = []
        """.write(to: senderConfig, atomically: true, encoding: .utf8)
        let added = try FacteurProcess.cli(["domain", "add", "sender.test", "--config", senderConfig.path], dataDir: senderData)
        XCTAssertEqual(added.status, 0, added.summary)
        XCTAssertTrue(added.stdoutText.contains("DKIM keys generated"), added.stdoutText)
        let account = try FacteurProcess.cli(["account", "add", "alice@sender.test", "--password-stdin", "--config", senderConfig.path],
                                             dataDir: senderData, stdin: "alice-password-1\n")
        XCTAssertEqual(account.status, 0, account.summary)
        let records = try FacteurProcess.cli(["dkim", "record", "sender.test", "--config", senderConfig.path], dataDir: senderData)
        XCTAssertEqual(records.status, 0, records.summary)
        // "f20261127e._domainkey.sender.test. 3600 IN TXT "v=DKIM1; …" "…"" lines, one per key.
        let dkimRecords = records.stdoutText.split(separator: "\n").filter { !$0.hasPrefix(";") && $0.contains(" IN TXT ") }.map(String.init)
        XCTAssertEqual(dkimRecords.count, 2, "an Ed25519 and an RSA key: \(records.stdoutText)")

        unbound = try UnboundProcess(executable: executable, port: dnsPort, zones: [
            "receiver.test": [
                "receiver.test. 300 IN MX 10 mx.receiver.test.",
                "mx.receiver.test. 300 IN A 127.0.0.1",
                "receiver.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"",
            ] + receiverKeys,
            "sender.test": [
                "sender.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"",
                "_dmarc.sender.test. 300 IN TXT \"v=DMARC1; p=reject; rua=mailto:dmarc-reports@sender.test\"",
                "mx.sender.test. 300 IN A 127.0.0.1",
                "sender.test. 300 IN MX 10 mx.sender.test.",
            ] + dkimRecords,
            "fail.test": [
                "fail.test. 300 IN TXT \"v=spf1 -all\"",
            ],
            "quarantine.test": [
                "quarantine.test. 300 IN TXT \"v=spf1 -all\"",
                "_dmarc.quarantine.test. 300 IN TXT \"v=DMARC1; p=quarantine\"",
            ],
            "1.0.0.127.in-addr.arpa": [
                "1.0.0.127.in-addr.arpa. 300 IN PTR mx.sender.test.",
            ],
        ])
        if withSender {
            let listen = ["submission=127.0.0.1:0"] + (senderSMTPPort.map { ["smtp=127.0.0.1:\($0)"] } ?? [])
            sender = try FacteurProcess(dataDir: senderData, listen: listen, config: senderConfig)
            senderSetup = (senderData, senderConfig)
        }
    }

    func send(_ mode: String, port: Int, mailFrom: String, fromHeader: String, to: String, subject: String,
              extra: [String] = []) throws -> [String: Any] {
        var arguments = [mode, "--port", String(port), "--mail-from", mailFrom, "--from-header", fromHeader, "--to", to, "--subject", subject]
        if mode == "submit" { arguments += ["--user", "alice@sender.test", "--password", "alice-password-1"] }
        for header in extra { arguments += ["--header", header] }
        return try python("mailauth_send.py", arguments)
    }

    func waitForMessage(_ account: String, subject: String, mailbox: String = "INBOX", timeout: TimeInterval = 30) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = try receiver.storedMessages(account, mailbox: mailbox).first(where: { $0.subject.contains(subject) }) {
                return String(decoding: found.bytes, as: UTF8.self)
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTFail("no message \(subject) in \(account) \(mailbox) after \(timeout) s")
        throw HarnessError("message not delivered")
    }

    /// The Authentication-Results fields of a stored message, unfolded.
    func authenticationResults(_ message: String) -> [String] { fields("Authentication-Results", message) }

    /// The fields called `name` in the header section, unfolded.
    func fields(_ name: String, _ message: String) -> [String] {
        let header = message.components(separatedBy: "\r\n\r\n").first ?? message
        var fields: [String] = []
        for line in header.components(separatedBy: "\r\n") {
            if line.hasPrefix(" ") || line.hasPrefix("\t") {
                if !fields.isEmpty { fields[fields.count - 1] += " " + line.trimmingCharacters(in: .whitespaces) }
            } else {
                fields.append(line)
            }
        }
        return fields.filter { $0.lowercased().hasPrefix(name.lowercased() + ":") }
    }

    func testSignedSubmissionVerifiesAtTheOtherInstanceWithDMARCPass() throws {
        try startWorld(withSender: true)
        guard let sender, let submission = sender.ports["submission"] else { return }
        let reply = try send("submit", port: submission, mailFrom: "alice@sender.test", fromHeader: "alice@sender.test",
                             to: "bob@receiver.test", subject: "signed-and-delivered")
        XCTAssertEqual(reply["accepted"] as? Bool, true, "\(reply)")
        let stored = try waitForMessage("bob@receiver.test", subject: "signed-and-delivered")
        XCTAssertEqual(stored.components(separatedBy: "DKIM-Signature:").count - 1, 2, "two signatures: \(stored)")
        let results = authenticationResults(stored)
        XCTAssertEqual(results.count, 1, "\(results)")
        let ar = results.first ?? ""
        XCTAssertTrue(ar.hasPrefix("Authentication-Results: mx.receiver.test;"), ar)
        XCTAssertTrue(ar.contains("spf=pass"), ar)
        XCTAssertTrue(ar.contains("smtp.mailfrom=alice@sender.test"), ar)
        XCTAssertTrue(ar.contains("dkim=pass") && ar.contains("header.a=ed25519-sha256"), ar)
        XCTAssertTrue(ar.contains("header.a=rsa-sha256"), ar)
        XCTAssertEqual(ar.components(separatedBy: "dkim=pass").count - 1, 2, ar)
        XCTAssertTrue(ar.contains("iprev=pass"), ar)
        XCTAssertTrue(ar.contains("dmarc=pass") && ar.contains("header.from=sender.test"), ar)
    }

    func testForgedFromOfRejectDomainIsRefusedAtSMTP() throws {
        try startWorld(withSender: false)
        guard receiver != nil, unbound != nil else { return }
        let reply = try send("send", port: receiver.smtpPort, mailFrom: "billing@fail.test", fromHeader: "ceo@sender.test",
                             to: "bob@receiver.test", subject: "forged-ceo")
        XCTAssertEqual(reply["accepted"] as? Bool, false, "\(reply)")
        XCTAssertEqual(reply["code"] as? Int, 550, "\(reply)")
        XCTAssertTrue((reply["text"] as? String ?? "").contains("5.7.1"), "\(reply)")
        XCTAssertTrue((reply["text"] as? String ?? "").contains("DMARC"), "\(reply)")
        XCTAssertTrue(try receiver.messages("bob@receiver.test").isEmpty)
    }

    func testQuarantinePolicyDeliversToJunk() throws {
        try startWorld(withSender: false)
        guard receiver != nil, unbound != nil else { return }
        let reply = try send("send", port: receiver.smtpPort, mailFrom: "news@quarantine.test", fromHeader: "news@quarantine.test",
                             to: "bob@receiver.test", subject: "quarantined-news")
        XCTAssertEqual(reply["accepted"] as? Bool, true, "\(reply)")
        let stored = try waitForMessage("bob@receiver.test", subject: "quarantined-news", mailbox: "Junk")
        XCTAssertTrue(authenticationResults(stored).first?.contains("dmarc=fail") == true, stored)
        XCTAssertTrue(try receiver.messages("bob@receiver.test").isEmpty, "nothing in INBOX")
    }

    func testOwnDomainSpoofedFromOutsideIsRefusedEvenWithoutDMARCRecord() throws {
        try startWorld(withSender: false)
        guard receiver != nil, unbound != nil else { return }
        // receiver.test publishes no DMARC record at all.
        let reply = try send("send", port: receiver.smtpPort, mailFrom: "x@fail.test", fromHeader: "ceo@receiver.test",
                             to: "bob@receiver.test", subject: "spoofed-own-domain")
        XCTAssertEqual(reply["accepted"] as? Bool, false, "\(reply)")
        XCTAssertEqual(reply["code"] as? Int, 550, "\(reply)")
        XCTAssertTrue((reply["text"] as? String ?? "").contains("5.7.1"), "\(reply)")
    }

    func testForgedAuthenticationResultsAreRemoved() throws {
        try startWorld(withSender: false)
        guard receiver != nil, unbound != nil else { return }
        let reply = try send("send", port: receiver.smtpPort, mailFrom: "alice@sender.test", fromHeader: "alice@sender.test",
                             to: "bob@receiver.test", subject: "forged-results",
                             extra: ["Authentication-Results: mx.receiver.test; dkim=pass header.d=bank.example",
                                     "Authentication-Results: other.example; spf=pass"])
        XCTAssertEqual(reply["accepted"] as? Bool, true, "\(reply)")
        let stored = try waitForMessage("bob@receiver.test", subject: "forged-results")
        let results = authenticationResults(stored)
        XCTAssertEqual(results.count, 2, "ours and the other server's: \(results)")
        XCTAssertFalse(stored.contains("bank.example"), "the forged field claiming our authserv-id is gone")
        XCTAssertTrue(stored.contains("Authentication-Results: other.example; spf=pass"))
        XCTAssertTrue(results.contains { $0.contains("mx.receiver.test") && $0.contains("spf=pass") && $0.contains("dmarc=pass") }, "\(results)")
    }

    /// The receiver counts the evaluation, builds a report that validates against RFC 7489's
    /// schema, sends it to the sender domain's rua, and the sender's instance parses it.
    func testAggregateReportTravelsToTheSenderDomainAndValidatesAgainstTheSchema() throws {
        let xmllint = try RequiredTool.path("xmllint")
        guard let receiverPort = UnboundProcess.freePort(), let senderPort = UnboundProcess.freePort() else { throw XCTSkip("no free ports") }
        try startWorld(withSender: true, receiverPort: receiverPort, senderSMTPPort: senderPort)
        guard let sender, let submission = sender.ports["submission"], let receiverSetup, let senderSetup else { return }
        let reply = try send("submit", port: submission, mailFrom: "alice@sender.test", fromHeader: "alice@sender.test",
                             to: "bob@receiver.test", subject: "counted-for-the-report")
        XCTAssertEqual(reply["accepted"] as? Bool, true, "\(reply)")
        _ = try waitForMessage("bob@receiver.test", subject: "counted-for-the-report")
        // A graceful stop writes the day's counts to the store.
        XCTAssertEqual(receiver.stop(), 0)

        let pending = try FacteurProcess.cli(["dmarc", "pending", "--include-today", "--config", receiverSetup.config.path], dataDir: receiverSetup.data)
        XCTAssertEqual(pending.status, 0, pending.summary)
        let xml = pending.stdoutText.split(separator: "\n").filter { !$0.hasPrefix("<!--") }.joined(separator: "\n")
        XCTAssertTrue(xml.contains("<domain>sender.test</domain>"), xml)
        XCTAssertTrue(xml.contains("<header_from>sender.test</header_from>"), xml)
        XCTAssertTrue(xml.contains("<count>1</count>"), xml)
        XCTAssertTrue(xml.contains("<dkim>pass</dkim>") && xml.contains("<spf>pass</spf>"), xml)
        let file = dataRoot.url.appendingPathComponent("report.xml")
        try Data(xml.utf8).write(to: file)
        let schema = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FacteurMailAuthTests/Fixtures/dmarc-reports/schema/rfc7489-rua-no-namespace.xsd")
        let lint = try Subprocess.run(xmllint, ["--noout", "--schema", schema.path, file.path])
        XCTAssertEqual(lint.status, 0, "the report validates against RFC 7489 Appendix C: \(lint.summary)")

        let queued = try FacteurProcess.cli(["dmarc", "send", "--include-today", "--config", receiverSetup.config.path], dataDir: receiverSetup.data)
        XCTAssertEqual(queued.status, 0, queued.summary)
        XCTAssertTrue(queued.stdoutText.contains("1 report(s) queued"), queued.stdoutText)
        // Back up: its queue delivers the report to sender.test's MX, where it is read and kept.
        receiver = try FacteurProcess(dataDir: receiverSetup.data, listen: ["smtp=127.0.0.1:\(receiverSetup.port)"], config: receiverSetup.config)
        let deadline = Date().addingTimeInterval(60)
        var summary = ""
        while Date() < deadline {
            summary = try FacteurProcess.cli(["dmarc", "report", "--config", senderSetup.config.path], dataDir: senderSetup.data).stdoutText
            if summary.contains("127.0.0.1") { break }
            Thread.sleep(forTimeInterval: 1)
        }
        XCTAssertTrue(summary.contains("1 report(s) from 1 reporter(s)"), summary)
        XCTAssertTrue(summary.contains("127.0.0.1"), summary)
    }

    /// An alias of receiver.test with a member at sender.test: the copy leaves with an SRS
    /// envelope sender in receiver.test (SPF passes at the next hop), a DKIM signature of
    /// receiver.test and an ARC set; the sender instance verifies all three. A bounce to the SRS
    /// address is accepted, a forged one refused.
    func testAliasForwardsToAnotherOrganisationWithSRSDKIMAndARC() throws {
        guard let receiverPort = UnboundProcess.freePort(), let senderPort = UnboundProcess.freePort() else { throw XCTSkip("no free ports") }
        try startWorld(withSender: true, receiverPort: receiverPort, senderSMTPPort: senderPort, receiverMailAuth: "arc_seal = true")
        guard let sender, let senderSetup else { return }
        try receiver.cli(["alias", "add", "team@receiver.test", "bob@receiver.test", "alice@sender.test"])
        let reply = try send("send", port: receiver.smtpPort, mailFrom: "news@fail.test", fromHeader: "news@fail.test",
                             to: "team@receiver.test", subject: "forwarded-to-alice")
        XCTAssertEqual(reply["accepted"] as? Bool, true, "\(reply)")
        _ = try waitForMessage("bob@receiver.test", subject: "forwarded-to-alice")

        // At the other organisation.
        let deadline = Date().addingTimeInterval(30)
        var stored: String?
        while Date() < deadline, stored == nil {
            stored = try sender.storedMessages("alice@sender.test").first { $0.subject.contains("forwarded-to-alice") }
                .map { String(decoding: $0.bytes, as: UTF8.self) }
            if stored == nil { Thread.sleep(forTimeInterval: 0.3) }
        }
        let message = try XCTUnwrap(stored, "the forwarded copy reached alice@sender.test; sender log: \(sender.logExcerpt)")
        let returnPath = message.components(separatedBy: "\r\n").first ?? ""
        XCTAssertTrue(returnPath.hasPrefix("Return-Path: <SRS0="), returnPath)
        XCTAssertTrue(returnPath.contains("=fail.test=news@receiver.test>"), returnPath)
        let ours = authenticationResults(message).first { $0.contains("mx.sender.test") } ?? ""
        XCTAssertTrue(ours.contains("spf=pass"), ours)
        XCTAssertTrue(ours.contains("dkim=pass") && ours.contains("header.d=receiver.test"), ours)
        XCTAssertTrue(ours.contains("arc=pass") && ours.contains("header.as.1.d=receiver.test"), ours)
        let seal = fields("ARC-Seal", message).first ?? ""
        for tag in ["a=rsa-sha256;", "cv=none;", "d=receiver.test;", "i=1;"] { XCTAssertTrue(seal.contains(tag), seal) }

        // A bounce to that SRS address goes back to news@fail.test; a made-up one is refused.
        let srs = String(returnPath.dropFirst("Return-Path: <".count).prefix { $0 != ">" })
        let bounce = try send("send", port: receiver.smtpPort, mailFrom: "", fromHeader: "mailer-daemon@fail.test",
                              to: srs, subject: "bounce")
        XCTAssertEqual(bounce["accepted"] as? Bool, true, "\(bounce)")
        let forged = try send("send", port: receiver.smtpPort, mailFrom: "", fromHeader: "mailer-daemon@fail.test",
                              to: "SRS0=AAAA=" + srs.dropFirst("SRS0=AAAA=".count), subject: "forged-bounce")
        XCTAssertEqual(forged["accepted"] as? Bool, false, "\(forged)")
        XCTAssertEqual(forged["code"] as? Int, 550, "\(forged)")
        _ = senderSetup
    }
}
