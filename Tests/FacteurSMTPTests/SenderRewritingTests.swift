// SRS: forwarded mail's envelope sender, and the way back for bounces.

import FacteurSMTP
import Foundation
import XCTest

final class SenderRewritingTests: XCTestCase {
    let srs = SenderRewriting(secret: Array(repeating: 7, count: 32))
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func testRoundTripIsCaseInsensitiveAndKeepsTheOriginal() throws {
        let rewritten = srs.forward("Alice.Smith@Example.COM", via: "forwarder.test", now: now)
        XCTAssertTrue(rewritten.hasPrefix("SRS0="), rewritten)
        XCTAssertTrue(rewritten.hasSuffix("=Example.COM=Alice.Smith@forwarder.test"), rewritten)
        let local = String(rewritten[..<rewritten.lastIndex(of: "@")!])
        XCTAssertEqual(srs.reverse(localPart: local, now: now), "Alice.Smith@Example.COM")
        XCTAssertEqual(srs.reverse(localPart: local.lowercased(), now: now.addingTimeInterval(5 * 86_400))?.lowercased(),
                       "alice.smith@example.com", "a case-folding relay does not break the bounce path")
    }

    func testTamperedForeignOrExpiredAddressesAreRefused() {
        let rewritten = srs.forward("bob@example.com", via: "forwarder.test", now: now)
        let local = String(rewritten[..<rewritten.lastIndex(of: "@")!])
        XCTAssertNil(srs.reverse(localPart: local.replacingOccurrences(of: "=bob", with: "=eve"), now: now), "other local part")
        XCTAssertNil(srs.reverse(localPart: local.replacingOccurrences(of: "example.com", with: "example.net"), now: now))
        XCTAssertNil(SenderRewriting(secret: Array(repeating: 8, count: 32)).reverse(localPart: local, now: now), "other secret")
        XCTAssertNil(srs.reverse(localPart: local, now: now.addingTimeInterval(Double(SenderRewriting.maxAgeDays + 1) * 86_400)), "expired")
        XCTAssertNil(srs.reverse(localPart: "SRS0=x", now: now))
        XCTAssertNil(srs.reverse(localPart: "alice", now: now))
    }

    func testOurOwnSRSAddressIsNotRewrittenTwice() {
        let once = srs.forward("bob@example.com", via: "forwarder.test", now: now)
        XCTAssertEqual(srs.forward(once, via: "forwarder.test", now: now), once)
        XCTAssertEqual(srs.forward("no-domain", via: "forwarder.test", now: now), "no-domain")
    }
}
