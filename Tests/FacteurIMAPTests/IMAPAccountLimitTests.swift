// Connections per account (issue: limits per client IP *and* per account), and COMPRESS's
// place in the state machine (RFC 4978: authenticated states only, once).

@testable import FacteurIMAP
import FacteurNet
import XCTest

final class IMAPAccountLimitTests: IMAPStoreTestCase {
    func testAThirdLoginOfTheSameAccountIsRefusedUntilOneGoesAway() async throws {
        let limiter = AccountConnectionLimiter(maxPerAccount: 2)
        runner = IMAPCommandRunner(store: store, authenticator: runner.authenticator, accountLimiter: limiter)
        var first: TestConnection? = await loggedIn()
        let second = await loggedIn()
        XCTAssertEqual(limiter.connections("alice@example.org"), 2)
        var third = connect()
        let refused = await third.send("a0 LOGIN alice@example.org secret\r\n")
        XCTAssertTrue(refused.hasPrefix("a0 NO [UNAVAILABLE]"), refused)
        XCTAssertEqual(third.session.state, .notAuthenticated, "refused means not logged in")
        // A connection that goes away gives its place back.
        XCTAssertNotNil(first)
        first = nil
        XCTAssertEqual(limiter.connections("alice@example.org"), 1)
        let accepted = await third.send("a1 LOGIN alice@example.org secret\r\n")
        XCTAssertTrue(accepted.hasPrefix("a1 OK"), accepted)
        _ = second
    }

    func testCompressIsForAuthenticatedSessionsAndOnlyOnce() async throws {
        var c = connect()
        let early = await c.send("z1 COMPRESS DEFLATE\r\n")
        XCTAssertTrue(early.hasPrefix("z1 BAD"), early)
        XCTAssertFalse(c.session.capabilities().contains("COMPRESS=DEFLATE"))
        var logged = await loggedIn()
        XCTAssertTrue(logged.session.capabilities().contains("COMPRESS=DEFLATE"))
        let bad = await logged.send("z2 COMPRESS LZW\r\n")
        XCTAssertTrue(bad.hasPrefix("z2 BAD"), bad)
        let ok = await logged.send("z3 COMPRESS DEFLATE\r\n")
        XCTAssertTrue(ok.hasPrefix("z3 OK"), ok)
        let again = await logged.send("z4 COMPRESS DEFLATE\r\n")
        XCTAssertTrue(again.contains("COMPRESSIONACTIVE"), again)
        XCTAssertFalse(logged.session.capabilities().contains("COMPRESS=DEFLATE"))
    }
}
