// Idle outbound SMTP connections kept between delivery passes, so that the next pass to the same
// destination sends its messages over an open session instead of connecting, greeting and saying
// EHLO again. RFC 5321 §3.3 lets a client run several mail transactions in one session; §4.5.3.2.7
// gives the server 5 minutes of idle time before it may close, so a few seconds of keeping is safe.
// A connection the server closed meanwhile is noticed before use (`isUsable`) and replaced.

import NIOConcurrencyHelpers

/// Connections parked by key (the destination, the hosts tried and how: see
/// `QueueDeliveryService.connectionKey`), most recently parked taken first. Bounded in number;
/// each leaves after `idleLimit` unused, or once it is older than `ageLimit`.
final class SMTPConnectionCache: Sendable {
    private struct Entry {
        let connection: SMTPClientConnection
        let parkedAt: ContinuousClock.Instant
    }
    private struct State {
        var idle: [String: [Entry]] = [:]
        var count = 0
        var sweeping = false
    }

    let idleLimit: Duration
    let ageLimit: Duration
    let capacity: Int
    private let state = NIOLockedValueBox(State())

    init(idleLimit: Duration = .seconds(5), ageLimit: Duration = .seconds(300), capacity: Int) {
        self.idleLimit = idleLimit
        self.ageLimit = ageLimit
        self.capacity = max(0, capacity)
    }

    /// How many connections wait now, and under which keys (tests).
    var idleCount: Int { state.withLockedValue { $0.count } }
    var keys: [String] { state.withLockedValue { Array($0.idle.keys) } }

    /// An idle connection for `key`, or nil. The caller still checks `isUsable`: the server may
    /// have closed it a moment ago.
    func take(_ key: String) -> SMTPClientConnection? {
        state.withLockedValue { s in
            guard var list = s.idle[key], let entry = list.popLast() else { return nil }
            s.idle[key] = list.isEmpty ? nil : list
            s.count -= 1
            return entry.connection
        }
    }

    /// Keeps `connection` for the next pass, or says QUIT when it is broken, too old, or the
    /// cache is full (then the longest-idle one goes instead).
    func park(_ connection: SMTPClientConnection, key: String) async {
        let now = ContinuousClock.now
        // QUIT is said in the background, as before there was a cache: a lane need not wait for
        // the server's 221.
        guard await connection.isUsable, connection.openedAt.duration(to: now) < ageLimit, capacity > 0 else {
            Task { await connection.quit() }
            return
        }
        keep(connection, key: key, now: now)
    }

    /// Parks without looking at the connection (`park` has); evicts the longest idle one when full.
    func keep(_ connection: SMTPClientConnection, key: String, now: ContinuousClock.Instant = .now) {
        let (evicted, startSweeper): (SMTPClientConnection?, Bool) = state.withLockedValue { s in
            if capacity == 0 { return (connection, false) }
            var evicted: SMTPClientConnection?
            if s.count >= capacity, let oldest = Self.oldestKey(s.idle) {
                evicted = s.idle[oldest]?.removeFirst().connection
                if s.idle[oldest]?.isEmpty == true { s.idle[oldest] = nil }
                s.count -= 1
            }
            s.idle[key, default: []].append(Entry(connection: connection, parkedAt: now))
            s.count += 1
            let start = !s.sweeping
            s.sweeping = true
            return (evicted, start)
        }
        if let evicted { Task { await evicted.quit() } }
        if startSweeper {
            Task { await self.sweep() }
        }
    }

    /// Says QUIT on every idle connection (the worker is stopping).
    func closeAll() async {
        let all: [SMTPClientConnection] = state.withLockedValue { s in
            let all = s.idle.values.flatMap { $0.map(\.connection) }
            s.idle = [:]
            s.count = 0
            return all
        }
        // Side by side: a server slow to answer QUIT holds up only its own session.
        await withTaskGroup(of: Void.self) { group in
            for connection in all { group.addTask { await connection.quit() } }
        }
    }

    /// Closes what waited longer than `idleLimit`, then sleeps until the next one would, while
    /// anything waits: one sleeping task at most, however many connections.
    private func sweep() async {
        while true {
            try? await Task.sleep(for: idleLimit / 2)
            let now = ContinuousClock.now
            let (expired, more): ([SMTPClientConnection], Bool) = state.withLockedValue { s in
                var expired: [SMTPClientConnection] = []
                for (key, list) in s.idle {
                    let keep = list.filter { $0.parkedAt.duration(to: now) < idleLimit }
                    if keep.count != list.count {
                        expired += list.filter { $0.parkedAt.duration(to: now) >= idleLimit }.map(\.connection)
                        s.idle[key] = keep.isEmpty ? nil : keep
                    }
                }
                s.count -= expired.count
                if s.count == 0 { s.sweeping = false }
                return (expired, s.sweeping)
            }
            for connection in expired { Task { await connection.quit() } }
            if !more { return }
        }
    }

    private static func oldestKey(_ idle: [String: [Entry]]) -> String? {
        idle.min { a, b in (a.value.first?.parkedAt ?? .now) < (b.value.first?.parkedAt ?? .now) }?.key
    }
}
