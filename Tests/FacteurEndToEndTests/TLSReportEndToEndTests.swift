// Transport security requests end to end, on the real `facteur serve`: REQUIRETLS (RFC 8689)
// submitted with Python's smtplib over STARTTLS reaches the queue as requireTLS and is refused
// without TLS; `TLS-Required: No` queues as policyExempt. And `facteur tlsrpt import/list/show`
// on a TLS report file (RFC 8460).

import Foundation
import XCTest

final class TLSReportEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    var config: URL { dataRoot.url.appendingPathComponent("facteur.toml") }

    /// A server for local.test whose outbound DNS goes nowhere (a closed port): relayed mail
    /// stays queued, deferred, for `queue show` to look at.
    func startServer() throws {
        try """
        hostname = "mx.local.test"
        primary_domain = "local.test"
        dns_servers = ["127.0.0.1:9"]
        """.write(to: config, atomically: true, encoding: .utf8)
        server = try FacteurProcess(dataDir: dataDir, listen: ["smtp=127.0.0.1:0", "submission=127.0.0.1:0"], config: config)
        try server.cli(["account", "add", "alice@local.test", "--password-stdin", "--config", config.path], stdin: "e2e-password-1\n")
    }

    func submit(_ subject: String, starttls: Bool, requiretls: Bool, headers: [String] = []) throws -> [String: Any] {
        let port = try XCTUnwrap(server.ports["submission"], "no submission listener")
        var arguments = ["--port", String(port), "--user", "alice@local.test", "--password", "e2e-password-1",
                         "--to", "dave@remote.test", "--subject", subject]
        if starttls { arguments.append("--starttls") }
        if requiretls { arguments.append("--requiretls") }
        for header in headers { arguments += ["--header", header] }
        return try python("requiretls_send.py", arguments)
    }

    /// The `TLS demand:` value of `queue show` for every queued message.
    func queuedDemands() throws -> [String] {
        let list = try server.cli(["queue", "list", "--config", config.path]).stdoutText
        let ids = list.split(separator: "\n").compactMap { line -> String? in
            let first = line.split(separator: " ").first.map(String.init) ?? ""
            return Int(first) != nil && line.contains(" -> ") ? first : nil  // not the "N message(s)" total line
        }
        return try ids.map { id in
            let shown = try server.cli(["queue", "show", id, "--config", config.path]).stdoutText
            let line = shown.split(separator: "\n").first { $0.contains("TLS demand:") }
            return line.map { String($0).replacingOccurrences(of: "TLS demand:", with: "").trimmingCharacters(in: .whitespaces) } ?? "?"
        }
    }

    func testREQUIRETLSAndTLSRequiredNoReachTheQueue() throws {
        try startServer()
        let plain = try submit("no tls", starttls: false, requiretls: true)
        XCTAssertEqual(plain["ehlo_requiretls"] as? Bool, false, "RFC 8689 §4: not advertised before TLS")
        XCTAssertEqual(plain["accepted"] as? Bool, false)
        XCTAssertEqual(plain["code"] as? Int, 530)
        XCTAssertEqual(try queuedDemands().count, 0, "nothing queued when REQUIRETLS is refused")

        let secure = try submit("requiretls", starttls: true, requiretls: true)
        XCTAssertEqual(secure["ehlo_requiretls"] as? Bool, true)
        XCTAssertEqual(secure["accepted"] as? Bool, true, "\(secure)")
        XCTAssertEqual(try queuedDemands().map { $0.split(separator: " ").first.map(String.init) ?? "" }, ["requireTLS"])

        let exempt = try submit("tls-required no", starttls: true, requiretls: false, headers: ["TLS-Required: No"])
        XCTAssertEqual(exempt["accepted"] as? Bool, true, "\(exempt)")
        let demands = try queuedDemands().map { $0.split(separator: " ").first.map(String.init) ?? "" }
        XCTAssertEqual(Set(demands), ["requireTLS", "policyExempt"])
    }

    func testImportedReportIsListedAndShown() throws {
        try startServer()
        let report = """
        {"organization-name":"Reporter Inc.","date-range":{"start-datetime":"2026-11-26T00:00:00Z","end-datetime":"2026-11-26T23:59:59Z"},
         "contact-info":"tlsrpt@reporter.example","report-id":"r-1",
         "policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce","mx: mx.local.test","max_age: 86400"],
                                "policy-domain":"local.test","mx-host":["mx.local.test"]},
                      "summary":{"total-successful-session-count":41,"total-failure-session-count":2},
                      "failure-details":[{"result-type":"certificate-expired","sending-mta-ip":"192.0.2.1",
                                          "receiving-mx-hostname":"mx.local.test","failed-session-count":2}]}]}
        """
        let file = dataRoot.url.appendingPathComponent("reporter.example!local.test!1795651200!1795737599.json")
        try report.write(to: file, atomically: true, encoding: .utf8)
        let imported = try server.cli(["tlsrpt", "import", file.path, "--config", config.path]).stdoutText
        XCTAssertTrue(imported.contains("1 report(s) stored"), imported)
        let again = try server.cli(["tlsrpt", "import", file.path, "--config", config.path]).stdoutText
        XCTAssertTrue(again.contains("0 report(s) stored"), "the same report twice is kept once: \(again)")
        let list = try server.cli(["tlsrpt", "list", "--days", "100000", "--config", config.path]).stdoutText
        XCTAssertTrue(list.contains("local.test") && list.contains("41") && list.contains("Reporter Inc."), list)
        let id = list.split(separator: "\n").dropFirst().first.flatMap { $0.split(separator: " ").first }.map(String.init) ?? "1"
        let shown = try server.cli(["tlsrpt", "show", id, "--config", config.path]).stdoutText
        XCTAssertTrue(shown.contains("\"result-type\" : \"certificate-expired\"") || shown.contains("\"result-type\": \"certificate-expired\""), shown)
        let bad = dataRoot.url.appendingPathComponent("bad.json")
        try "{\"organization-name\": 5}".write(to: bad, atomically: true, encoding: .utf8)
        let refused = try server.cli(["tlsrpt", "import", bad.path, "--config", config.path], expectSuccess: false)
        XCTAssertNotEqual(refused.status, 0)
    }
}
