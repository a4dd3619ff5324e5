// The public HTTP(S) listener of the real `facteur serve`: the MTA-STS policy (RFC 8461 §3.3)
// for mta-sts.<local domain> over HTTPS, 404 elsewhere, and hostile requests refused.

import FacteurTestSupport
import Foundation
import XCTest

final class PublicWebEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    /// GET over curl with the name pinned to loopback; returns (body, HTTP status).
    static func curl(_ curl: String, https: Bool, host: String, port: Int, path: String, caFile: String? = nil) throws -> (String, Int) {
        var arguments = ["-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                         "--resolve", "\(host):\(port):127.0.0.1", "\(https ? "https" : "http")://\(host):\(port)\(path)"]
        if https { arguments.insert(contentsOf: caFile.map { ["--cacert", $0] } ?? ["-k"], at: 0) }
        let result = try Subprocess.run(curl, arguments, timeout: 20)
        let text = result.stdoutText
        guard let newline = text.lastIndex(of: "\n") else { return (text, 0) }
        return (String(text[..<newline]), Int(text[text.index(after: newline)...]) ?? 0)
    }

    func testPolicyServedForMTASTSHostOnlyAndHostileRequestsRefused() throws {
        let curl = try RequiredTool.path("curl")
        let config = dataRoot.url.appendingPathComponent("facteur.toml")
        try """
        hostname = "mail.example.test"
        primary_domain = "example.test"
        [mta_sts]
        mode = "enforce"
        max_age = 86400
        mx = ["mail.example.test", "*.backup.example.test"]
        """.write(to: config, atomically: true, encoding: .utf8)
        server = try FacteurProcess(dataDir: dataDir, listen: ["smtp=127.0.0.1:0", "http=127.0.0.1:0", "https=127.0.0.1:0"], config: config)
        let http = try XCTUnwrap(server.ports["http"]), https = try XCTUnwrap(server.ports["https"])

        let (policy, status) = try Self.curl(curl, https: true, host: "mta-sts.example.test", port: https, path: "/.well-known/mta-sts.txt")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(policy, "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmx: *.backup.example.test\r\nmax_age: 86400\r\n")
        XCTAssertEqual(try Self.curl(curl, https: true, host: "mta-sts.other.test", port: https, path: "/.well-known/mta-sts.txt").1, 404)
        XCTAssertEqual(try Self.curl(curl, https: true, host: "mta-sts.example.test", port: https, path: "/index.html").1, 404)
        // RFC 8461 §3.3: the policy is served over HTTPS only.
        XCTAssertEqual(try Self.curl(curl, https: false, host: "mta-sts.example.test", port: http, path: "/.well-known/mta-sts.txt").1, 404)
        XCTAssertEqual(try Self.curl(curl, https: false, host: "mail.example.test", port: http, path: "/.well-known/acme-challenge/nothing").1, 404)

        // An oversized request head: 431 and the connection closed.
        let client = try LoopbackLineClient(port: http)
        client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Fill: \(String(repeating: "a", count: 64 * 1024))\r\n\r\n")
        XCTAssertEqual(client.readLine(), "HTTP/1.1 431 Request Header Fields Too Large")
        // The same over TLS.
        let openssl = try RequiredTool.path("openssl")
        let big = "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\nX-Fill: \(String(repeating: "b", count: 20_000))\r\n\r\n"
        let tls = try Subprocess.run(openssl, ["s_client", "-quiet", "-connect", "127.0.0.1:\(https)", "-servername", "mta-sts.example.test"],
                                     stdin: Data(big.utf8), timeout: 20)
        XCTAssertTrue(tls.stdoutText.hasPrefix("HTTP/1.1 431"), tls.summary)
        // The server is still fine afterwards.
        XCTAssertEqual(try Self.curl(curl, https: true, host: "mta-sts.example.test", port: https, path: "/.well-known/mta-sts.txt").1, 200)
    }
}
