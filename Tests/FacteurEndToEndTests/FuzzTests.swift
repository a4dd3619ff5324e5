// A light fuzz of the live SMTP listener (Tests/e2e/fuzz_smtp.py): seeded random and
// mutated command lines; the server must keep answering well-formed replies, stay up,
// answer NOOP afterwards, and not balloon in memory.

import Foundation
import XCTest

final class FuzzTests: E2ETestCase {
    func testMutatedCommandsDoNotHurtTheServer() throws {
        let rssBefore = residentKilobytes(server.pid)
        let seeds = (ProcessInfo.processInfo.environment["FACTEUR_FUZZ_SEEDS"] ?? "1,2,3").split(separator: ",").compactMap { Int($0) }
        for seed in seeds {
            let stats = try python("fuzz_smtp.py", ["--port", String(server.smtpPort), "--seed", String(seed), "--count", "800"],
                                   timeout: 600)
            XCTAssertGreaterThan(stats["replies"] as? Int ?? 0, 400, "seed \(seed): too few replies: \(stats)")
            XCTAssertTrue(server.isRunning, "seed \(seed): the server died")
        }
        // Still a working mail server.
        let result = try smtpCase("plain", ["--to", "admin@localhost"])
        XCTAssertNotNil(result["subject"])
        if let before = rssBefore, let after = residentKilobytes(server.pid) {
            XCTAssertLessThan(after, before + 512 * 1024, "resident memory grew from \(before) kB to \(after) kB")
        }
    }

    /// VmRSS of a process, in kB (Linux /proc).
    func residentKilobytes(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "")
        }
        return nil
    }
}
