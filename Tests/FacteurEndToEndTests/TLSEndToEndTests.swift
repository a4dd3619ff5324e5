// TLS on every listener of the real binary, driven by `openssl s_client` and Python's ssl module:
// STARTTLS (RFC 3207, RFC 2595) on SMTP/submission/IMAP/POP3 and implicit TLS (RFC 8314) on
// submissions/IMAPS/POP3S, SNI (RFC 6066 §3), certificate reload without restart (file change
// and SIGHUP, a broken file keeps the old one), TLS 1.0/1.1 refused by the server, a key that
// does not match its certificate stopping the start, and the Received header naming the TLS
// version and cipher (RFC 8314 §4.3).

import Foundation
import XCTest

final class TLSEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    private static let everyListener = ["smtp=127.0.0.1:0", "submission=127.0.0.1:0", "submissions=127.0.0.1:0",
                                        "imap=127.0.0.1:0", "imaps=127.0.0.1:0", "pop3=127.0.0.1:0", "pop3s=127.0.0.1:0"]

    private var certificates: URL { dataRoot.url.appendingPathComponent("certs") }
    private var mainCertificate: URL { certificates.appendingPathComponent("main.crt") }
    private var mainKey: URL { certificates.appendingPathComponent("main.key") }
    private var otherCertificate: URL { certificates.appendingPathComponent("other.crt") }
    private var otherKey: URL { certificates.appendingPathComponent("other.key") }

    // MARK: Every listener

    func testEveryListenerHandshakesWithOpenSSLAndTheProtocolWorksAfterwards() throws {
        let openssl = try RequiredTool.path("openssl")
        try startServer()
        let cases: [(proto: String, starttls: String?, commands: String, expect: String)] = [
            ("smtp", "smtp", "EHLO openssl.e2e.test\r\nQUIT\r\n", "250-"),
            ("submission", "smtp", "EHLO openssl.e2e.test\r\nQUIT\r\n", "250-AUTH"),
            ("submissions", nil, "EHLO openssl.e2e.test\r\nQUIT\r\n", "250-AUTH"),
            ("imap", "imap", "a1 CAPABILITY\r\na2 LOGOUT\r\n", "* CAPABILITY"),
            ("imaps", nil, "a1 CAPABILITY\r\na2 LOGOUT\r\n", "* CAPABILITY"),
            ("pop3", "pop3", "CAPA\r\nQUIT\r\n", "USER"),
            ("pop3s", nil, "CAPA\r\nQUIT\r\n", "USER"),
        ]
        for item in cases {
            var arguments = ["s_client", "-connect", "127.0.0.1:\(try port(item.proto))", "-servername", "mail.example.org",
                             "-CAfile", mainCertificate.path, "-verify_hostname", "mail.example.org", "-verify_return_error",
                             "-brief", "-ign_eof"]
            if let starttls = item.starttls { arguments += ["-starttls", starttls] }
            let result = try Subprocess.run(openssl, arguments, stdin: Data(item.commands.utf8), timeout: 60)
            XCTAssertEqual(result.status, 0, "\(item.proto): \(result.summary)")
            XCTAssertTrue(result.stderrText.contains("Verification: OK"), "\(item.proto): \(result.stderrText)")
            XCTAssertTrue(result.stderrText.contains("Protocol version: TLSv1.3"), "\(item.proto): TLS 1.3 preferred: \(result.stderrText)")
            XCTAssertTrue(result.stdoutText.contains(item.expect), "\(item.proto): no \(item.expect) after the handshake: \(result.stdoutText)")
        }
    }

    func testEveryListenerWorksWithPythonSSL() throws {
        let python = try RequiredTool.path("python3")
        try startServer()
        let script = """
        import imaplib, json, poplib, smtplib, ssl, sys
        ports = json.loads(sys.argv[1]); cafile = sys.argv[2]
        ctx = ssl.create_default_context(cafile=cafile)
        seen = {}
        def note(name, sock, ok):
            seen[name] = {"version": sock.version(), "cipher": sock.cipher()[0], "ok": bool(ok)}
        s = smtplib.SMTP("127.0.0.1", ports["smtp"], local_hostname="py.e2e.test"); s._host = "mail.example.org"
        s.starttls(context=ctx); note("smtp", s.sock, s.ehlo()[0] == 250 and s.has_extn("pipelining")); s.quit()
        s = smtplib.SMTP("127.0.0.1", ports["submission"], local_hostname="py.e2e.test"); s._host = "mail.example.org"
        s.starttls(context=ctx); note("submission", s.sock, s.ehlo()[0] == 250 and s.has_extn("auth")); s.quit()
        class SMTPS(smtplib.SMTP_SSL):
            def _get_socket(self, host, port, timeout):
                raw = super(smtplib.SMTP_SSL, self)._get_socket(host, port, timeout)
                return self.context.wrap_socket(raw, server_hostname="mail.example.org")
        s = SMTPS("127.0.0.1", ports["submissions"], local_hostname="py.e2e.test", context=ctx)
        note("submissions", s.sock, s.ehlo()[0] == 250 and s.has_extn("auth")); s.quit()
        i = imaplib.IMAP4("127.0.0.1", ports["imap"]); i.host = "mail.example.org"
        i.starttls(ssl_context=ctx); note("imap", i.sock, i.capability()[0] == "OK"); i.logout()
        class IMAPS(imaplib.IMAP4_SSL):
            def _create_socket(self, timeout):
                raw = imaplib.IMAP4._create_socket(self, timeout)
                return self.ssl_context.wrap_socket(raw, server_hostname="mail.example.org")
        i = IMAPS("127.0.0.1", ports["imaps"], ssl_context=ctx); note("imaps", i.sock, i.capability()[0] == "OK"); i.logout()
        p = poplib.POP3("127.0.0.1", ports["pop3"]); p.host = "mail.example.org"
        p.stls(context=ctx); note("pop3", p.sock, "USER" in p.capa()); p.quit()
        class POP3S(poplib.POP3_SSL):
            def _create_socket(self, timeout):
                raw = poplib.POP3._create_socket(self, timeout)
                return self.context.wrap_socket(raw, server_hostname="mail.example.org")
        p = POP3S("127.0.0.1", ports["pop3s"], context=ctx); note("pop3s", p.sock, "USER" in p.capa()); p.quit()
        print(json.dumps(seen))
        """
        let ports = try JSONSerialization.data(withJSONObject: server.ports)
        let result = try Subprocess.run(python, ["-c", script, String(decoding: ports, as: UTF8.self), mainCertificate.path], timeout: 120)
        XCTAssertEqual(result.status, 0, result.summary)
        let line = result.stdoutText.split(separator: "\n").last.map(String.init) ?? ""
        let seen = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [String: Any]], result.summary)
        for proto in ["smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"] {
            XCTAssertEqual(seen[proto]?["ok"] as? Bool, true, "\(proto): \(seen[proto] ?? [:])")
            XCTAssertEqual(seen[proto]?["version"] as? String, "TLSv1.3", "\(proto)")
        }
    }

    // MARK: SNI

    func testSNIPicksThePerDomainCertificateAndUnknownNamesGetTheDefault() throws {
        _ = try RequiredTool.path("openssl")
        try startServer()
        for proto in ["imaps", "pop3s", "submissions"] {
            let p = try port(proto)
            XCTAssertEqual(try servedCertificate(port: p, serverName: "mail.example.net"), try pemBody(otherCertificate), "\(proto) SNI mail.example.net")
            XCTAssertEqual(try servedCertificate(port: p, serverName: "mail.example.org"), try pemBody(mainCertificate), "\(proto) SNI mail.example.org")
            XCTAssertEqual(try servedCertificate(port: p, serverName: "unknown.example"), try pemBody(mainCertificate), "\(proto) unknown name")
        }
        XCTAssertEqual(try servedCertificate(port: try port("smtp"), serverName: "mail.example.net", starttls: "smtp"),
                       try pemBody(otherCertificate), "SNI after STARTTLS")
    }

    // MARK: Reload

    func testReplacedCertificateIsServedWithoutRestartAndABrokenFileKeepsTheOldOne() throws {
        _ = try RequiredTool.path("openssl")
        try startServer(reloadInterval: 1)
        let imaps = try port("imaps")
        let first = try pemBody(mainCertificate)
        XCTAssertEqual(try servedCertificate(port: imaps, serverName: "mail.example.org"), first)

        try makeCertificate(name: "main", commonName: "mail.example.org", keyType: "ec")
        let second = try pemBody(mainCertificate)
        XCTAssertNotEqual(first, second)
        XCTAssertTrue(try waitUntilServed(second, port: imaps), "the new certificate should be served within a few seconds")
        XCTAssertEqual(try servedCertificate(port: try port("smtp"), serverName: "mail.example.org", starttls: "smtp"), second,
                       "STARTTLS listeners use the reloaded certificate too")
        XCTAssertTrue(server.logText.contains("TLS certificates reloaded"), server.logExcerpt)

        // A broken certificate file: logged, the previous certificate stays in service.
        try "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n".write(to: mainCertificate, atomically: true, encoding: .utf8)
        let deadline = Date().addingTimeInterval(15)
        while !server.logText.contains("reload failed"), Date() < deadline { usleep(200_000) }
        XCTAssertTrue(server.logText.contains("reload failed"), server.logExcerpt)
        XCTAssertEqual(try servedCertificate(port: imaps, serverName: "mail.example.org"), second)
        XCTAssertTrue(server.isRunning)
    }

    func testSIGHUPReloadsTheCertificates() throws {
        _ = try RequiredTool.path("openssl")
        try startServer(reloadInterval: 86_400)
        let pop3s = try port("pop3s")
        let first = try pemBody(mainCertificate)
        try makeCertificate(name: "main", commonName: "mail.example.org", keyType: "rsa")
        let second = try pemBody(mainCertificate)
        usleep(500_000)
        XCTAssertEqual(try servedCertificate(port: pop3s, serverName: "mail.example.org"), first, "no reload before the signal")
        kill(server.pid, SIGHUP)
        XCTAssertTrue(try waitUntilServed(second, port: pop3s), "SIGHUP should reload the certificate")
        XCTAssertTrue(server.isRunning, "SIGHUP must not stop the server")
        XCTAssertTrue(server.logText.contains("TLS certificates reloaded"), server.logExcerpt)
    }

    // MARK: Policy

    func testTLS10And11AreRefusedByTheServer() throws {
        let openssl = try RequiredTool.path("openssl")
        try startServer()
        let imaps = try port("imaps")
        for version in ["-tls1", "-tls1_1"] {
            // SECLEVEL=0 lets OpenSSL 3 offer the old versions at all, so the refusal is the server's.
            let result = try Subprocess.run(openssl, ["s_client", "-connect", "127.0.0.1:\(imaps)", version,
                                                      "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "mail.example.org"],
                                            stdin: Data(), timeout: 30)
            XCTAssertNotEqual(result.status, 0, "\(version) must fail: \(result.summary)")
            let output = result.stdoutText + result.stderrText
            XCTAssertTrue(output.contains("alert protocol version"), "\(version): the server must answer protocol_version: \(output)")
            XCTAssertFalse(output.contains("no protocols available"), "\(version): the client did not even try: \(output)")
        }
        let modern = try Subprocess.run(openssl, ["s_client", "-connect", "127.0.0.1:\(imaps)", "-tls1_2", "-brief",
                                                  "-servername", "mail.example.org"], stdin: Data(), timeout: 30)
        XCTAssertTrue(modern.stderrText.contains("Protocol version: TLSv1.2"), modern.summary)
        XCTAssertTrue(modern.stderrText.contains("Ciphersuite: ECDHE-ECDSA-") && modern.stderrText.contains("GCM")
                      || modern.stderrText.contains("CHACHA20"), "TLS 1.2 uses ECDHE + AEAD: \(modern.stderrText)")
    }

    func testKeyThatDoesNotMatchItsCertificateStopsTheStartWithAClearMessage() throws {
        _ = try RequiredTool.path("openssl")
        try makeCertificates()
        let config = try writeConfig(certificate: mainCertificate, key: otherKey, reloadInterval: 5)
        let result = try Subprocess.run(try FacteurBinary.url().path,
                                        ["serve", "--data", dataDir.path, "--config", config.path, "--listen", "smtp=127.0.0.1:0"],
                                        timeout: 60)
        XCTAssertNotEqual(result.status, 0, result.summary)
        XCTAssertFalse(result.timedOut)
        XCTAssertTrue(result.stderrText.contains("\(otherKey.path) does not match \(mainCertificate.path)"), result.summary)
    }

    // MARK: Received

    func testReceivedHeaderNamesTheTLSVersionAndCipher() throws {
        let python = try RequiredTool.path("python3")
        try startServer()
        let subject = "tls-trace-\(UUID().uuidString.prefix(8))"
        let message = "From: sender@e2e.test\r\nTo: admin@localhost\r\nSubject: \(subject)\r\n\r\nover STARTTLS\r\n"
        let script = """
        import smtplib, ssl, sys
        ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
        s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="py.e2e.test")
        s.starttls(context=ctx); s.ehlo()
        s.sendmail("sender@e2e.test", ["admin@localhost"], sys.stdin.buffer.read())
        print(s.sock.version(), s.sock.cipher()[0]); s.quit()
        """
        let result = try Subprocess.run(python, ["-c", script, String(try port("smtp")), mainCertificate.path],
                                        stdin: Data(message.utf8), timeout: 60)
        XCTAssertEqual(result.status, 0, result.summary)
        let words = result.stdoutText.split(whereSeparator: \.isWhitespace).map(String.init)
        XCTAssertEqual(words.count, 2, result.summary)
        let fields = try assertDelivered(Data(message.utf8), subject: subject, to: "admin@localhost", sender: "sender@e2e.test")
        let received = fields["received"]?.first ?? ""
        XCTAssertTrue(received.contains("with ESMTPS "), received)
        // Python names TLS 1.3 suites by their IANA names, as we do.
        XCTAssertTrue(received.contains("(using \(words.first ?? "?") with cipher \(words.last ?? "?"))"), "\(received) vs \(words)")
    }

    // MARK: Helpers

    private func port(_ proto: String) throws -> Int {
        try XCTUnwrap(server.ports[proto], "no LISTENING \(proto) line")
    }

    private func startServer(reloadInterval: Int = 5) throws {
        try makeCertificates()
        let config = try writeConfig(certificate: mainCertificate, key: mainKey, reloadInterval: reloadInterval)
        server = try FacteurProcess(dataDir: dataDir, listen: Self.everyListener, config: config)
    }

    private func makeCertificates() throws {
        try FileManager.default.createDirectory(at: certificates, withIntermediateDirectories: true)
        try makeCertificate(name: "main", commonName: "mail.example.org", keyType: "ec")
        try makeCertificate(name: "other", commonName: "mail.example.net", keyType: "rsa")
    }

    /// Writes NAME.crt and NAME.key (EC P-256 or RSA 2048) through temporary files and renames,
    /// as certbot and our ACME client do, so a reader never sees half a file.
    private func makeCertificate(name: String, commonName: String, keyType: String) throws {
        let openssl = try RequiredTool.path("openssl")
        let keyOption = keyType == "rsa" ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        let temporaryCertificate = certificates.appendingPathComponent("\(name).crt.new")
        let temporaryKey = certificates.appendingPathComponent("\(name).key.new")
        let result = try Subprocess.run(openssl, ["req", "-x509"] + keyOption + [
            "-nodes", "-days", "30", "-subj", "/CN=\(commonName)", "-addext", "subjectAltName=DNS:\(commonName)",
            "-keyout", temporaryKey.path, "-out", temporaryCertificate.path], timeout: 60)
        XCTAssertEqual(result.status, 0, result.summary)
        for (from, to) in [(temporaryKey, certificates.appendingPathComponent("\(name).key")),
                           (temporaryCertificate, certificates.appendingPathComponent("\(name).crt"))] {
            guard rename(from.path, to.path) == 0 else { throw HarnessError("rename \(from.path) failed") }
        }
    }

    private func writeConfig(certificate: URL, key: URL, reloadInterval: Int) throws -> URL {
        let config = dataRoot.url.appendingPathComponent("facteur.toml")
        try """
        [tls]
        certificate = "\(certificate.path)"
        key = "\(key.path)"
        generate_self_signed = false
        reload_interval = \(reloadInterval)

        [tls.domains."mail.example.net"]
        certificate = "\(otherCertificate.path)"
        key = "\(otherKey.path)"
        """.write(to: config, atomically: true, encoding: .utf8)
        return config
    }

    /// The base64 body of the first PEM certificate in `file`.
    private func pemBody(_ file: URL) throws -> String {
        Self.firstPEMBody(try String(contentsOf: file, encoding: .utf8)) ?? ""
    }

    static func firstPEMBody(_ text: String) -> String? {
        guard let begin = text.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = text.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<text.endIndex) else { return nil }
        return text[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }
    }

    /// The certificate a new connection is served (its PEM body), as `openssl s_client` sees it.
    private func servedCertificate(port: Int, serverName: String, starttls: String? = nil) throws -> String {
        let openssl = try RequiredTool.path("openssl")
        var arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", serverName]
        if let starttls { arguments += ["-starttls", starttls] }
        let result = try Subprocess.run(openssl, arguments, stdin: Data(), timeout: 30)
        return Self.firstPEMBody(result.stdoutText) ?? "none: \(result.summary)"
    }

    private func waitUntilServed(_ body: String, port: Int, timeout: TimeInterval = 15) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try servedCertificate(port: port, serverName: "mail.example.org") == body { return true }
            usleep(250_000)
        }
        return false
    }
}
