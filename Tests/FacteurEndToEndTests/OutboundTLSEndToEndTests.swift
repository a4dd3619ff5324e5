// Outbound TLS policy end to end: two Facteur instances on loopback. "sender.test" (instance B)
// delivers what alice submits to the receiving instance through MX records served by NSD (signed
// with ldns-signzone where the test wants DNSSEC) behind a validating unbound; MTA-STS policies come
// from a private nginx over HTTPS with a certificate of a test CA that the sender trusts.
// DANE (RFC 7672): a matching TLSA 3 1 1 delivers, a wrong one holds the mail, an unsigned zone
// delivers opportunistically. MTA-STS (RFC 8461): a listed MX with a CA certificate delivers, an
// unlisted MX in enforce mode is held and then bounced, testing mode delivers and logs the failure.
// Overrides: require-verified holds mail to a self-signed peer, allow-plaintext skips STARTTLS.

import FacteurTestSupport
import Foundation
import XCTest

final class OutboundTLSEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    var dns: SignedZoneServer?
    var nginx: NginxProcess?
    var receiver: FacteurProcess?
    var sender: FacteurProcess?

    override func tearDownWithError() throws {
        for instance in [sender, receiver] {
            if let instance, instance.isRunning { _ = instance.stop() }
        }
        if (testRun?.failureCount ?? 0) > 0 {
            if let sender { print("sender log:\n\(sender.logExcerpt)") }
            if let receiver { print("receiver log:\n\(receiver.logExcerpt)") }
            if let dns { print(dns.logs) }
        }
        nginx?.stop()
        dns?.stop()
        try super.tearDownWithError()
    }

    struct World {
        var domain: String
        var smtpPort: Int
        var submissionPort: Int
    }

    /// Starts DNS, (nginx,) the receiver for `domain` and the sender.
    /// - tlsa: the TLSA RDATA to publish for the receiver's MX, given the SPKI SHA-256 of its certificate.
    /// - policy: an MTA-STS policy body to serve for `domain`.
    /// - selfSigned: the receiver presents its own self-signed certificate instead of the CA's.
    func startWorld(domain: String, signed: Bool, tlsa: ((String) -> String)? = nil, policy: String? = nil,
                    selfSigned: Bool = false, senderDelivery: String = "") throws -> World? {
        guard SignedZoneServer.tools() != nil else {
            _ = try RequiredTool.path("nsd")
            _ = try RequiredTool.path("ldns-signzone")
            return nil
        }
        guard TestCertificateAuthority.openssl() != nil else { _ = try RequiredTool.path("openssl"); return nil }
        if policy != nil, NginxProcess.executable() == nil { _ = try RequiredTool.path("nginx"); return nil }
        guard let dnsPort = UnboundProcess.freePort(), let smtpPort = UnboundProcess.freePort(),
              let httpsPort = UnboundProcess.freePort() else { throw XCTSkip("no free ports") }

        let ca = try TestCertificateAuthority(directory: dataRoot.url.appendingPathComponent("ca"))
        let mx = "mx.\(domain)"
        let mxCertificate = try ca.issue([mx], file: "mx")
        var zone = ["\(domain). 300 IN MX 10 \(mx).", "\(mx). 300 IN A 127.0.0.1"]
        if let tlsa { zone.append("_\(smtpPort)._tcp.\(mx). 300 IN TLSA \(tlsa(try ca.spkiSHA256(certificate: mxCertificate.certificate)))") }
        if let policy {
            zone += ["_mta-sts.\(domain). 300 IN TXT \"v=STSv1; id=\(Int(Date().timeIntervalSince1970))\"",
                     "mta-sts.\(domain). 300 IN A 127.0.0.1"]
            let web = try ca.issue(["mta-sts.\(domain)"], file: "mta-sts")
            nginx = try NginxProcess(executable: try XCTUnwrap(NginxProcess.executable()), port: httpsPort,
                                     certificate: web.certificate, key: web.key, files: [".well-known/mta-sts.txt": policy])
        }
        dns = try SignedZoneServer(zones: [
            domain: zone,
            "sender.test": ["sender.test. 300 IN MX 10 mx.sender.test.", "mx.sender.test. 300 IN A 127.0.0.1",
                            "sender.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\""],
            "1.0.0.127.in-addr.arpa": ["1.0.0.127.in-addr.arpa. 300 IN PTR mx.sender.test."],
        ], signed: signed ? [domain] : [], port: dnsPort)

        let receiverData = dataRoot.url.appendingPathComponent("receiver")
        try FileManager.default.createDirectory(at: receiverData, withIntermediateDirectories: true)
        let receiverConfig = dataRoot.url.appendingPathComponent("receiver.toml")
        let tls = selfSigned ? "" : "[tls]\ncertificate = \"\(mxCertificate.certificate)\"\nkey = \"\(mxCertificate.key)\"\n"
        try """
        hostname = "\(mx)"
        primary_domain = "\(domain)"
        dns_servers = ["127.0.0.1:\(dnsPort)"]
        \(tls)
        [mail_auth]
        trusted_networks = []
        """.write(to: receiverConfig, atomically: true, encoding: .utf8)
        let added = try FacteurProcess.cli(["domain", "add", domain, "--config", receiverConfig.path], dataDir: receiverData)
        XCTAssertEqual(added.status, 0, added.summary)
        receiver = try FacteurProcess(dataDir: receiverData, listen: ["smtp=127.0.0.1:\(smtpPort)"], config: receiverConfig)
        try receiver?.addAccount("bob@\(domain)")

        let senderData = dataRoot.url.appendingPathComponent("sender")
        try FileManager.default.createDirectory(at: senderData, withIntermediateDirectories: true)
        let senderConfig = dataRoot.url.appendingPathComponent("sender.toml")
        try """
        hostname = "mx.sender.test"
        primary_domain = "sender.test"
        dns_servers = ["127.0.0.1:\(dnsPort)"]
        [delivery]
        mx_port = \(smtpPort)
        tls_trust_roots = "\(ca.certificatePath)"
        mta_sts_port = \(httpsPort)
        \(senderDelivery)
        [mail_auth]
        trusted_networks = []
        """.write(to: senderConfig, atomically: true, encoding: .utf8)
        for arguments in [["domain", "add", "sender.test"], ["account", "add", "alice@sender.test", "--password-stdin"]] {
            let result = try FacteurProcess.cli(arguments + ["--config", senderConfig.path], dataDir: senderData,
                                                stdin: "alice-password-1\n")
            XCTAssertEqual(result.status, 0, result.summary)
        }
        let started = try FacteurProcess(dataDir: senderData, listen: ["submission=127.0.0.1:0"], config: senderConfig)
        sender = started
        return World(domain: domain, smtpPort: smtpPort, submissionPort: try XCTUnwrap(started.ports["submission"]))
    }

    func submit(_ world: World, subject: String) throws {
        let reply = try python("mailauth_send.py", ["submit", "--port", String(world.submissionPort), "--mail-from", "alice@sender.test",
                                                     "--from-header", "alice@sender.test", "--to", "bob@\(world.domain)",
                                                     "--subject", subject, "--user", "alice@sender.test", "--password", "alice-password-1"])
        XCTAssertEqual(reply["accepted"] as? Bool, true, "\(reply)")
    }

    func waitForDelivery(_ world: World, subject: String, timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try receiver?.storedMessages("bob@\(world.domain)").contains(where: { $0.subject.contains(subject) }) == true { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTFail("\(subject) not delivered within \(timeout) s")
        throw HarnessError("not delivered")
    }

    /// Waits until the sender's queue shows a deferred recipient; returns `queue show` of that message.
    func waitForDeferral(timeout: TimeInterval = 30) throws -> (id: String, text: String) {
        let sender = try XCTUnwrap(sender)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let list = try sender.cli(["queue", "list"]).stdoutText
            if let line = list.split(separator: "\n").first(where: { $0.contains("(deferred)") }),
               let id = line.split(separator: " ").first {
                return (String(id), try sender.cli(["queue", "show", String(id)]).stdoutText)
            }
            Thread.sleep(forTimeInterval: 0.3)
        }
        XCTFail("nothing deferred within \(timeout) s")
        throw HarnessError("not deferred")
    }

    func waitForLog(_ text: String, timeout: TimeInterval = 15) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if sender?.logText.contains(text) == true { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return false
    }

    // MARK: DANE

    func testDANEMatchingTLSADelivers() throws {
        guard let world = try startWorld(domain: "dane.test", signed: true, tlsa: { "3 1 1 \($0)" }) else { return }
        try submit(world, subject: "dane-good")
        try waitForDelivery(world, subject: "dane-good")
        XCTAssertTrue(waitForLog("policy=dane tls=TLSv1.3 cipher=TLS_"), sender?.logExcerpt ?? "")
        XCTAssertTrue(waitForLog("verified=dane-ee"), sender?.logExcerpt ?? "")
    }

    func testDANEWrongTLSAHoldsTheMail() throws {
        let wrong = String(repeating: "ab", count: 32)
        guard let world = try startWorld(domain: "dane.test", signed: true, tlsa: { _ in "3 1 1 \(wrong)" }) else { return }
        try submit(world, subject: "dane-bad")
        let held = try waitForDeferral()
        XCTAssertTrue(held.text.contains("4.7.5"), held.text)
        XCTAssertTrue(try receiver?.storedMessages("bob@dane.test").isEmpty == true, "never delivered, not even in plaintext")
    }

    func testUnsignedZoneIsOpportunistic() throws {
        // The same wrong TLSA, but unsigned: it does not count (RFC 7672 §2.2).
        let wrong = String(repeating: "ab", count: 32)
        guard let world = try startWorld(domain: "plain.test", signed: false, tlsa: { _ in "3 1 1 \(wrong)" }) else { return }
        try submit(world, subject: "unsigned")
        try waitForDelivery(world, subject: "unsigned")
        XCTAssertTrue(waitForLog("verified=none"), sender?.logExcerpt ?? "")
    }

    // MARK: MTA-STS

    func testMTASTSEnforceWithAListedMXDelivers() throws {
        let policy = "version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n"
        guard let world = try startWorld(domain: "sts.test", signed: false, policy: policy) else { return }
        try submit(world, subject: "sts-good")
        try waitForDelivery(world, subject: "sts-good")
        XCTAssertTrue(waitForLog("verified=webpki"), sender?.logExcerpt ?? "")
        XCTAssertTrue(nginx?.accessLog.contains("/.well-known/mta-sts.txt") == true)
        let cache = dataRoot.url.appendingPathComponent("sender/mta-sts-cache.json")
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache.path), "the policy is cached durably")
    }

    func testMTASTSEnforceWithAnUnlistedMXHoldsThenBounces() throws {
        let policy = "version: STSv1\nmode: enforce\nmx: mail.elsewhere.test\nmax_age: 86400\n"
        guard let world = try startWorld(domain: "sts.test", signed: false, policy: policy) else { return }
        try submit(world, subject: "sts-unlisted")
        let held = try waitForDeferral()
        XCTAssertTrue(held.text.contains("MTA-STS"), held.text)
        XCTAssertTrue(try receiver?.storedMessages("bob@sts.test").isEmpty == true)
        // The administrator gives up on it (as expiry would): alice gets the failure DSN at the
        // worker's next pass (within its 30 s poll interval).
        let sender = try XCTUnwrap(sender)
        _ = try sender.cli(["queue", "bounce", held.id])
        let deadline = Date().addingTimeInterval(60)
        var found = false
        while Date() < deadline, !found {
            found = try sender.storedMessages("alice@sender.test").contains {
                let text = String(decoding: $0.bytes, as: UTF8.self)
                return text.contains("Action: failed") && text.contains("bob@sts.test")
            }
            if !found { Thread.sleep(forTimeInterval: 0.5) }
        }
        XCTAssertTrue(found, "the failure DSN reached alice")
    }

    func testMTASTSTestingDeliversAndLogsTheFailure() throws {
        let policy = "version: STSv1\nmode: testing\nmx: mail.elsewhere.test\nmax_age: 86400\n"
        guard let world = try startWorld(domain: "sts.test", signed: false, policy: policy) else { return }
        try submit(world, subject: "sts-testing")
        try waitForDelivery(world, subject: "sts-testing")
        XCTAssertTrue(waitForLog("does not match the MTA-STS policy"), sender?.logExcerpt ?? "")
    }

    // MARK: Overrides

    func testRequireVerifiedHoldsMailToASelfSignedPeer() throws {
        guard let world = try startWorld(domain: "partner.test", signed: false, selfSigned: true,
                                         senderDelivery: "[delivery.tls.\"partner.test\"]\npolicy = \"require-verified\"") else { return }
        try submit(world, subject: "must-verify")
        let held = try waitForDeferral()
        XCTAssertTrue(held.text.contains("not trusted"), held.text)
    }

    func testAllowPlaintextSkipsSTARTTLS() throws {
        guard let world = try startWorld(domain: "partner.test", signed: false,
                                         senderDelivery: "[delivery.tls.\"partner.test\"]\npolicy = \"allow-plaintext\"") else { return }
        try submit(world, subject: "plaintext")
        try waitForDelivery(world, subject: "plaintext")
        XCTAssertTrue(waitForLog("tls=none"), sender?.logExcerpt ?? "")
    }
}
