// The cache of successful password checks (PasswordCheckCache): a repeated login skips the KDF,
// and nothing else does — wrong passwords, changed or removed credentials, expired entries,
// another account's entry. Memory stays bounded.

import FacteurStore
import Foundation
import XCTest
@testable import FacteurIdentity

final class PasswordCheckCacheTests: XCTestCase {
    let accounts = FakeAccounts()
    let clock = ManualClock()

    override func setUpWithError() throws {
        accounts["alice@example.org"] = try Credentials.make(password: "pencil", hasher: cheapHasher)
        accounts["bob@example.org"] = try Credentials.make(password: "crayon", hasher: cheapHasher)
    }

    private func authenticator(cache: PasswordCheckCache?, pool: BlockingWorkPool) -> Authenticator {
        let accounts = self.accounts
        return Authenticator(configuration: .init(hasher: cheapHasher), lookup: { try accounts.lookup($0) },
                             workPool: pool, passwordCache: cache)
    }

    private func plain(_ auth: Authenticator, _ user: String, _ password: String) async throws -> AuthOutcome {
        var exchange = try XCTUnwrap(auth.begin(mechanism: "PLAIN"))
        return await exchange.respond(bytes("\u{0}\(user)\u{0}\(password)"))
    }

    private func isSuccess(_ outcome: AuthOutcome) -> Bool {
        if case .success = outcome { return true }
        return false
    }

    /// Runs `body` while the work pool's only slot is taken: any password check that needs the
    /// KDF fails as temporarily unavailable, one answered from the cache does not.
    private func withKDFUnavailable(_ pool: BlockingWorkPool, _ body: () async throws -> Void) async throws {
        let gate = DispatchSemaphore(value: 0)
        let occupant = Task { await pool.run { gate.wait() } }
        try? await Task.sleep(for: .milliseconds(100))
        var failure: (any Error)?
        do { try await body() } catch { failure = error }
        gate.signal()
        _ = await occupant.value
        if let failure { throw failure }
    }

    func testRepeatedLoginSkipsTheKDFButAWrongPasswordNever() async throws {
        let cache = PasswordCheckCache(now: { [clock] in clock.now })
        let pool = BlockingWorkPool(maximumConcurrent: 1, maximumQueued: 0)
        let auth = authenticator(cache: cache, pool: pool)
        let first = try await plain(auth, "alice@example.org", "pencil")
        XCTAssertTrue(isSuccess(first))
        XCTAssertEqual(cache.count, 1)
        try await withKDFUnavailable(pool) {
            let again = try await plain(auth, "Alice@Example.org", "pencil")
            XCTAssertTrue(isSuccess(again), "answered from the cache, without the KDF: \(again)")
            let wrong = try await plain(auth, "alice@example.org", "pencil2")
            XCTAssertEqual(wrong, .failure(SASLFailure(.temporarilyUnavailable)), "a wrong password always needs the KDF")
            let other = try await plain(auth, "bob@example.org", "pencil")
            XCTAssertEqual(other, .failure(SASLFailure(.temporarilyUnavailable)), "alice's entry never vouches for bob")
        }
        let wrong = try await plain(auth, "alice@example.org", "Pencil")
        XCTAssertEqual(wrong, .failure(SASLFailure(.authenticationFailed)))
        XCTAssertEqual(cache.count, 1, "failures are not cached")
    }

    func testChangedOrRemovedCredentialsMissAtOnce() async throws {
        let cache = PasswordCheckCache(now: { [clock] in clock.now })
        let auth = authenticator(cache: cache, pool: BlockingWorkPool(maximumConcurrent: 2, maximumQueued: 8))
        let first = try await plain(auth, "alice@example.org", "pencil")
        XCTAssertTrue(isSuccess(first))
        // The password is changed behind the authenticator's back (the CLI, another process).
        accounts["alice@example.org"] = try Credentials.make(password: "eraser", hasher: cheapHasher)
        let old = try await plain(auth, "alice@example.org", "pencil")
        XCTAssertEqual(old, .failure(SASLFailure(.authenticationFailed)))
        let new = try await plain(auth, "alice@example.org", "eraser")
        XCTAssertTrue(isSuccess(new))
        accounts["alice@example.org"] = nil
        let removed = try await plain(auth, "alice@example.org", "eraser")
        XCTAssertEqual(removed, .failure(SASLFailure(.authenticationFailed)))
    }

    func testEntriesExpireAndCanBeForgotten() throws {
        let cache = PasswordCheckCache(timeToLive: .seconds(60), now: { [clock] in clock.now })
        let stored = try XCTUnwrap(accounts["alice@example.org"])
        cache.remember(account: "alice@example.org", password: "pencil", stored: stored)
        XCTAssertTrue(cache.isKnownGood(account: "alice@example.org", password: "pencil", stored: stored))
        XCTAssertFalse(cache.isKnownGood(account: "alice@example.org", password: "pencil ", stored: stored))
        XCTAssertFalse(cache.isKnownGood(account: "bob@example.org", password: "pencil", stored: stored))
        clock.advance(by: .seconds(59))
        XCTAssertTrue(cache.isKnownGood(account: "alice@example.org", password: "pencil", stored: stored))
        clock.advance(by: .seconds(2))
        XCTAssertFalse(cache.isKnownGood(account: "alice@example.org", password: "pencil", stored: stored), "expired")
        cache.remember(account: "alice@example.org", password: "pencil", stored: stored)
        cache.forget(account: "alice@example.org")
        XCTAssertFalse(cache.isKnownGood(account: "alice@example.org", password: "pencil", stored: stored))
        XCTAssertEqual(cache.count, 0)
    }

    func testSizeIsBoundedAndTheOldestGoFirst() throws {
        let cache = PasswordCheckCache(maximumEntries: 3, now: { [clock] in clock.now })
        let stored = try XCTUnwrap(accounts["alice@example.org"])
        for index in 0..<5 {
            cache.remember(account: "user\(index)@example.org", password: "pencil", stored: stored)
            clock.advance(by: .seconds(1))
        }
        XCTAssertEqual(cache.count, 3)
        XCTAssertFalse(cache.isKnownGood(account: "user0@example.org", password: "pencil", stored: stored))
        XCTAssertFalse(cache.isKnownGood(account: "user1@example.org", password: "pencil", stored: stored))
        XCTAssertTrue(cache.isKnownGood(account: "user4@example.org", password: "pencil", stored: stored))
    }

    func testWithoutACacheEveryLoginNeedsTheKDF() async throws {
        let pool = BlockingWorkPool(maximumConcurrent: 1, maximumQueued: 0)
        let auth = authenticator(cache: nil, pool: pool)
        let first = try await plain(auth, "alice@example.org", "pencil")
        XCTAssertTrue(isSuccess(first))
        try await withKDFUnavailable(pool) {
            let again = try await plain(auth, "alice@example.org", "pencil")
            XCTAssertEqual(again, .failure(SASLFailure(.temporarilyUnavailable)))
        }
    }
}
