// Keeps track of a listener's live sessions so that shutdown can ask each to finish
// (sessions in the middle of a message get to complete it) and then wait for them.

import NIOConcurrencyHelpers
import NIOCore

/// Something that can be asked to wind down: say goodbye when idle, finish the current message otherwise.
public protocol DrainableSession: AnyObject, Sendable {
    func drain()
    /// Closes the connection now: the drain grace period is over.
    func forceClose()
}

public final class ConnectionRegistry: Sendable {
    private struct State {
        var sessions: [ObjectIdentifier: any DrainableSession] = [:]
        var draining = false
        /// Set once drainAll stops waiting, so a late waiter never blocks.
        var drainFinished = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Registers a session; returns false when the registry is already draining (refuse the connection).
    public func register(_ session: any DrainableSession) -> Bool {
        state.withLockedValue { state in
            if state.draining { return false }
            state.sessions[ObjectIdentifier(session)] = session
            return true
        }
    }

    public func unregister(_ session: any DrainableSession) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLockedValue { state in
            state.sessions[ObjectIdentifier(session)] = nil
            guard state.draining, state.sessions.isEmpty else { return [] }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    public var count: Int { state.withLockedValue { $0.sessions.count } }

    /// Asks every session to drain, then waits until all have gone (or `timeout` passes).
    public func drainAll(timeout: Duration) async {
        let sessions = state.withLockedValue { state -> [any DrainableSession] in
            state.draining = true
            return Array(state.sessions.values)
        }
        sessions.forEach { $0.drain() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = self.state.withLockedValue { state -> Bool in
                        if state.sessions.isEmpty || state.drainFinished { return true }
                        state.waiters.append(continuation)
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            // Either everyone left, or the grace period is over: close whoever is left and
            // release the waiter, so that the group can end.
            let (left, stragglers) = self.state.withLockedValue { state -> ([CheckedContinuation<Void, Never>], [any DrainableSession]) in
                defer { state.waiters.removeAll() }
                state.drainFinished = true
                return (state.waiters, Array(state.sessions.values))
            }
            stragglers.forEach { $0.forceClose() }
            left.forEach { $0.resume() }
            group.cancelAll()
        }
    }
}
