// ACME end to end (RFC 8555): the real `facteur serve` obtains its certificate from a real
// Pebble CA with HTTP-01 answered by its own http listener, names resolved by a real unbound,
// then serves that certificate on its https listener (with the MTA-STS policy).

import FacteurTestSupport
import Foundation
import XCTest

final class ACMEEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }
    var unbound: UnboundProcess?
    var pebble: PebbleProcess?

    override func tearDownWithError() throws {
        if let server, server.isRunning { XCTAssertEqual(server.stop(), 0, "graceful stop; log: \(server.logExcerpt)") }
        if let pebble, (testRun?.failureCount ?? 0) > 0 { print("pebble log:\n" + pebble.log) }
        pebble?.stop()
        unbound?.stop()
        try super.tearDownWithError()
    }

    func testHTTP01IssuanceThroughTheRealServerThenServedOnHTTPS() throws {
        try issuance(challenge: "http-01", checkRestart: true)
    }

    /// RFC 8737: Pebble validates on the https listener, through FacteurNet's shared TLS pipeline.
    func testTLSALPN01IssuanceThroughTheRealServer() throws {
        try issuance(challenge: "tls-alpn-01", checkRestart: false)
    }

    func issuance(challenge: String, checkRestart: Bool) throws {
        let pebblePath = try RequiredTool.path("pebble")
        let openssl = try RequiredTool.path("openssl")
        let curl = try RequiredTool.path("curl")
        guard let unboundPath = UnboundProcess.executable() else {
            _ = try RequiredTool.path("unbound")
            return
        }
        guard let dnsPort = UnboundProcess.freePort(), let httpPort = UnboundProcess.freePort(),
              let httpsPort = UnboundProcess.freePort() else { throw XCTSkip("no free ports") }
        unbound = try UnboundProcess(executable: unboundPath, port: dnsPort, zones: [
            "acme.test": ["mail.acme.test. 60 IN A 127.0.0.1", "mta-sts.acme.test. 60 IN A 127.0.0.1"],
        ])

        let root = dataRoot.url
        let started = try PebbleProcess(executable: pebblePath, directory: root.appendingPathComponent("pebble"), dnsPort: dnsPort,
                                        httpPort: httpPort, tlsPort: httpsPort)
        pebble = started

        let config = root.appendingPathComponent("facteur.toml")
        try """
        hostname = "mail.acme.test"
        primary_domain = "acme.test"
        dns_servers = ["127.0.0.1:\(dnsPort)"]
        [acme]
        enabled = true
        directory = "\(started.directoryURL)"
        contact = ["mailto:postmaster@acme.test"]
        challenge = "\(challenge)"
        trust_roots = "\(started.trustRoots)"
        [mta_sts]
        mode = "enforce"
        """.write(to: config, atomically: true, encoding: .utf8)
        server = try FacteurProcess(dataDir: dataDir, listen: ["smtp=127.0.0.1:0", "http=127.0.0.1:\(httpPort)",
                                                               "https=127.0.0.1:\(httpsPort)"], config: config)

        let certificatePath = dataDir.appendingPathComponent("tls/acme/mail.acme.test.pem").path
        let keyPath = dataDir.appendingPathComponent("tls/acme/mail.acme.test.key.pem").path
        let deadline = Date().addingTimeInterval(90)
        // Until the CA's certificate arrives, a self-signed stand-in sits at the same path.
        while !server.logText.contains("ACME: certificate installed"), Date() < deadline, server.isRunning {
            Thread.sleep(forTimeInterval: 0.5)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: certificatePath), "no certificate; log: \(server.logExcerpt)")
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let chain = try String(contentsOfFile: certificatePath, encoding: .utf8)
        let issued = try XCTUnwrap(chain.components(separatedBy: "-----END CERTIFICATE-----").first) + "-----END CERTIFICATE-----"
        let names = try Subprocess.run(openssl, ["x509", "-noout", "-ext", "subjectAltName"], stdin: Data(issued.utf8), timeout: 10)
        XCTAssertTrue(names.stdoutText.contains("DNS:mail.acme.test"), names.summary)
        XCTAssertTrue(names.stdoutText.contains("DNS:mta-sts.acme.test"), names.summary)

        // The https listener now presents the ACME certificate (reloaded without a restart).
        func fingerprint(_ pem: String) throws -> String {
            try Subprocess.run(openssl, ["x509", "-noout", "-fingerprint", "-sha256"], stdin: Data(pem.utf8), timeout: 10).stdoutText
        }
        let expected = try fingerprint(issued)
        var served = ""
        for _ in 0..<20 {
            let shown = try Subprocess.run(openssl, ["s_client", "-connect", "127.0.0.1:\(httpsPort)", "-servername", "mta-sts.acme.test"],
                                           stdin: Data(), timeout: 20).stdoutText
            served = try fingerprint(shown)
            if served == expected { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        XCTAssertEqual(served, expected)
        let (policy, status) = try PublicWebEndToEndTests.curl(curl, https: true, host: "mta-sts.acme.test", port: httpsPort,
                                                              path: "/.well-known/mta-sts.txt")
        XCTAssertEqual(status, 200)
        XCTAssertTrue(policy.contains("mode: enforce\r\nmx: mail.acme.test\r\n"), policy)
        XCTAssertTrue(server.logText.contains("ACME: certificate installed"))

        // `facteur dns records`: the TLSA 3 1 1 record is the SHA-256 of the ACME certificate's key.
        let publicKey = try Subprocess.run(openssl, ["x509", "-pubkey", "-noout"], stdin: Data(issued.utf8), timeout: 10).stdout
        let spki = try Subprocess.run(openssl, ["pkey", "-pubin", "-outform", "DER"], stdin: publicKey, timeout: 10).stdout
        let digest = try Subprocess.run(openssl, ["dgst", "-sha256", "-r"], stdin: spki, timeout: 10).stdoutText.prefix(64)
        let records = try server.cli(["dns", "records", "acme.test", "--config", config.path]).stdoutText
        XCTAssertTrue(records.contains("_25._tcp.mail.acme.test. 3600 IN TLSA 3 1 1 \(digest)"), records)
        XCTAssertTrue(records.contains("_mta-sts.acme.test. 3600 IN TXT \"v=STSv1; id="), records)

        XCTAssertTrue(server.logText.contains("challenge=\(challenge)"), server.logExcerpt)
        guard checkRestart else { return }
        // After a restart every TLS listener (here SMTP STARTTLS) starts with the ACME
        // certificate, and no new order is placed for a certificate that is not due.
        XCTAssertEqual(server.stop(), 0)
        server = try FacteurProcess(dataDir: dataDir, listen: ["smtp=127.0.0.1:0", "http=127.0.0.1:\(httpPort)"], config: config)
        let smtp = try Subprocess.run(openssl, ["s_client", "-connect", "127.0.0.1:\(server.smtpPort)", "-starttls", "smtp"],
                                      stdin: Data(), timeout: 20).stdoutText
        XCTAssertEqual(try fingerprint(smtp), expected)
        Thread.sleep(forTimeInterval: 1)
        XCTAssertFalse(server.logText.contains("ACME: order placed"), server.logExcerpt)
    }
}
