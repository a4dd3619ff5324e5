import FacteurSMTP
import NIOConcurrencyHelpers
import XCTest

final class SubmissionRateLimiterTests: XCTestCase {
    func testSlidingWindowPerAccount() async {
        let clock = NIOLockedValueBox(ContinuousClock.now)
        let limiter = SubmissionRateLimiter(limits: .init(messagesPerHour: 3, recipientsPerHour: 5), window: .seconds(3600),
                                            now: { clock.withLockedValue { $0 } })
        for _ in 1...3 { let ok = await limiter.admitMessage(account: "a@x"); XCTAssertTrue(ok) }
        var admitted = await limiter.admitMessage(account: "a@x")
        XCTAssertFalse(admitted, "fourth message in the hour")
        admitted = await limiter.admitMessage(account: "b@x")
        XCTAssertTrue(admitted, "other accounts are not affected")
        clock.withLockedValue { $0 = $0.advanced(by: .seconds(1800)) }
        admitted = await limiter.admitMessage(account: "a@x")
        XCTAssertFalse(admitted, "still inside the window")
        clock.withLockedValue { $0 = $0.advanced(by: .seconds(1801)) }
        admitted = await limiter.admitMessage(account: "a@x")
        XCTAssertTrue(admitted, "the window slid past the first three")
        for _ in 1...5 { let ok = await limiter.admitRecipient(account: "a@x"); XCTAssertTrue(ok) }
        admitted = await limiter.admitRecipient(account: "a@x")
        XCTAssertFalse(admitted)
    }
}
