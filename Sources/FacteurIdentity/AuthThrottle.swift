// Throttling of failed logins, per client address and per account: after a few free
// failures each further failure is answered after an exponentially growing delay
// (tarpitting), and past a threshold the client or account is locked out for a while.
// Time is passed in, never read, so tests drive it; memory is bounded (oldest entries
// are evicted past a cap).
//
// Trade-off: locking an account lets an attacker lock its owner out, so the account
// threshold is higher than the client one; a success clears the account's record but
// not the client's (otherwise one valid account would let a client reset its count).

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct AuthThrottle: Sendable {
    public struct Policy: Sendable, Equatable {
        /// Failures answered without delay.
        public var freeFailures: Int
        /// Delay after the first failure beyond the free ones; doubles with each next one.
        public var baseDelay: Duration
        public var maximumDelay: Duration
        /// Failures after which a client (address, or IPv6 /64) is locked out.
        public var clientLockoutThreshold: Int
        /// Failures after which an account is locked out, whatever the client.
        public var accountLockoutThreshold: Int
        public var lockoutDuration: Duration
        /// A record with no failure for this long (and no lockout running) is forgotten.
        /// While it is remembered, a failure after a lockout has ended locks again at once.
        public var forgetAfter: Duration
        /// Most records kept per table (clients, accounts).
        public var maximumEntries: Int

        public init(freeFailures: Int = 3, baseDelay: Duration = .seconds(1), maximumDelay: Duration = .seconds(16),
                    clientLockoutThreshold: Int = 10, accountLockoutThreshold: Int = 20,
                    lockoutDuration: Duration = .seconds(15 * 60), forgetAfter: Duration = .seconds(15 * 60),
                    maximumEntries: Int = 10_000) {
            self.freeFailures = freeFailures; self.baseDelay = baseDelay; self.maximumDelay = maximumDelay
            self.clientLockoutThreshold = clientLockoutThreshold; self.accountLockoutThreshold = accountLockoutThreshold
            self.lockoutDuration = lockoutDuration; self.forgetAfter = forgetAfter
            self.maximumEntries = max(1, maximumEntries)
        }
    }

    public enum Decision: Sendable, Equatable {
        case allow
        case locked(retryAfter: Duration)
    }

    public typealias Instant = ContinuousClock.Instant

    struct Entry: Sendable, Equatable {
        var failures: Int
        var lastFailure: Instant
        var lockedUntil: Instant?
    }

    public let policy: Policy
    private(set) var clients: [String: Entry] = [:]
    private(set) var accounts: [String: Entry] = [:]

    public init(policy: Policy = Policy()) { self.policy = policy }

    /// Number of records held (clients plus accounts).
    public var entryCount: Int { clients.count + accounts.count }

    /// May this client try to log in (to this account)? Call before checking a password.
    public func check(client: String?, account: String?, now: Instant) -> Decision {
        var retryAfter: Duration = .zero
        if let client, let entry = live(clients[Self.clientKey(for: client)], now: now), let until = entry.lockedUntil, until > now {
            retryAfter = max(retryAfter, until - now)
        }
        if let account, let entry = live(accounts[account], now: now), let until = entry.lockedUntil, until > now {
            retryAfter = max(retryAfter, until - now)
        }
        return retryAfter > .zero ? .locked(retryAfter: retryAfter) : .allow
    }

    /// Records a failed attempt; returns how long to wait before answering it.
    public mutating func recordFailure(client: String?, account: String?, now: Instant) -> Duration {
        var failures = 0
        if let client {
            failures = max(failures, Self.bump(&clients, key: Self.clientKey(for: client), now: now,
                                               threshold: policy.clientLockoutThreshold, policy: policy))
        }
        if let account {
            failures = max(failures, Self.bump(&accounts, key: account, now: now,
                                               threshold: policy.accountLockoutThreshold, policy: policy))
        }
        return delay(afterFailures: failures)
    }

    /// A successful login clears the account's record (see the file comment for why
    /// the client's stays).
    public mutating func recordSuccess(client: String?, account: String?, now: Instant) {
        if let account { accounts[account] = nil }
    }

    /// The delay owed after `failures` consecutive failures.
    public func delay(afterFailures failures: Int) -> Duration {
        let excess = failures - policy.freeFailures
        guard excess > 0 else { return .zero }
        let factor = 1 << min(excess - 1, 20)
        return min(policy.baseDelay * factor, policy.maximumDelay)
    }

    // MARK: - Internals

    /// The entry, unless it has lapsed: no lockout running and no failure for `forgetAfter`.
    private func live(_ entry: Entry?, now: Instant) -> Entry? { Self.live(entry, now: now, policy: policy) }

    private static func live(_ entry: Entry?, now: Instant, policy: Policy) -> Entry? {
        guard let entry else { return nil }
        if let until = entry.lockedUntil, until > now { return entry }
        return now - entry.lastFailure < policy.forgetAfter ? entry : nil
    }

    private static func bump(_ table: inout [String: Entry], key: String, now: Instant, threshold: Int,
                             policy: Policy) -> Int {
        var entry = live(table[key], now: now, policy: policy) ?? Entry(failures: 0, lastFailure: now, lockedUntil: nil)
        if table[key] == nil, table.count >= policy.maximumEntries { evict(&table, now: now, policy: policy) }
        entry.failures = min(entry.failures + 1, 1 << 20)
        entry.lastFailure = now
        if entry.failures >= threshold { entry.lockedUntil = now + policy.lockoutDuration }
        table[key] = entry
        return entry.failures
    }

    /// Drops lapsed records; if the table is still full, drops the oldest tenth, so
    /// the sort is paid once per many insertions.
    private static func evict(_ table: inout [String: Entry], now: Instant, policy: Policy) {
        table = table.filter { live($0.value, now: now, policy: policy) != nil }
        guard table.count >= policy.maximumEntries else { return }
        let victims = table.sorted { $0.value.lastFailure < $1.value.lastFailure }
            .prefix(max(1, policy.maximumEntries / 10))
        for (key, _) in victims { table[key] = nil }
    }

    /// The key a client address is counted under: IPv6 addresses by their /64 (one
    /// subscriber usually holds a whole /64), IPv4-mapped IPv6 as IPv4, others as given.
    public static func clientKey(for address: String) -> String {
        guard address.contains(":"), address.utf8.count < 64 else { return address }
        var raw = in6_addr()
        let parsed = address.withCString { inet_pton(AF_INET6, $0, &raw) }
        guard parsed == 1 else { return address }
        let bytes = withUnsafeBytes(of: &raw) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return bytes[12..<16].map(String.init).joined(separator: ".")
        }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }
}

/// An `AuthThrottle` shared by every connection, reading time from an injected clock.
public actor SharedAuthThrottle {
    private var throttle: AuthThrottle
    private let now: @Sendable () -> AuthThrottle.Instant

    public init(policy: AuthThrottle.Policy = AuthThrottle.Policy(),
                now: @escaping @Sendable () -> AuthThrottle.Instant = { ContinuousClock.now }) {
        throttle = AuthThrottle(policy: policy)
        self.now = now
    }

    public func check(client: String?, account: String?) -> AuthThrottle.Decision {
        throttle.check(client: client, account: account, now: now())
    }

    public func recordFailure(client: String?, account: String?) -> Duration {
        throttle.recordFailure(client: client, account: account, now: now())
    }

    public func recordSuccess(client: String?, account: String?) {
        throttle.recordSuccess(client: client, account: account, now: now())
    }

    public var entryCount: Int { throttle.entryCount }
}
