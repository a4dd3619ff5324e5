// The change feed: every subscriber sees every committed change, in commit order.

@testable import FacteurStore
import XCTest

final class ChangeFeedTests: StoreTestCase {
    func testTwoSubscribersSeeAppendFlagsAndExpunge() async throws {
        let alice = try await account("alice@example.org")
        let mailbox = try await inbox(alice)
        let first = store.changes()
        let second = store.changes()

        try await deliver(Self.message("a"), to: [alice])
        let flagsModSeq = try await store.setFlags(mailboxID: mailbox.id, uid: 1, flags: [.seen], keywords: [])
        try await store.expunge(mailboxID: mailbox.id, uids: [1])
        let created = try await store.createMailbox(accountID: alice.id, name: "Lists", specialUse: nil)
        let expungeModSeq = flagsModSeq + 1
        let expected: [MailboxChange] = [
            .appended(accountID: alice.id, mailboxID: mailbox.id, uid: 1, modSeq: 2),
            .flagsChanged(accountID: alice.id, mailboxID: mailbox.id, uid: 1, modSeq: flagsModSeq),
            .expunged(accountID: alice.id, mailboxID: mailbox.id, uid: 1, modSeq: expungeModSeq),
            .mailboxCreated(accountID: alice.id, mailboxID: created.id),
        ]
        for stream in [first, second] {
            var iterator = stream.makeAsyncIterator()
            var seen: [MailboxChange] = []
            for _ in expected.indices {
                if let change = await iterator.next() { seen.append(change) }
            }
            XCTAssertEqual(seen, expected)
        }
    }

    func testEndedSubscriptionIsDropped() async throws {
        let feed = ChangeFeed()
        var stream: AsyncStream<MailboxChange>? = feed.subscribe()
        XCTAssertTrue(feed.hasSubscribers)
        _ = stream
        stream = nil
        // Dropping the last reference terminates the stream and removes the continuation.
        for _ in 0 ..< 100 where feed.hasSubscribers { try await Task.sleep(nanoseconds: 1_000_000) }
        XCTAssertFalse(feed.hasSubscribers)
    }

    func testCloseFinishesStreams() async throws {
        let stream = store.changes()
        try store.close()
        var iterator = stream.makeAsyncIterator()
        let end = await iterator.next()
        XCTAssertNil(end)
        store = try SQLiteMailStore(directory: directory)
    }
}
