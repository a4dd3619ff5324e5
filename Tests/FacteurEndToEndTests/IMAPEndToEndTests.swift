// IMAP (RFC 9051) against the real binary with Python's imaplib: runs Tests/e2e/imap_imaplib.py,
// which starts its own server with IMAP and SMTP listeners.

import Foundation
import XCTest

final class IMAPEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    /// Runs one of Tests/e2e's IMAP scripts against the binary; it starts its own server.
    @discardableResult
    func runScript(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> ToolResult {
        let binary = try FacteurBinary.url()
        let python = try RequiredTool.path("python3")
        var environment = ProcessInfo.processInfo.environment
        environment["FACTEUR"] = binary.path
        let result = try Subprocess.run(python, [E2EScripts.path(name)], timeout: 300,
                                        workingDirectory: E2EScripts.directory, environment: environment)
        XCTAssertEqual(result.status, 0, result.summary, file: file, line: line)
        XCTAssertTrue(result.stdoutText.contains("all passed"), result.summary, file: file, line: line)
        return result
    }

    func testImaplibSession() throws {
        try runScript("imap_imaplib.py")
    }

    /// STARTTLS, IMAPS, SCRAM-SHA-256 (checked by scramp), CONDSTORE/QRESYNC resync, VANISHED, MODIFIED.
    func testSyncExtensionsOverTLS() throws {
        let result = try runScript("imap_sync.py")
        if RequiredTool.requireAll {
            XCTAssertFalse(result.stdoutText.lowercased().contains("skip"), "nothing may be skipped in CI: \(result.summary)")
        }
    }

    /// COMPRESS=DEFLATE (RFC 4978) over plain IMAP and IMAPS, with Python's zlib as the client's DEFLATE.
    func testCompressDeflate() throws {
        try runScript("imap_compress.py")
    }
}
