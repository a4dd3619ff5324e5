import XCTest
@testable import FacteurIdentity

final class AuthThrottleTests: XCTestCase {
    let policy = AuthThrottle.Policy(freeFailures: 2, baseDelay: .seconds(1), maximumDelay: .seconds(8),
                                     clientLockoutThreshold: 8, accountLockoutThreshold: 12,
                                     lockoutDuration: .seconds(600), forgetAfter: .seconds(900), maximumEntries: 100)
    let t0 = ContinuousClock.now

    func testExponentialDelayCappedAndThenLockout() {
        var throttle = AuthThrottle(policy: policy)
        var delays: [Duration] = []
        for i in 0..<8 {
            XCTAssertEqual(throttle.check(client: "192.0.2.1", account: "a@x", now: t0 + .seconds(i)), .allow, "attempt \(i)")
            delays.append(throttle.recordFailure(client: "192.0.2.1", account: "a@x", now: t0 + .seconds(i)))
        }
        XCTAssertEqual(delays, [.zero, .zero, .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
        // The 8th failure locked the client out for 600 s from t0+7.
        XCTAssertEqual(throttle.check(client: "192.0.2.1", account: nil, now: t0 + .seconds(10)), .locked(retryAfter: .seconds(597)))
        // Another client trying the same account is not locked (the account is below its threshold).
        XCTAssertEqual(throttle.check(client: "192.0.2.2", account: "a@x", now: t0 + .seconds(10)), .allow)
        // Locked until the lockout ends.
        XCTAssertEqual(throttle.check(client: "192.0.2.1", account: nil, now: t0 + .seconds(606)), .locked(retryAfter: .seconds(1)))
        XCTAssertEqual(throttle.check(client: "192.0.2.1", account: nil, now: t0 + .seconds(607)), .allow)
    }

    func testCountsAreForgottenAfterAQuietPeriod() {
        var throttle = AuthThrottle(policy: policy)
        for i in 0..<4 { _ = throttle.recordFailure(client: "192.0.2.1", account: nil, now: t0 + .seconds(i)) }
        XCTAssertEqual(throttle.recordFailure(client: "192.0.2.1", account: nil, now: t0 + .seconds(10)), .seconds(4))
        // 15 minutes later the slate is clean.
        XCTAssertEqual(throttle.recordFailure(client: "192.0.2.1", account: nil, now: t0 + .seconds(10 + 900)), .zero)
    }

    func testAccountLockoutAcrossClients() {
        var throttle = AuthThrottle(policy: policy)
        for i in 0..<12 { _ = throttle.recordFailure(client: "198.51.100.\(i)", account: "victim@x", now: t0) }
        XCTAssertEqual(throttle.check(client: "203.0.113.9", account: "victim@x", now: t0 + .seconds(1)),
                       .locked(retryAfter: .seconds(599)))
        XCTAssertEqual(throttle.check(client: "203.0.113.9", account: "other@x", now: t0 + .seconds(1)), .allow)
    }

    func testSuccessClearsTheAccountButNotTheClient() {
        var throttle = AuthThrottle(policy: policy)
        for _ in 0..<5 { _ = throttle.recordFailure(client: "192.0.2.1", account: "a@x", now: t0) }
        throttle.recordSuccess(client: "192.0.2.1", account: "a@x", now: t0)
        // The client keeps its count (next failure is its 6th), the account starts over.
        XCTAssertEqual(throttle.recordFailure(client: "192.0.2.1", account: nil, now: t0), .seconds(8))
        XCTAssertEqual(throttle.recordFailure(client: "192.0.2.9", account: "a@x", now: t0), .zero)
    }

    func testMemoryIsBounded() {
        var throttle = AuthThrottle(policy: policy)
        for i in 0..<5000 {
            _ = throttle.recordFailure(client: "10.0.\(i / 256).\(i % 256)", account: "user\(i)@x", now: t0 + .milliseconds(i))
        }
        XCTAssertLessThanOrEqual(throttle.clients.count, 100)
        XCTAssertLessThanOrEqual(throttle.accounts.count, 100)
        // The most recent entries survive eviction; the oldest are gone.
        XCTAssertNotNil(throttle.clients["10.0.19.135"])   // i = 4999
        XCTAssertNil(throttle.clients["10.0.0.0"])
    }

    func testLapsedEntriesAreEvictedBeforeLiveOnes() {
        var throttle = AuthThrottle(policy: AuthThrottle.Policy(maximumEntries: 3))
        for i in 0..<3 { _ = throttle.recordFailure(client: "10.0.0.\(i)", account: nil, now: t0) }
        // Two of the three lapse; a fourth client arrives after they do.
        let later = t0 + .seconds(3600)
        _ = throttle.recordFailure(client: "10.0.0.9", account: nil, now: later)
        XCTAssertEqual(throttle.clients.count, 1)
    }

    func testIPv6ClientsAreCountedPerSlash64() {
        XCTAssertEqual(AuthThrottle.clientKey(for: "2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64")
        XCTAssertEqual(AuthThrottle.clientKey(for: "2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64")
        XCTAssertEqual(AuthThrottle.clientKey(for: "::ffff:192.0.2.7"), "192.0.2.7")
        XCTAssertEqual(AuthThrottle.clientKey(for: "192.0.2.7"), "192.0.2.7")
        XCTAssertEqual(AuthThrottle.clientKey(for: "not:an:address"), "not:an:address")

        var throttle = AuthThrottle(policy: policy)
        for i in 0..<8 { _ = throttle.recordFailure(client: "2001:db8:1:2::\(i + 1)", account: nil, now: t0) }
        XCTAssertEqual(throttle.check(client: "2001:db8:1:2:ffff::", account: nil, now: t0), .locked(retryAfter: .seconds(600)))
        XCTAssertEqual(throttle.check(client: "2001:db8:1:3::1", account: nil, now: t0), .allow)
    }

    func testSharedThrottleReadsTheInjectedClock() async {
        let clock = ManualClock()
        let shared = SharedAuthThrottle(policy: policy, now: { clock.now })
        for _ in 0..<8 { _ = await shared.recordFailure(client: "192.0.2.1", account: nil) }
        clock.advance(by: .seconds(100))
        let decision = await shared.check(client: "192.0.2.1", account: nil)
        XCTAssertEqual(decision, .locked(retryAfter: .seconds(500)))
        clock.advance(by: .seconds(500))
        let after = await shared.check(client: "192.0.2.1", account: nil)
        XCTAssertEqual(after, .allow)
    }
}
