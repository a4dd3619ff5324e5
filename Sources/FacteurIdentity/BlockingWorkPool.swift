// A small pool for the synchronous, CPU- and memory-heavy password work (scrypt,
// PBKDF2): it runs each job on a Dispatch worker thread, so neither a NIO event loop
// nor Swift's cooperative pool is blocked for tens of milliseconds, and it caps how
// many run at once (each scrypt run holds 32 MiB) and how many may wait, so a flood
// of login attempts cannot exhaust memory.

import Dispatch
import Foundation

public final class BlockingWorkPool: Sendable {
    /// One job per core at a time; 256 waiting at most.
    public static let shared = BlockingWorkPool(
        maximumConcurrent: max(1, ProcessInfo.processInfo.activeProcessorCount), maximumQueued: 256)

    private let gate: Gate

    public init(maximumConcurrent: Int, maximumQueued: Int) {
        gate = Gate(limit: max(1, maximumConcurrent), maximumQueued: max(0, maximumQueued))
    }

    /// Runs `work` on a worker thread when a slot is free. Returns `nil` without running
    /// it when too many jobs are already waiting: the caller answers "try again later".
    public func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
        guard await gate.enter() else { return nil }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            DispatchQueue.global(qos: .userInitiated).async { continuation.resume(returning: work()) }
        }
        await gate.leave()
        return result
    }

    private actor Gate {
        let limit: Int
        let maximumQueued: Int
        private var running = 0
        private var waiters: [CheckedContinuation<Void, Never>] = []

        init(limit: Int, maximumQueued: Int) { self.limit = limit; self.maximumQueued = maximumQueued }

        func enter() async -> Bool {
            if running < limit { running += 1; return true }
            guard waiters.count < maximumQueued else { return false }
            // The slot is handed over by `leave`, which does not decrement `running`.
            await withCheckedContinuation { waiters.append($0) }
            return true
        }

        func leave() {
            if waiters.isEmpty { running -= 1 } else { waiters.removeFirst().resume() }
        }
    }
}
