// The strace analysis behind CrashSafetyTests.testMessageIsFsyncedBeforeThe250, checked
// on hand-written traces: it must accept a durable ordering and reject each way of
// answering 250 too early (no fsync, fsync after the reply, fsync still running, no
// directory fsync for a new blob file, no WAL commit).

import Foundation
import XCTest

final class StraceLogTests: XCTestCase {
    let socket = "12<TCP:[127.0.0.1:2525->127.0.0.1:40000]>"
    let wal = "9</d/data/facteur.sqlite-wal>"

    private func log(_ lines: [String]) throws -> StraceLog {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("strace-\(UUID().uuidString).txt")
        let text = lines.enumerated().map { index, line in
            let pid = line.hasPrefix("@") ? "102" : "101"
            let body = line.hasPrefix("@") ? String(line.dropFirst()) : line
            return "\(pid)  12:00:00.\(String(format: "%06d", index)) \(body)"
        }.joined(separator: "\n") + "\n"
        try text.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        return try StraceLog(contentsOf: url)
    }

    private var start: [String] {
        ["openat(AT_FDCWD</d>, \"/d/data/facteur.sqlite-wal\", O_RDWR|O_CREAT|O_CLOEXEC, 0644) = 9</d/data/facteur.sqlite-wal>",
         "write(\(socket), \"354 End data with <CR><LF>.<CR><LF>\\r\\n\", 37) = 37"]
    }
    private let walWrite = "@pwrite64(9</d/data/facteur.sqlite-wal>, \"\\0\\0From: x\\r\\nSubject: MARK42 line 0000001 abc\\r\\n\"..., 4096, 8192) = 4096"
    private let walSync = "@fdatasync(9</d/data/facteur.sqlite-wal>) = 0"
    private var ack: String { "write(\(socket), \"250 2.0.0 Ok: queued as 1\\r\\n\", 27) = 27" }
    private var quit: String { "write(\(socket), \"221 2.0.0 Bye\\r\\n\", 16) = 16" }

    func testWALWrittenAndSyncedBeforeThe250IsDurable() throws {
        let verdict = try log(start + [walWrite, walSync, ack, quit]).verifyDurableBeforeReply(clientPort: 40000, marker: "MARK42")
        XCTAssertTrue(verdict.ok, verdict.explanation)
    }

    func testSyncAfterThe250IsRejected() throws {
        let verdict = try log(start + [walWrite, ack, walSync, quit]).verifyDurableBeforeReply(clientPort: 40000, marker: "MARK42")
        XCTAssertFalse(verdict.ok, verdict.explanation)
    }

    func testSyncStillRunningWhenThe250IsWrittenIsRejected() throws {
        let lines = start + [walWrite, "@fdatasync(9</d/data/facteur.sqlite-wal> <unfinished ...>", ack,
                             "@<... fdatasync resumed>) = 0", quit]
        let verdict = try log(lines).verifyDurableBeforeReply(clientPort: 40000, marker: "MARK42")
        XCTAssertFalse(verdict.ok, verdict.explanation)
    }

    func testBytesNeverWrittenAreRejected() throws {
        let verdict = try log(start + [walSync, ack, quit]).verifyDurableBeforeReply(clientPort: 40000, marker: "MARK42")
        XCTAssertFalse(verdict.ok)
        XCTAssertTrue(verdict.explanation.contains("never written"), verdict.explanation)
    }

    func testOtherConnectionIsNotConfused() throws {
        let verdict = try log(start + [walWrite, walSync, ack, quit]).verifyDurableBeforeReply(clientPort: 40001, marker: "MARK42")
        XCTAssertFalse(verdict.ok)
    }

    private var blobLines: [String] {
        ["@openat(AT_FDCWD</d>, \"/d/data/blobs/tmp/abc\", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 14</d/data/blobs/tmp/abc>",
         "@write(14</d/data/blobs/tmp/abc>, \"From: x\\r\\nSubject: MARK42 line 0000001\\r\\n\"..., 65536) = 65536",
         "@fsync(14</d/data/blobs/tmp/abc>) = 0",
         "@renameat(AT_FDCWD</d>, \"/d/data/blobs/tmp/abc\", AT_FDCWD</d>, \"/d/data/blobs/ab/abc\") = 0"]
    }
    private let dirSync = "@fsync(15</d/data/blobs/ab>) = 0"
    private let walRow = "@pwrite64(9</d/data/facteur.sqlite-wal>, \"row\"..., 4096, 8192) = 4096"

    func testBlobFileSyncedRenamedAndDirectorySyncedIsDurable() throws {
        let verdict = try log(start + blobLines + [dirSync, walRow, walSync, ack, quit])
            .verifyDurableBeforeReply(clientPort: 40000, marker: "MARK42")
        XCTAssertTrue(verdict.ok, verdict.explanation)
    }

    func testBlobFileWithoutDirectorySyncIsRejected() throws {
        let verdict = try log(start + blobLines + [walRow, walSync, ack, dirSync, quit])
            .verifyDurableBeforeReply(clientPort: 40000, marker: "MARK42")
        XCTAssertFalse(verdict.ok, verdict.explanation)
        XCTAssertTrue(verdict.explanation.contains("NOT fsynced"), verdict.explanation)
    }

    func testBlobWithoutWALCommitIsRejected() throws {
        let verdict = try log(start + blobLines + [dirSync, ack, quit]).verifyDurableBeforeReply(clientPort: 40000, marker: "MARK42")
        XCTAssertFalse(verdict.ok, verdict.explanation)
    }

    func testAnnotationParsing() throws {
        let parsed = try log(["write(\(socket), \"x\", 1) = 1", "rename(\"/a/b\", \"/a/c\") = 0"])
        XCTAssertEqual(parsed.calls.count, 2)
        XCTAssertEqual(parsed.calls[0].fdPath, "TCP:[127.0.0.1:2525->127.0.0.1:40000]")
        XCTAssertTrue(parsed.calls[0].isSocket)
        XCTAssertEqual(parsed.calls[1].stringArguments, ["/a/b", "/a/c"])
    }
}
