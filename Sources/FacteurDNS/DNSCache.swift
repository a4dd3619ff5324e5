// FacteurDNS: the answer cache. Positive answers live for their smallest TTL (RFC 1035 §3.2.1,
// RFC 2181 §5.2 for the RRset), negative ones (NXDOMAIN, no data) for min(SOA TTL, SOA MINIMUM)
// (RFC 2308 §5); both are clamped to configurable maxima, and TTLs handed out are decremented by the
// time spent in the cache. Bounded: the least recently used entry goes when the cache is full.
// Time comes from an injected `DNSClock`, so tests move it by hand.

/// A monotonic clock for TTLs.
public protocol DNSClock: Sendable {
    /// Time elapsed since an arbitrary fixed origin; never goes backwards.
    func now() -> Duration
}

/// The system's monotonic clock.
public struct SystemDNSClock: DNSClock {
    private let origin = ContinuousClock.now
    public init() {}
    public func now() -> Duration { ContinuousClock.now - origin }
}

/// Sizes and TTL clamps of the cache.
public struct DNSCacheConfiguration: Sendable, Hashable {
    public var capacity: Int
    public var maxTTL: UInt32
    public var maxNegativeTTL: UInt32

    public init(capacity: Int = DNSLimits.defaultCacheCapacity, maxTTL: UInt32 = DNSLimits.defaultMaxCacheTTL,
                maxNegativeTTL: UInt32 = DNSLimits.defaultMaxNegativeTTL) {
        self.capacity = max(1, capacity)
        self.maxTTL = maxTTL
        self.maxNegativeTTL = maxNegativeTTL
    }
}

/// The cache as a plain value: the caller passes the time. `DNSClient` wraps it in an actor.
public struct DNSCache: Sendable {
    /// What a query came to: a positive answer or a negative outcome (NXDOMAIN, no data).
    public enum Outcome: Hashable, Sendable {
        case answer(DNSAnswer)
        case negative(DNSError)
    }

    struct Key: Hashable {
        var name: DNSName
        var type: DNSRecordType
    }

    private struct Node {
        var key: Key
        var outcome: Outcome
        var storedAt: Duration
        var expiresAt: Duration
        var newer: Int? // towards the most recently used
        var older: Int? // towards the least recently used
    }

    public let configuration: DNSCacheConfiguration
    private var index: [Key: Int] = [:]
    private var nodes: [Node] = []
    private var free: [Int] = []
    private var newest: Int?
    private var oldest: Int?

    public init(configuration: DNSCacheConfiguration = DNSCacheConfiguration()) {
        self.configuration = configuration
    }

    /// Entries held, expired ones included until they are looked up or evicted.
    public var count: Int { index.count }

    /// The cached outcome, its TTLs reduced by the time it has spent here; nil if absent or expired.
    public mutating func lookup(name: DNSName, type: DNSRecordType, now: Duration) -> Outcome? {
        let key = Key(name: name.lowercased, type: type)
        guard let slot = index[key] else { return nil }
        let node = nodes[slot]
        guard now < node.expiresAt else {
            remove(slot)
            return nil
        }
        touch(slot)
        let elapsed = UInt32(clamping: (now - node.storedAt).components.seconds)
        switch node.outcome {
        case .answer(var answer):
            answer.records = answer.records.map { Self.aged($0, by: elapsed) }
            answer.cnameChain = answer.cnameChain.map { Self.aged($0, by: elapsed) }
            return .answer(answer)
        case .negative(let error):
            return .negative(Self.aged(error, by: elapsed))
        }
    }

    /// Keeps an outcome for its TTL. Zero TTLs, and negative answers without an SOA (RFC 2308 §5:
    /// "SHOULD NOT be cached"), are not kept. Other errors (SERVFAIL, timeout) are never kept.
    public mutating func store(_ outcome: Outcome, name: DNSName, type: DNSRecordType, now: Duration) {
        let ttl: UInt32
        switch outcome {
        case .answer(let answer):
            ttl = min(answer.ttl, configuration.maxTTL)
        case .negative(.nxdomain(let negative)), .negative(.noData(let negative)):
            guard let negativeTTL = negative.negativeTTL else { return }
            ttl = min(negativeTTL, configuration.maxNegativeTTL)
        case .negative:
            return
        }
        guard ttl > 0 else { return }
        let key = Key(name: name.lowercased, type: type)
        if let existing = index[key] {
            remove(existing)
        }
        while index.count >= configuration.capacity, let victim = oldest {
            remove(victim)
        }
        let node = Node(key: key, outcome: outcome, storedAt: now, expiresAt: now + .seconds(Int64(ttl)),
                        newer: nil, older: newest)
        let slot: Int
        if let reused = free.popLast() {
            nodes[reused] = node
            slot = reused
        } else {
            nodes.append(node)
            slot = nodes.count - 1
        }
        if let newest { nodes[newest].newer = slot }
        newest = slot
        if oldest == nil { oldest = slot }
        index[key] = slot
    }

    /// Forgets everything (for `facteur dns flush`, or after a configuration change).
    public mutating func removeAll() {
        self = DNSCache(configuration: configuration)
    }

    // MARK: LRU list

    private mutating func unlink(_ slot: Int) {
        let node = nodes[slot]
        if let newer = node.newer { nodes[newer].older = node.older } else { newest = node.older }
        if let older = node.older { nodes[older].newer = node.newer } else { oldest = node.newer }
        nodes[slot].newer = nil
        nodes[slot].older = nil
    }

    private mutating func touch(_ slot: Int) {
        guard newest != slot else { return }
        unlink(slot)
        nodes[slot].older = newest
        if let newest { nodes[newest].newer = slot }
        newest = slot
        if oldest == nil { oldest = slot }
    }

    private mutating func remove(_ slot: Int) {
        unlink(slot)
        index[nodes[slot].key] = nil
        // Drop the payload now rather than when the slot is reused.
        nodes[slot].outcome = .negative(.transport(""))
        free.append(slot)
    }

    private static func aged(_ record: DNSResourceRecord, by seconds: UInt32) -> DNSResourceRecord {
        var copy = record
        copy.ttl = record.ttl > seconds ? record.ttl - seconds : 0
        return copy
    }

    private static func aged(_ error: DNSError, by seconds: UInt32) -> DNSError {
        func age(_ negative: DNSNegativeAnswer) -> DNSNegativeAnswer {
            var copy = negative
            copy.negativeTTL = negative.negativeTTL.map { $0 > seconds ? $0 - seconds : 0 }
            return copy
        }
        switch error {
        case .nxdomain(let negative): return .nxdomain(age(negative))
        case .noData(let negative): return .noData(age(negative))
        default: return error
        }
    }
}
