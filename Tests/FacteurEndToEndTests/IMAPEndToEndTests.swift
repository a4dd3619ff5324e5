// IMAP (RFC 9051) against the real binary with Python's imaplib: runs Tests/e2e/imap_imaplib.py,
// which starts its own server with IMAP and SMTP listeners.

import Foundation
import XCTest

final class IMAPEndToEndTests: E2ETestCase {
    override var startsServer: Bool { false }

    func testImaplibSession() throws {
        let binary = try FacteurBinary.url()
        let python = try RequiredTool.path("python3")
        var environment = ProcessInfo.processInfo.environment
        environment["FACTEUR"] = binary.path
        let result = try Subprocess.run(python, [E2EScripts.path("imap_imaplib.py")], timeout: 300,
                                        workingDirectory: E2EScripts.directory, environment: environment)
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.stdoutText.contains("all passed"), result.summary)
    }

    /// STARTTLS, IMAPS, SCRAM-SHA-256 (checked by scramp), CONDSTORE/QRESYNC resync, VANISHED, MODIFIED.
    func testSyncExtensionsOverTLS() throws {
        let binary = try FacteurBinary.url()
        let python = try RequiredTool.path("python3")
        var environment = ProcessInfo.processInfo.environment
        environment["FACTEUR"] = binary.path
        let result = try Subprocess.run(python, [E2EScripts.path("imap_sync.py")], timeout: 300,
                                        workingDirectory: E2EScripts.directory, environment: environment)
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.stdoutText.contains("all passed"), result.summary)
        if RequiredTool.requireAll {
            XCTAssertFalse(result.stdoutText.lowercased().contains("skip"), "nothing may be skipped in CI: \(result.summary)")
        }
    }

    /// COMPRESS=DEFLATE (RFC 4978) over plain IMAP and IMAPS, with Python's zlib as the client's DEFLATE.
    func testCompressDeflate() throws {
        let binary = try FacteurBinary.url()
        let python = try RequiredTool.path("python3")
        var environment = ProcessInfo.processInfo.environment
        environment["FACTEUR"] = binary.path
        let result = try Subprocess.run(python, [E2EScripts.path("imap_compress.py")], timeout: 300,
                                        workingDirectory: E2EScripts.directory, environment: environment)
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.stdoutText.contains("all passed"), result.summary)
    }
}
