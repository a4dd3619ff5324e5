// Transport security, the "done when" of the TLS issue: two organisations, a.test (Facteur on
// 127.0.0.1) and b.test (Facteur on 127.0.0.2), each get their certificate from one real Pebble
// (ACME RFC 8555, HTTP-01 on their own http listener), serve their own MTA-STS policy (RFC 8461,
// mode enforce) on their own https listener, and publish through a real unbound the records
// `facteur dns records` prints. They exchange mail both ways over verified TLS; REQUIRETLS (RFC 8689)
// is carried to b.test and bounced (5.7.30) for a domain without a policy; a policy that stops
// listing the MX holds the mail; and A's TLS report (RFC 8460 §4) counts exactly those sessions.
// Two loopback addresses let both instances use the same port numbers, as Pebble and the MX
// lookups need (one HTTP-01 port, one SMTP port for every MX).

import FacteurTestSupport
import Foundation
import XCTest

final class TransportSecurityEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    var unbound: UnboundProcess?
    var pebble: PebbleProcess?
    var organisations: [Organisation] = []

    /// One Facteur instance and what the test knows of it.
    final class Organisation {
        let domain: String
        let address: String
        let dataDir: URL
        let config: URL
        let user: String
        let password: String
        var process: FacteurProcess?
        init(domain: String, address: String, root: URL, user: String) {
            self.domain = domain; self.address = address; self.user = "\(user)@\(domain)"
            password = "\(user)-password-1"
            dataDir = root.appendingPathComponent(domain)
            config = root.appendingPathComponent("\(domain).toml")
        }
        var mx: String { "mail.\(domain)" }
        var server: FacteurProcess { get throws { try XCTUnwrap(process, "\(domain) is not running") } }
    }

    struct Ports {
        var dns: Int, smtp: Int, http: Int, https: Int
    }

    override func tearDownWithError() throws {
        let failed = (testRun?.failureCount ?? 0) > 0
        for organisation in organisations {
            if let process = organisation.process, process.isRunning {
                XCTAssertEqual(process.stop(), 0, "\(organisation.domain): graceful stop")
            }
            if failed, let process = organisation.process { print("\(organisation.domain) log:\n\(process.logExcerpt)") }
        }
        if failed, let pebble { print("pebble log:\n" + String(pebble.log.suffix(4000))) }
        pebble?.stop()
        unbound?.stop()
        try super.tearDownWithError()
    }

    // MARK: - The world

    func writeConfig(_ o: Organisation, ports: Ports, pebble: PebbleProcess, issuingRoot: String, policyMX: [String]? = nil) throws {
        let mx = policyMX.map { "mx = [" + $0.map { "\"\($0)\"" }.joined(separator: ", ") + "]" } ?? ""
        try """
        hostname = "\(o.mx)"
        primary_domain = "\(o.domain)"
        dns_servers = ["127.0.0.1:\(ports.dns)"]
        [acme]
        enabled = true
        directory = "\(pebble.directoryURL)"
        contact = ["mailto:postmaster@\(o.domain)"]
        challenge = "http-01"
        trust_roots = "\(pebble.trustRoots)"
        [mta_sts]
        mode = "enforce"
        max_age = 86400
        \(mx)
        [delivery]
        mx_port = \(ports.smtp)
        tls_trust_roots = "\(issuingRoot)"
        mta_sts_port = \(ports.https)
        [tls_reports]
        organization = "Organisation \(o.domain)"
        contact = "mailto:tls-admin@\(o.domain)"
        [mail_auth]
        trusted_networks = []
        """.write(to: o.config, atomically: true, encoding: .utf8)
    }

    /// The `_mta-sts` and `_smtp._tls` lines of `facteur dns records`, with a 1 s TTL so that a
    /// changed policy id is seen at once.
    func publishedPolicyRecords(_ o: Organisation) throws -> [String] {
        let result = try FacteurProcess.cli(["dns", "records", o.domain, "--config", o.config.path], dataDir: o.dataDir)
        XCTAssertEqual(result.status, 0, result.summary)
        let lines = result.stdoutText.split(separator: "\n").map(String.init)
            .filter { $0.hasPrefix("_mta-sts.\(o.domain). ") || $0.hasPrefix("_smtp._tls.\(o.domain). ") }
        XCTAssertEqual(lines.count, 2, result.stdoutText)
        return lines.map { $0.replacingOccurrences(of: " 3600 IN ", with: " 1 IN ") }
    }

    func zone(_ domain: String, address: String) -> [String] {
        ["\(domain). 60 IN MX 10 mail.\(domain).", "mail.\(domain). 60 IN A \(address)", "mta-sts.\(domain). 60 IN A \(address)",
         "\(domain). 60 IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\""]
    }

    func startDNS(port: Int, policyRecords: [String: [String]]) throws {
        unbound?.stop()
        var zones: [String: [String]] = ["c.test": zone("c.test", address: "127.0.0.3")]
        for o in organisations { zones[o.domain] = zone(o.domain, address: o.address) + (policyRecords[o.domain] ?? []) }
        unbound = try UnboundProcess(executable: try XCTUnwrap(UnboundProcess.executable()), port: port, zones: zones)
    }

    func start(_ o: Organisation, ports: Ports) throws {
        o.process = try FacteurProcess(dataDir: o.dataDir, listen: [
            "smtp=\(o.address):\(ports.smtp)", "submission=127.0.0.1:0", "http=\(o.address):\(ports.http)",
            "https=\(o.address):\(ports.https)",
        ], config: o.config)
    }

    /// The policy as a sender fetches it: over HTTPS from the organisation's own listener, the
    /// certificate checked against Pebble's root (so the ACME certificate is the one served).
    func fetchPolicy(_ o: Organisation, ports: Ports, root: String) throws -> String? {
        let curl = try RequiredTool.path("curl")
        let host = "mta-sts.\(o.domain)"
        let result = try Subprocess.run(curl, ["-sS", "--fail", "--max-time", "10", "--cacert", root,
                                               "--resolve", "\(host):\(ports.https):\(o.address)",
                                               "https://\(host):\(ports.https)/.well-known/mta-sts.txt"], timeout: 20)
        return result.status == 0 ? result.stdoutText : nil
    }

    /// Waits until the organisation's https listener serves its ACME certificate with `expected` in the policy.
    func waitForPolicy(_ o: Organisation, ports: Ports, root: String, containing expected: String, timeout: TimeInterval = 120) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last: String?
        while Date() < deadline {
            last = try fetchPolicy(o, ports: ports, root: root)
            if last?.contains(expected) == true { return }
            Thread.sleep(forTimeInterval: 0.5)
        }
        XCTFail("\(o.domain): no verified policy with \(expected.debugDescription) within \(timeout) s (last: \(last ?? "nil")); log: \(try o.server.logExcerpt)")
        throw HarnessError("no policy")
    }

    func submit(from o: Organisation, to recipient: String, subject: String) throws {
        let port = try XCTUnwrap(try o.server.ports["submission"])
        let reply = try python("mailauth_send.py", ["submit", "--port", String(port), "--mail-from", o.user, "--from-header", o.user,
                                                     "--to", recipient, "--subject", subject, "--user", o.user, "--password", o.password,
                                                     "--helo", "laptop.\(o.domain)"])
        XCTAssertEqual(reply["accepted"] as? Bool, true, "\(reply)")
    }

    func waitForMessage(_ o: Organisation, account: String, timeout: TimeInterval = 60,
                        where matches: (FacteurProcess.StoredMessage) -> Bool) throws -> FacteurProcess.StoredMessage {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = try o.server.storedMessages(account).first(where: matches) { return found }
            Thread.sleep(forTimeInterval: 0.3)
        }
        XCTFail("\(account): no such message within \(timeout) s")
        throw HarnessError("not delivered")
    }

    /// The delivery log line (`delivered message N to HOST … policy=… tls=…`) of the n-th delivery to `host`.
    func deliveryLines(_ o: Organisation, to host: String) throws -> [String] {
        try o.server.logText.split(separator: "\n").map(String.init).filter { $0.contains("delivered message") && $0.contains(" to \(host) ") }
    }

    func waitForDeliveryLines(_ o: Organisation, to host: String, count: Int, timeout: TimeInterval = 20) throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var lines: [String] = []
        while Date() < deadline {
            lines = try deliveryLines(o, to: host)
            if lines.count >= count { return lines }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return lines
    }

    /// The first Received field of a stored message, unfolded.
    func firstReceived(_ bytes: Data) -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let start = text.range(of: "Received: ") else { return "" }
        var field = ""
        for line in text[start.upperBound...].components(separatedBy: "\r\n") {
            if field.isEmpty { field = line; continue }
            guard line.hasPrefix(" ") || line.hasPrefix("\t") else { break }
            field += " " + line.trimmingCharacters(in: .whitespaces)
        }
        return field
    }

    // MARK: - The test

    func testTwoOrganisationsWithPebbleCertificatesExchangeMailOverVerifiedTLS() throws {
        let pebblePath = try RequiredTool.path("pebble")
        _ = try RequiredTool.path("curl")
        _ = try RequiredTool.path("openssl")
        guard UnboundProcess.executable() != nil else { _ = try RequiredTool.path("unbound"); return }
        guard let dnsPort = UnboundProcess.freePort(), let smtpPort = UnboundProcess.freePort(),
              let httpPort = UnboundProcess.freePort(), let httpsPort = UnboundProcess.freePort() else { throw XCTSkip("no free ports") }
        let ports = Ports(dns: dnsPort, smtp: smtpPort, http: httpPort, https: httpsPort)
        let root = dataRoot.url
        let a = Organisation(domain: "a.test", address: "127.0.0.1", root: root, user: "alice")
        let b = Organisation(domain: "b.test", address: "127.0.0.2", root: root, user: "bob")
        organisations = [a, b]

        // DNS first (Pebble resolves the names it validates), then Pebble and its issuing root.
        try startDNS(port: dnsPort, policyRecords: [:])
        let ca = try PebbleProcess(executable: pebblePath, directory: root.appendingPathComponent("pebble"), dnsPort: dnsPort,
                                   httpPort: httpPort, tlsPort: httpsPort)
        pebble = ca
        let issuingRoot = root.appendingPathComponent("pebble-root.pem").path
        try ca.issuingRoot().write(toFile: issuingRoot, atomically: true, encoding: .utf8)

        var policyRecords: [String: [String]] = [:]
        for o in organisations {
            try FileManager.default.createDirectory(at: o.dataDir, withIntermediateDirectories: true)
            try writeConfig(o, ports: ports, pebble: ca, issuingRoot: issuingRoot)
            for arguments in [["domain", "add", o.domain], ["account", "add", o.user, "--password-stdin"]] {
                let result = try FacteurProcess.cli(arguments + ["--config", o.config.path], dataDir: o.dataDir, stdin: o.password + "\n")
                XCTAssertEqual(result.status, 0, result.summary)
            }
            policyRecords[o.domain] = try publishedPolicyRecords(o)
        }
        XCTAssertTrue(policyRecords["a.test"]?.contains { $0.contains("IN TXT \"v=STSv1; id=") } == true, "\(policyRecords)")
        XCTAssertTrue(policyRecords["b.test"]?.contains { $0.contains("IN TXT \"v=TLSRPTv1; rua=mailto:") } == true, "\(policyRecords)")
        try startDNS(port: dnsPort, policyRecords: policyRecords)

        for o in organisations { try start(o, ports: ports) }
        for o in organisations {
            try waitForPolicy(o, ports: ports, root: issuingRoot, containing: "mode: enforce\r\nmx: \(o.mx)\r\n")
            let server = try o.server
            XCTAssertTrue(server.logText.contains("challenge=http-01"), server.logExcerpt)
        }

        // 1. Both ways, MTA-STS enforced and verified against Pebble's root.
        try submit(from: a, to: b.user, subject: "a-to-b")
        try submit(from: b, to: a.user, subject: "b-to-a")
        let atB = try waitForMessage(b, account: b.user) { $0.subject == "a-to-b" }
        let atA = try waitForMessage(a, account: a.user) { $0.subject == "b-to-a" }
        for (o, peer, arrived) in [(a, b, atB), (b, a, atA)] {
            let lines = try waitForDeliveryLines(o, to: peer.mx, count: 1)
            XCTAssertEqual(lines.count, 1, "\(o.domain) → \(peer.domain): \(lines)")
            if let line = lines.first {
                XCTAssertTrue(line.contains("policy=mta-sts tls=TLSv1."), line)
                XCTAssertTrue(line.contains(" cipher=TLS_"), line)
                XCTAssertTrue(line.contains("verified=webpki"), line)
            }
            // RFC 8314 §4.3: the receiving side records the TLS version and cipher.
            let received = firstReceived(arrived.bytes)
            XCTAssertTrue(received.contains("(using TLSv1.") && received.contains("with cipher TLS_"), received)
            XCTAssertTrue(received.contains("by \(peer.mx)"), received)
        }

        // 2. REQUIRETLS (RFC 8689): over the MTA-STS-verified path it is delivered and carried on;
        // to c.test (no MTA-STS, no DNSSEC) it is bounced with 5.7.30, never downgraded.
        let submissionA = try XCTUnwrap(try a.server.ports["submission"])
        for (recipient, subject) in [(b.user, "requiretls-to-b"), ("carol@c.test", "requiretls-to-c")] {
            let sent = try python("requiretls_send.py", ["--port", String(submissionA), "--user", a.user, "--password", a.password,
                                                          "--to", recipient, "--subject", subject, "--starttls", "--requiretls"])
            XCTAssertEqual(sent["ehlo_requiretls"] as? Bool, true, "\(sent)")
            XCTAssertEqual(sent["accepted"] as? Bool, true, "\(sent)")
        }
        let required = try waitForMessage(b, account: b.user) { $0.subject == "requiretls-to-b" }
        let requiredReceived = firstReceived(required.bytes)
        XCTAssertTrue(requiredReceived.contains("REQUIRETLS"), "B's Received records REQUIRETLS: \(requiredReceived)")
        XCTAssertTrue(requiredReceived.contains("(using TLSv1."), requiredReceived)
        let requiredLines = try waitForDeliveryLines(a, to: b.mx, count: 2)
        XCTAssertEqual(requiredLines.count, 2, "\(requiredLines)")
        if let line = requiredLines.last { XCTAssertTrue(line.contains("policy=mta-sts") && line.contains("verified=webpki"), line) }
        let bounce = try waitForMessage(a, account: a.user) {
            let text = String(decoding: $0.bytes, as: UTF8.self)
            return text.contains("Action: failed") && text.contains("carol@c.test")
        }
        let bounceText = String(decoding: bounce.bytes, as: UTF8.self)
        XCTAssertTrue(bounceText.contains("5.7.30"), bounceText)
        XCTAssertTrue(try deliveryLines(a, to: "mail.c.test").isEmpty, "never sent to c.test")

        // 3. Break it: b.test's policy stops listing its MX; A sees the new id and holds the mail.
        XCTAssertEqual(try b.server.stop(), 0)
        try writeConfig(b, ports: ports, pebble: ca, issuingRoot: issuingRoot, policyMX: ["mail.elsewhere.test"])
        policyRecords[b.domain] = try publishedPolicyRecords(b)
        try startDNS(port: dnsPort, policyRecords: policyRecords)
        try start(b, ports: ports)
        try waitForPolicy(b, ports: ports, root: issuingRoot, containing: "mx: mail.elsewhere.test\r\n")
        // A's resolver may still hold the old `_mta-sts` TXT for its 1 s TTL.
        Thread.sleep(forTimeInterval: 2.5)
        try submit(from: a, to: b.user, subject: "a-to-b-mismatch")
        let held = try waitForDeferral(a)
        XCTAssertTrue(held.text.contains("4.7.5") && held.text.contains("MTA-STS"), held.text)
        XCTAssertTrue(held.text.contains(b.mx), held.text)
        Thread.sleep(forTimeInterval: 2)
        XCTAssertFalse(try b.server.storedMessages(b.user).contains { $0.subject == "a-to-b-mismatch" }, "enforce really enforces")
        XCTAssertEqual(try deliveryLines(a, to: b.mx).count, 2, "no third delivery to b.test")

        // 4. A's TLS report for b.test (RFC 8460 §4): stopping A flushes its counts.
        let failuresLogged = try a.server.logText.components(separatedBy: "b.test: TLS policy failure (sts, validation-failure)").count - 1
        XCTAssertGreaterThanOrEqual(failuresLogged, 1)
        XCTAssertEqual(try a.server.stop(), 0)
        let pending = try FacteurProcess.cli(["tlsrpt", "pending", "--include-today", "--config", a.config.path], dataDir: a.dataDir)
        XCTAssertEqual(pending.status, 0, pending.summary)
        let reports = Self.splitPending(pending.stdoutText)
        XCTAssertNil(reports["c.test"], "no session was opened to c.test")
        let json = try XCTUnwrap(reports["b.test"], "no report for b.test: \(pending.stdoutText)")
        try checkReport(json, successes: 2, failures: failuresLogged, policyMX: ["mail.b.test", "mail.elsewhere.test"], peer: b)
        let one = try FacteurProcess.cli(["tlsrpt", "pending", "--include-today", "--domain", "B.test", "--config", a.config.path],
                                         dataDir: a.dataDir)
        XCTAssertEqual(Array(Self.splitPending(one.stdoutText).keys), ["b.test"], one.summary)
    }

    func waitForDeferral(_ o: Organisation, timeout: TimeInterval = 30) throws -> (id: String, text: String) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let list = try o.server.cli(["queue", "list", "--config", o.config.path]).stdoutText
            if let line = list.split(separator: "\n").first(where: { $0.contains("(deferred)") }), let id = line.split(separator: " ").first {
                return (String(id), try o.server.cli(["queue", "show", String(id), "--config", o.config.path]).stdoutText)
            }
            Thread.sleep(forTimeInterval: 0.3)
        }
        XCTFail("\(o.domain): nothing deferred within \(timeout) s")
        throw HarnessError("not deferred")
    }

    /// `facteur tlsrpt pending` prints `# DOMAIN` then that domain's JSON report.
    static func splitPending(_ text: String) -> [String: String] {
        var reports: [String: String] = [:]
        var domain: String?
        for line in text.components(separatedBy: "\n") {
            if line.hasPrefix("# ") {
                domain = String(line.dropFirst(2)).trimmingCharacters(in: .whitespaces)
                continue
            }
            if let domain { reports[domain, default: ""] += line + "\n" }
        }
        return reports
    }

    // MARK: - RFC 8460 §4 report checks

    /// RFC 8460 §4.4, decoded strictly: JSONDecoder refuses a number for a string, a string or a
    /// boolean or a fraction for an integer, and a missing required field.
    struct Report: Decodable {
        struct DateRange: Decodable {
            var start: String, end: String
            enum CodingKeys: String, CodingKey { case start = "start-datetime", end = "end-datetime" }
        }
        struct Policy: Decodable {
            var type: String, strings: [String], domain: String, mxHost: [String]?
            enum CodingKeys: String, CodingKey {
                case type = "policy-type", strings = "policy-string", domain = "policy-domain", mxHost = "mx-host"
            }
        }
        struct Summary: Decodable {
            var successes: Int, failures: Int
            enum CodingKeys: String, CodingKey { case successes = "total-successful-session-count", failures = "total-failure-session-count" }
        }
        struct FailureDetail: Decodable {
            var resultType: String, sendingMTAIP: String, receivingMXHostname: String, receivingIP: String, failedSessionCount: Int
            enum CodingKeys: String, CodingKey {
                case resultType = "result-type", sendingMTAIP = "sending-mta-ip", receivingMXHostname = "receiving-mx-hostname"
                case receivingIP = "receiving-ip", failedSessionCount = "failed-session-count"
            }
        }
        struct Entry: Decodable {
            var policy: Policy, summary: Summary, failureDetails: [FailureDetail]?
            enum CodingKeys: String, CodingKey { case policy, summary, failureDetails = "failure-details" }
        }
        var organizationName: String, dateRange: DateRange, contactInfo: String, reportID: String, policies: [Entry]
        enum CodingKeys: String, CodingKey {
            case organizationName = "organization-name", dateRange = "date-range", contactInfo = "contact-info"
            case reportID = "report-id", policies
        }
    }

    func checkReport(_ json: String, successes: Int, failures: Int, policyMX: Set<String>, peer: Organisation,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let report: Report
        do {
            report = try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        } catch {
            XCTFail("not an RFC 8460 §4.4 report: \(error)\n\(json)", file: file, line: line)
            return
        }
        XCTAssertEqual(report.organizationName, "Organisation a.test", file: file, line: line)
        XCTAssertEqual(report.contactInfo, "mailto:tls-admin@a.test", file: file, line: line)
        XCTAssertFalse(report.reportID.isEmpty, file: file, line: line)
        // §4.4: date-range in RFC 3339 date-time, here today's (UTC) day.
        let rfc3339 = ISO8601DateFormatter()
        let start = rfc3339.date(from: report.dateRange.start), end = rfc3339.date(from: report.dateRange.end)
        XCTAssertNotNil(start, "start-datetime is not RFC 3339: \(report.dateRange.start)", file: file, line: line)
        XCTAssertNotNil(end, "end-datetime is not RFC 3339: \(report.dateRange.end)", file: file, line: line)
        if let start, let end {
            XCTAssertLessThan(start, end, file: file, line: line)
            XCTAssertTrue(start <= Date() && Date().timeIntervalSince(start) < 86_400, "\(report.dateRange)", file: file, line: line)
        }
        XCTAssertFalse(report.policies.isEmpty, file: file, line: line)
        var totalSuccesses = 0, totalFailures = 0, detailedFailures = 0
        var listedMX: Set<String> = []
        for entry in report.policies {
            XCTAssertEqual(entry.policy.type, "sts", file: file, line: line)
            XCTAssertEqual(entry.policy.domain, peer.domain, file: file, line: line)
            XCTAssertTrue(entry.policy.strings.contains("mode: enforce"), "\(entry.policy.strings)", file: file, line: line)
            XCTAssertNotNil(entry.policy.mxHost, "mx-host: \(json)", file: file, line: line)
            for text in entry.policy.strings where text.hasPrefix("mx: ") { listedMX.insert(String(text.dropFirst(4))) }
            totalSuccesses += entry.summary.successes
            totalFailures += entry.summary.failures
            if entry.summary.failures > 0 {
                XCTAssertFalse(entry.failureDetails?.isEmpty ?? true, "failures without failure-details: \(json)", file: file, line: line)
            }
            for detail in entry.failureDetails ?? [] {
                XCTAssertEqual(detail.resultType, "validation-failure", file: file, line: line)
                XCTAssertTrue(IPAddressCheck.isIP(detail.sendingMTAIP), "sending-mta-ip: \(detail.sendingMTAIP)", file: file, line: line)
                XCTAssertEqual(detail.receivingMXHostname, peer.mx, file: file, line: line)
                XCTAssertEqual(detail.receivingIP, peer.address, file: file, line: line)
                detailedFailures += detail.failedSessionCount
            }
        }
        XCTAssertEqual(totalSuccesses, successes, "successful sessions to \(peer.domain): \(json)", file: file, line: line)
        XCTAssertEqual(totalFailures, failures, "policy-mismatch sessions to \(peer.domain): \(json)", file: file, line: line)
        XCTAssertEqual(detailedFailures, failures, "failure-details add up to the failures: \(json)", file: file, line: line)
        XCTAssertEqual(listedMX, policyMX, "both policies (before and after the change) are reported: \(json)", file: file, line: line)
    }
}

/// Whether a string is an IPv4 or IPv6 address (inet_pton).
enum IPAddressCheck {
    static func isIP(_ text: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }
}
