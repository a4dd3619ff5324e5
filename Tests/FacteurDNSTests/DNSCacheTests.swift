import Foundation
import XCTest
@testable import FacteurDNS

/// A clock the test moves by hand.
final class ManualClock: DNSClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Duration = .seconds(1000)
    func now() -> Duration { lock.withLock { current } }
    func advance(_ seconds: Int64) { lock.withLock { current += .seconds(seconds) } }
}

final class DNSCacheTests: XCTestCase {
    let t0: Duration = .seconds(100)

    func answer(_ name: DNSName, ttl: UInt32, _ address: String = "192.0.2.1") -> DNSAnswer {
        DNSAnswer(name: name, type: .a, canonicalName: name,
                  records: [DNSResourceRecord(name: name, ttl: ttl, data: .a(IPv4Address(address)!))], authenticData: false)
    }

    func testPositiveAnswersExpireWithTheirTTLAndAge() {
        var cache = DNSCache()
        cache.store(.answer(answer("a.example", ttl: 60)), name: "a.example", type: .a, now: t0)
        guard case .answer(let fresh) = cache.lookup(name: "A.EXAMPLE", type: .a, now: t0 + .seconds(20)) else {
            return XCTFail("expected a cached answer (names compared without case)")
        }
        XCTAssertEqual(fresh.records.first?.ttl, 40, "TTL handed out is decremented by the time cached")
        XCTAssertNil(cache.lookup(name: "a.example", type: .aaaa, now: t0), "type is part of the key")
        XCTAssertNotNil(cache.lookup(name: "a.example", type: .a, now: t0 + .seconds(59)))
        XCTAssertNil(cache.lookup(name: "a.example", type: .a, now: t0 + .seconds(60)), "expired at the TTL")
        XCTAssertEqual(cache.count, 0, "an expired entry is dropped when seen")
    }

    func testAnswerTTLIsTheSmallestOfRecordsAndCNAMEs() {
        var cache = DNSCache()
        var a = answer("www.example", ttl: 300)
        a.cnameChain = [DNSResourceRecord(name: "alias.example", ttl: 10, data: .cname("www.example"))]
        cache.store(.answer(a), name: "alias.example", type: .a, now: t0)
        XCTAssertNotNil(cache.lookup(name: "alias.example", type: .a, now: t0 + .seconds(9)))
        XCTAssertNil(cache.lookup(name: "alias.example", type: .a, now: t0 + .seconds(10)))
    }

    func testNegativeCachingFollowsRFC2308() {
        var cache = DNSCache(configuration: DNSCacheConfiguration(maxNegativeTTL: 100))
        let nx = DNSError.nxdomain(DNSNegativeAnswer(name: "gone.example", type: .mx, negativeTTL: 30, authenticData: false))
        cache.store(.negative(nx), name: "gone.example", type: .mx, now: t0)
        guard case .negative(.nxdomain(let negative)) = cache.lookup(name: "gone.example", type: .mx, now: t0 + .seconds(10)) else {
            return XCTFail("NXDOMAIN should be cached")
        }
        XCTAssertEqual(negative.negativeTTL, 20)
        XCTAssertNil(cache.lookup(name: "gone.example", type: .mx, now: t0 + .seconds(30)))

        let long = DNSError.noData(DNSNegativeAnswer(name: "n.example", type: .txt, negativeTTL: 86400, authenticData: false))
        cache.store(.negative(long), name: "n.example", type: .txt, now: t0)
        XCTAssertNotNil(cache.lookup(name: "n.example", type: .txt, now: t0 + .seconds(99)))
        XCTAssertNil(cache.lookup(name: "n.example", type: .txt, now: t0 + .seconds(100)), "clamped to maxNegativeTTL")

        let noSOA = DNSError.noData(DNSNegativeAnswer(name: "s.example", type: .txt, negativeTTL: nil, authenticData: false))
        cache.store(.negative(noSOA), name: "s.example", type: .txt, now: t0)
        XCTAssertNil(cache.lookup(name: "s.example", type: .txt, now: t0), "RFC 2308 §5: no SOA, no negative caching")

        cache.store(.negative(.serverFailure(DNSQuestion(name: "f.example", type: .a))), name: "f.example", type: .a, now: t0)
        XCTAssertNil(cache.lookup(name: "f.example", type: .a, now: t0), "SERVFAIL is not cached")
        cache.store(.answer(answer("z.example", ttl: 0)), name: "z.example", type: .a, now: t0)
        XCTAssertNil(cache.lookup(name: "z.example", type: .a, now: t0), "TTL 0 is not cached")
    }

    func testMaxTTLClamp() {
        var cache = DNSCache(configuration: DNSCacheConfiguration(maxTTL: 50))
        cache.store(.answer(answer("a.example", ttl: 1_000_000)), name: "a.example", type: .a, now: t0)
        XCTAssertNotNil(cache.lookup(name: "a.example", type: .a, now: t0 + .seconds(49)))
        XCTAssertNil(cache.lookup(name: "a.example", type: .a, now: t0 + .seconds(50)))
    }

    func testLeastRecentlyUsedIsEvicted() {
        var cache = DNSCache(configuration: DNSCacheConfiguration(capacity: 3))
        for name in ["a", "b", "c"] {
            cache.store(.answer(answer(try! DNSName(name), ttl: 60)), name: try! DNSName(name), type: .a, now: t0)
        }
        XCTAssertNotNil(cache.lookup(name: "a", type: .a, now: t0), "touch a: b is now the oldest")
        cache.store(.answer(answer("d", ttl: 60)), name: "d", type: .a, now: t0)
        XCTAssertEqual(cache.count, 3)
        XCTAssertNil(cache.lookup(name: "b", type: .a, now: t0))
        XCTAssertNotNil(cache.lookup(name: "a", type: .a, now: t0))
        XCTAssertNotNil(cache.lookup(name: "c", type: .a, now: t0))
        XCTAssertNotNil(cache.lookup(name: "d", type: .a, now: t0))
        // Replacing an entry does not grow the cache, and the new value wins.
        cache.store(.answer(answer("c", ttl: 60, "192.0.2.99")), name: "c", type: .a, now: t0)
        XCTAssertEqual(cache.count, 3)
        guard case .answer(let c) = cache.lookup(name: "c", type: .a, now: t0) else { return XCTFail() }
        XCTAssertEqual(c.records.first?.data, .a(IPv4Address("192.0.2.99")!))
        // Many inserts stay bounded.
        for index in 0..<1000 {
            let name = try! DNSName("n\(index)")
            cache.store(.answer(answer(name, ttl: 60)), name: name, type: .a, now: t0)
        }
        XCTAssertEqual(cache.count, 3)
        XCTAssertNotNil(cache.lookup(name: "n999", type: .a, now: t0))
        XCTAssertNil(cache.lookup(name: "n996", type: .a, now: t0))
    }
}
