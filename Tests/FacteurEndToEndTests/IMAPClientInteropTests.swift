// IMAP (RFC 9051) against the real binary with a third-party client library: Python's
// `imapclient` (PyPI), whose own response parser reads ENVELOPE and BODYSTRUCTURE. Runs
// Tests/e2e/imap_clients.py, which exits 77 when the package is missing: a skip, or a failure
// when FACTEUR_REQUIRE_ALL=1.

import Foundation
import XCTest

final class IMAPClientInteropTests: E2ETestCase {
    override var startsServer: Bool { false }

    /// STARTTLS and IMAPS, LIST, SELECT, FETCH ENVELOPE/BODYSTRUCTURE, SEARCH, STORE flags,
    /// MOVE (RFC 6851), and IDLE (RFC 2177) seeing an SMTP delivery as EXISTS within a second.
    func testImapclientSession() throws {
        let python = try RequiredTool.path("python3")
        server = try FacteurProcess(dataDir: dataDir, listen: ["smtp=127.0.0.1:0", "imap=127.0.0.1:0", "imaps=127.0.0.1:0"])
        let password = try XCTUnwrap(server.adminPassword, "first start prints the admin password")
        let arguments = [E2EScripts.path("imap_clients.py"), "imapclient",
                         "--smtp", "\(server.smtpPort)", "--imap", "\(server.ports["imap"] ?? 0)",
                         "--imaps", "\(server.ports["imaps"] ?? 0)",
                         "--user", "admin@localhost", "--password", password,
                         "--cafile", dataDir.appendingPathComponent("tls/cert.pem").path]
        let result = try Subprocess.run(python, arguments, timeout: 300, workingDirectory: E2EScripts.directory)
        if result.status == 77 {
            if RequiredTool.requireAll { return XCTFail("imapclient is missing: \(result.summary)") }
            throw XCTSkip(result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.stdoutText.contains("\"ok\": true"), result.summary)
        XCTAssertTrue(result.stdoutText.contains("ok - IDLE pushes EXISTS"), result.summary)
    }
}
