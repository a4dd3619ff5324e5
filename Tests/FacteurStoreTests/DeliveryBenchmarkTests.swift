// A micro-benchmark, not a timed test: 2,000 deliveries of 10 KB from 10 concurrent tasks.
// It prints deliveries per second and process CPU per delivery; it asserts only correctness.
// FACTEUR_BENCH_TASKS=n changes the concurrency (1 shows the cost of a commit per delivery).
// Meaningful figures need a release build:
//   swift build -c release --build-tests -Xswiftc -enable-testing
//   swift test -c release --skip-build -Xswiftc -enable-testing --filter DeliveryBenchmarkTests

import FacteurMIME
@testable import FacteurStore
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class DeliveryBenchmarkTests: StoreTestCase {
    static func cpuSeconds() -> Double {
        var usage = rusage()
        #if canImport(Glibc)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    func testDeliveryThroughput() async throws {
        let deliveries = 2_000
        let tasks = Int(ProcessInfo.processInfo.environment["FACTEUR_BENCH_TASKS"] ?? "") ?? 10
        var recipients: [AccountRecord] = []
        for n in 0 ..< tasks { recipients.append(try await account("user\(n)@example.org")) }
        // Distinct messages, built before the clock starts.
        let messages = (0 ..< deliveries).map { Self.message("bench-\($0)", size: 10 * 1024) }
        let store = self.store!
        let statsBefore = store.stats
        let cpuStart = Self.cpuSeconds()
        let start = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0 ..< tasks {
                let account = recipients[task]
                group.addTask {
                    for n in stride(from: task, to: deliveries, by: tasks) {
                        let result = try await store.deliver(Delivery(message: .memory(messages[n]),
                                                                      recipients: [DeliveryRecipient(accountID: account.id)]))
                        guard case .stored = result.outcomes[0] else { throw StoreError.invalid("not stored: \(result)") }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = Date().timeIntervalSince(start)
        let cpu = Self.cpuSeconds() - cpuStart
        let stats = store.stats
        let commits = stats.commits - statsBefore.commits
        let line = String(format: "store benchmark: %d deliveries of 10 KB, %d tasks: %.0f deliveries/s, %.1f µs CPU per delivery, %d commits (%.1f per commit)\n",
                          deliveries, tasks, Double(deliveries) / elapsed, cpu / Double(deliveries) * 1e6, commits,
                          Double(deliveries) / Double(max(commits, 1)))
        FileHandle.standardOutput.write(Data(line.utf8))
        let stored = try await store.rowCount(.message)
        XCTAssertEqual(stored, deliveries)
        XCTAssertEqual(stats.deliveries - statsBefore.deliveries, deliveries)
    }

    func testSummaryCodecCost() throws {
        let summary = SummaryCodecTests.sampleSummary()
        let rounds = 5_000
        var start = Date()
        var encoded: [UInt8] = []
        for _ in 0 ..< rounds { encoded = SummaryCodec.encode(summary) }
        let binaryEncode = Date().timeIntervalSince(start) / Double(rounds) * 1e6
        start = Date()
        for _ in 0 ..< rounds { _ = try SummaryCodec.decode(encoded) }
        let binaryDecode = Date().timeIntervalSince(start) / Double(rounds) * 1e6
        let json = try JSONEncoder().encode(summary)
        start = Date()
        for _ in 0 ..< rounds { _ = try JSONEncoder().encode(summary) }
        let jsonEncode = Date().timeIntervalSince(start) / Double(rounds) * 1e6
        start = Date()
        for _ in 0 ..< rounds { _ = try JSONDecoder().decode(MessageSummary.self, from: json) }
        let jsonDecode = Date().timeIntervalSince(start) / Double(rounds) * 1e6
        let line = String(format: "summary codec: binary %d B, encode %.1f µs, decode %.1f µs; JSON %d B, encode %.1f µs, decode %.1f µs\n",
                          encoded.count, binaryEncode, binaryDecode, json.count, jsonEncode, jsonDecode)
        FileHandle.standardOutput.write(Data(line.utf8))
        XCTAssertEqual(try SummaryCodec.decode(encoded), summary)
    }
}
