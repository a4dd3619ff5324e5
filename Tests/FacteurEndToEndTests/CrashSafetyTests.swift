// Crash safety of inbound delivery. RFC 5321 §4.1.1.4 / §6.1: once the server has
// answered 250 to the end of data it has taken responsibility for the message, so
// (a) a SIGKILL mid-burst loses no acknowledged message and leaves no partial one, and
// (b) the system-call trace shows the message bytes on disk and fsynced before the 250.

import Foundation
import XCTest

final class CrashSafetyTests: E2ETestCase {
    override var startsServer: Bool { false }

    func testSIGKILLMidBurstLosesNoAcknowledgedMessage() throws {
        server = try FacteurProcess(dataDir: dataDir)
        let python = try RequiredTool.path("python3")
        let outDir = dataRoot.url.appendingPathComponent("burst")
        let ackedURL = outDir.appendingPathComponent("acked.txt")
        let burst = Process()
        burst.executableURL = URL(fileURLWithPath: python)
        burst.arguments = [E2EScripts.path("burst.py"), "--port", String(server.smtpPort), "--clients", "4",
                           "--count", "150", "--large-every", "10", "--outdir", outDir.path]
        burst.currentDirectoryURL = E2EScripts.directory
        let burstLog = dataRoot.url.appendingPathComponent("burst.log")
        _ = FileManager.default.createFile(atPath: burstLog.path, contents: nil)
        let burstOut = try FileHandle(forWritingTo: burstLog)
        burst.standardOutput = burstOut
        burst.standardError = burstOut
        try burst.run()

        // Let some messages through, then pull the plug while the clients are still sending.
        let deadline = Date().addingTimeInterval(120)
        var ackedSoFar = 0
        while Date() < deadline && burst.isRunning {
            ackedSoFar = ((try? String(contentsOf: ackedURL, encoding: .utf8)) ?? "").split(separator: "\n").count
            if ackedSoFar >= 40 { break }
            usleep(20_000)
        }
        XCTAssertTrue(burst.isRunning, "the burst finished before the crash; raise --count")
        server.crash()
        XCTAssertTrue(Subprocess.waitForExit(burst, timeout: 90), "burst clients did not stop after the crash")
        try? burstOut.close()
        let acked = Set(((try? String(contentsOf: ackedURL, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init))
        XCTAssertGreaterThanOrEqual(acked.count, 40, "burst log: \((try? String(contentsOf: burstLog, encoding: .utf8)) ?? "")")

        // Restart on the same data folder: recovery, no new admin password.
        server = try FacteurProcess(dataDir: dataDir)
        XCTAssertNil(server.adminPassword, "a restart must not create the admin account again")
        let listed = try server.storedMessages("admin@localhost")
        let stored = Dictionary(listed.map { ($0.subject, $0) }, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(stored.count, listed.count, "the same message stored twice")
        for subject in acked.sorted() {
            XCTAssertNotNil(stored[subject], "acknowledged message \(subject) is missing after the crash")
        }
        // Every stored message, acknowledged or not, is whole: prefix + exactly the bytes sent.
        var large = 0
        for message in listed {
            let emlURL = outDir.appendingPathComponent(message.subject + ".eml")
            guard !message.subject.isEmpty, let sent = try? Data(contentsOf: emlURL) else {
                XCTFail("stored message with subject \(message.subject.debugDescription) was never sent by the burst (a partial message?): \(String(decoding: message.bytes.prefix(300), as: UTF8.self).debugDescription)")
                continue
            }
            if sent.count > 512 * 1024 { large += 1 }
            XCTAssertEqual(message.listed.size, message.bytes.count, "\(message.subject): SIZE vs stored octets")
            assertStored(message.bytes, sent: sent, sender: "burst@e2e.test", recipient: "admin@localhost")
        }
        XCTAssertGreaterThan(large, 0, "the burst should have stored some 1 MB messages (blob files)")
        // And the recovered server still takes mail.
        let result = try smtpCase("plain", ["--to", "admin@localhost"])
        XCTAssertNotNil(result["subject"])
    }

    func testSIGTERMLetsAMessageInDATAFinish() throws {
        server = try FacteurProcess(dataDir: dataDir)
        let result = try smtpCase("sigterm-mid-data", ["--pid", String(server.pid)], timeout: 120)
        XCTAssertTrue(Subprocess.waitForExit(server.process, timeout: 30), "facteur did not exit after SIGTERM")
        XCTAssertEqual(server.process.terminationStatus, 0, "exit status after SIGTERM")
        XCTAssertEqual(result["new_connection_refused"] as? Bool, true, "new connections must be refused once shutdown began")
        // The acknowledged message is there after a restart.
        server = try FacteurProcess(dataDir: dataDir)
        try assertDelivered(try Self.bytes(result), subject: try XCTUnwrap(result["subject"] as? String),
                            to: "admin@localhost", sender: "term@e2e.test")
    }

    func testSIGTERMSends421ToIdleSessionsAndCutsSilentClientsAfterTheGrace() throws {
        let config = dataRoot.url.appendingPathComponent("facteur.toml")
        try "[limits]\nshutdown_grace = 2\n".write(to: config, atomically: true, encoding: .utf8)
        server = try FacteurProcess(dataDir: dataDir, config: config)
        let result = try smtpCase("sigterm-silent", ["--pid", String(server.pid)], timeout: 180)
        XCTAssertTrue((result["idle_reply"] as? String ?? "").hasPrefix("421 4.3.2"),
                      "an idle session must get 421 4.3.2 on shutdown, got \(result["idle_reply"] ?? "")")
        let seconds = result["exit_seconds"] as? Double ?? .infinity
        XCTAssertLessThan(seconds, 2 + 8, "with shutdown_grace = 2 the server must be gone within a few seconds")
        XCTAssertTrue(Subprocess.waitForExit(server.process, timeout: 30))
        XCTAssertEqual(server.process.terminationStatus, 0, "exit status after SIGTERM")
        server = try FacteurProcess(dataDir: dataDir, config: config)
        let subject = try XCTUnwrap(result["subject"] as? String)
        XCTAssertFalse(try server.storedMessages("admin@localhost").contains { $0.subject.contains(subject) },
                       "the half-received message must not be stored")
    }

    func testMessageIsFsyncedBeforeThe250() throws {
        let strace = try RequiredTool.path("strace")
        _ = try RequiredTool.path("python3")
        let tracePath = dataRoot.url.appendingPathComponent("trace.txt").path
        let syscalls = "openat,open,creat,write,writev,pwrite64,pwritev,pwritev2,fsync,fdatasync,syncfs,rename,renameat,renameat2,sendmsg,sendto,sendmmsg"
        server = try FacteurProcess(dataDir: dataDir, wrapper: [strace, "-f", "-tt", "-yy", "-s", "65536", "-e", "trace=" + syscalls,
                                                                "-o", tracePath], startupTimeout: 180)
        // If strace itself is signalled it detaches and leaves facteur running: always end the child.
        func facteurPid() -> Int32? {
            let children = (try? String(contentsOfFile: "/proc/\(server.pid)/task/\(server.pid)/children", encoding: .utf8)) ?? ""
            return children.split(separator: " ").first.flatMap { Int32($0) }
        }
        let child = facteurPid()
        XCTAssertNotNil(child, "cannot find facteur under strace")
        defer {
            if let child, kill(child, 0) == 0 { kill(child, SIGKILL) }
        }
        var deliveries: [(size: Int, port: Int, marker: String)] = []
        for size in [10 * 1024, 1024 * 1024] {
            let marker = "FSYNCMARK\(UUID().uuidString.prefix(8))"
            let result = try smtpCase("deliver-marked", ["--bytes", String(size), "--marker", marker], timeout: 300)
            deliveries.append((size, try XCTUnwrap(result["client_port"] as? Int), marker))
        }
        // Stop facteur itself (the child of strace); strace ends with it.
        if let child { kill(child, SIGTERM) }
        XCTAssertTrue(Subprocess.waitForExit(server.process, timeout: 60), "facteur under strace did not stop on SIGTERM")
        XCTAssertEqual(server.process.terminationStatus, 0, "strace reports facteur's exit status")
        let log = try StraceLog(contentsOf: URL(fileURLWithPath: tracePath))
        XCTAssertGreaterThan(log.calls.count, 10, "the trace is empty")
        for delivery in deliveries {
            let verdict = log.verifyDurableBeforeReply(clientPort: delivery.port, marker: delivery.marker)
            XCTAssertTrue(verdict.ok, "\(delivery.size)-octet message: not provably durable before the 250 (trace kept at \(tracePath)):\n\(verdict.explanation)")
            print("facteur-e2e: \(delivery.size)-octet delivery:\n\(verdict.explanation)")
        }
        server = nil
    }
}
