// POP3 (RFC 1939, 2449, 2595, 5034, 8314) against the real binary: Tests/e2e/pop3_clients.py drives
// poplib, fetchmail and getmail6 over STLS and POP3S, and checks that a deletion over POP3 reaches
// an IMAP session. The script exits 77 when a client program is missing: a skip, or a failure
// when FACTEUR_REQUIRE_ALL=1.

import Foundation
import XCTest

final class POP3EndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    func testPoplibEveryCommandOverSTLSAndPOP3S() throws { try runCase("poplib") }

    func testFetchmailWithAndWithoutKeep() throws { try runCase("fetchmail") }

    func testGetmailWithAndWithoutDelete() throws { try runCase("getmail") }

    func testDeletionOverPOP3ReachesAnIMAPSession() throws { try runCase("imap") }

    private func runCase(_ name: String) throws {
        let python = try RequiredTool.path("python3")
        server = try FacteurProcess(dataDir: dataDir, listen: ["smtp=127.0.0.1:0", "pop3=127.0.0.1:0",
                                                               "pop3s=127.0.0.1:0", "imap=127.0.0.1:0"])
        let password = try XCTUnwrap(server.adminPassword, "first start prints the admin password")
        let arguments = [E2EScripts.path("pop3_clients.py"), name,
                         "--smtp", "\(server.ports["smtp"] ?? 0)", "--pop3", "\(server.ports["pop3"] ?? 0)",
                         "--pop3s", "\(server.ports["pop3s"] ?? 0)", "--imap", "\(server.ports["imap"] ?? 0)",
                         "--user", "admin@localhost", "--password", password,
                         "--cafile", dataDir.appendingPathComponent("tls/cert.pem").path]
        let result = try Subprocess.run(python, arguments, timeout: 300, workingDirectory: E2EScripts.directory)
        if result.status == 77 {
            if RequiredTool.requireAll { return XCTFail("\(name): a required client is missing: \(result.summary)") }
            throw XCTSkip("\(name): \(result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        XCTAssertEqual(result.status, 0, "\(name) failed: \(result.summary)")
        XCTAssertTrue(result.stdoutText.contains("\"ok\": true"), result.summary)
    }
}
