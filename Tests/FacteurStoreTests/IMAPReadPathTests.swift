// The store's fast paths for IMAP: the blob-keyed caches, header-only reads, change observers
// and flag commits without their own fsync. Each test checks the fast path against the plain one.

import FacteurMIME
import GRDB
@testable import FacteurStore
import XCTest

final class IMAPReadPathTests: StoreTestCase {
    final class Recorder: MailboxChangeObserver, @unchecked Sendable {
        let lock = NSLock()
        var seen: [MailboxChange] = []
        func receive(_ change: MailboxChange) { lock.withLock { seen.append(change) } }
        var changes: [MailboxChange] { lock.withLock { seen } }
    }

    func testBlobCacheEvictsOldestBeyondItsBudgetAndRefusesHugeValues() {
        let cache = BlobCache<[UInt8]>(budget: 1000)
        for i in 0 ..< 10 { cache.insert([UInt8(i)], forBlob: "b\(i)", cost: 100) }
        XCTAssertEqual(cache.count, 10)
        cache.insert([10], forBlob: "b10", cost: 100)
        XCTAssertNil(cache.value(forBlob: "b0"), "the oldest goes first")
        XCTAssertEqual(cache.value(forBlob: "b10"), [10])
        XCTAssertEqual(cache.value(forBlob: "b1"), [1])
        cache.insert([99], forBlob: "huge", cost: 600)
        XCTAssertNil(cache.value(forBlob: "huge"), "a value over a quarter of the budget is not kept")
        // Inserting the same blob again changes nothing (values depend only on the blob).
        cache.insert([42], forBlob: "b10", cost: 100)
        XCTAssertEqual(cache.value(forBlob: "b10"), [10])
        // Second chance: an entry read since it came round stays when newer ones are not read.
        let clock = BlobCache<Int>(budget: 400)
        for i in 0 ..< 4 { clock.insert(i, forBlob: "c\(i)", cost: 100) }
        XCTAssertEqual(clock.value(forBlob: "c0"), 0)
        for i in 4 ..< 8 { clock.insert(i, forBlob: "c\(i)", cost: 100) }
        XCTAssertEqual(clock.value(forBlob: "c0"), 0, "read, so kept")
        XCTAssertNil(clock.value(forBlob: "c1"), "never read, so gone")
        XCTAssertLessThanOrEqual(clock.count, 4)
        // Many more inserts keep the cost bounded.
        for i in 0 ..< 5000 { cache.insert([1], forBlob: "x\(i)", cost: 100) }
        XCTAssertLessThanOrEqual(cache.count, 10)
    }

    func testSummariesOfRecordsMatchTheStoredOnesAndComeFromTheCacheTheSecondTime() async throws {
        let alice = try await account("alice@example.org")
        let mailbox = try await inbox(alice)
        for i in 0 ..< 5 { try await deliver(Self.message("m\(i)"), to: [alice]) }
        let records = try await store.messages(mailboxID: mailbox.id)
        let fresh = try await store.summaries(of: records)
        XCTAssertEqual(fresh.count, 5)
        XCTAssertEqual(store.summaryCache.count, 5)
        for record in records {
            let plain = try await store.summary(messageID: record.id)
            XCTAssertEqual(fresh[record.id], plain)
            XCTAssertEqual(fresh[record.id]?.envelope.subject, "test m\(record.uid - 1)")
        }
        let cached = try await store.summaries(of: records)
        XCTAssertEqual(cached, fresh)
    }

    func testMessageHeadsAreThePrefixAndTheHeaderWithAndWithoutTheCache() async throws {
        let alice = try await account("alice@example.org")
        let bob = try await account("bob@example.org")
        let prefix = Array("Delivered-To: alice@example.org\r\n".utf8)
        let bytes = Self.message("heads", size: 3000)
        try await deliver(bytes, to: [alice], prefix: prefix)
        try await deliver(bytes, to: [bob])
        let aliceRecord = try await store.messages(mailboxID: try await inbox(alice).id)[0]
        let bobRecord = try await store.messages(mailboxID: try await inbox(bob).id)[0]
        let summary = try await store.summaries(of: [aliceRecord])[aliceRecord.id]!
        let headerLength = summary.body.headerLength
        XCTAssertLessThan(headerLength, bytes.count)
        let wanted = [(record: aliceRecord, blobLength: headerLength), (record: bobRecord, blobLength: headerLength)]
        for attempt in 0 ..< 2 {  // the first reads the database, the second the cache
            let heads = try await store.messageHeads(of: wanted)
            XCTAssertEqual(heads[aliceRecord.id], prefix + bytes.prefix(headerLength), "attempt \(attempt)")
            XCTAssertEqual(heads[bobRecord.id], Array(bytes.prefix(headerLength)), "attempt \(attempt)")
            XCTAssertEqual(store.headCache.count, 1, "one blob, one entry")
        }
        let whole = try await store.messageBytes(messageIDs: [aliceRecord.id])
        XCTAssertEqual(whole[aliceRecord.id], prefix + bytes)
    }

    func testObserversGetTheirAccountsChangesAtCommitAndNothingElse() async throws {
        let alice = try await account("alice@example.org")
        let bob = try await account("bob@example.org")
        let aliceInbox = try await inbox(alice)
        let recorder = Recorder()
        store.observeChanges(of: alice.id, by: recorder)
        try await deliver(Self.message("a"), to: [alice, bob])
        // Synchronous: the change is there as soon as the delivery returns.
        XCTAssertEqual(recorder.changes, [.appended(accountID: alice.id, mailboxID: aliceInbox.id, uid: 1, modSeq: 2)])
        let modSeq = try await store.setFlags(mailboxID: aliceInbox.id, uid: 1, flags: [.seen], keywords: [])
        XCTAssertEqual(recorder.changes.last, .flagsChanged(accountID: alice.id, mailboxID: aliceInbox.id, uid: 1, modSeq: modSeq))
        // Moving to another account replaces the first; nil stops.
        store.observeChanges(of: bob.id, by: recorder)
        try await deliver(Self.message("b"), to: [alice])
        XCTAssertEqual(recorder.changes.count, 2)
        try await deliver(Self.message("c"), to: [bob])
        XCTAssertEqual(recorder.changes.count, 3)
        store.observeChanges(of: nil, by: recorder)
        try await deliver(Self.message("d"), to: [bob])
        XCTAssertEqual(recorder.changes.count, 3)
    }

    func testObserverIsHeldWeakly() async throws {
        let alice = try await account("alice@example.org")
        var recorder: Recorder? = Recorder()
        store.observeChanges(of: alice.id, by: recorder!)
        weak var gone = recorder
        recorder = nil
        XCTAssertNil(gone)
        try await deliver(Self.message("a"), to: [alice])  // must not touch the dead observer
    }

    func testFlagCommitsLeaveTheWriterOnSynchronousFull() async throws {
        let alice = try await account("alice@example.org")
        let mailbox = try await inbox(alice)
        try await deliver(Self.message("a"), to: [alice])
        try await store.setFlags(mailboxID: mailbox.id, uid: 1, flags: [.seen], keywords: [])
        _ = try await store.setFlags(mailboxID: mailbox.id, updates: [FlagUpdate(uid: 1, flags: [.flagged], keywords: ["$Work"])])
        let synchronous = try await store.writerPragma("synchronous")
        XCTAssertEqual(synchronous, "2", "deliveries after a flag change must still wait for fsync")
        let record = try await store.message(mailboxID: mailbox.id, uid: 1)
        XCTAssertEqual(record?.flags, [.flagged])
        XCTAssertEqual(record?.keywords, ["$Work"])
        // And the change survives reopening the store.
        try reopen()
        let reopened = try await store.message(mailboxID: mailbox.id, uid: 1)
        XCTAssertEqual(reopened?.flags, [.flagged])
    }

    func testExpungeCommitsWithoutFsyncButLeavesFullAndSurvivesReopening() async throws {
        let alice = try await account("alice@example.org")
        let mailbox = try await inbox(alice)
        for i in 0 ..< 3 { try await deliver(Self.message("m\(i)"), to: [alice]) }
        try await store.expunge(mailboxID: mailbox.id, uids: [2])
        let synchronous = try await store.writerPragma("synchronous")
        XCTAssertEqual(synchronous, "2", "deliveries after an expunge must still wait for fsync")
        try reopen()
        let uids = try await store.uids(mailboxID: mailbox.id)
        XCTAssertEqual(uids, [1, 3])
    }

    func testReadsUseTheStoresOwnConnectionsAndSeeEachCommit() async throws {
        let alice = try await account("alice@example.org")
        let mailbox = try await inbox(alice)
        // Concurrent readers and a writer: every read after a commit sees it.
        let store: SQLiteMailStore = self.store
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0 ..< 6 {
                group.addTask {
                    for _ in 0 ..< 50 { _ = try await store.uids(mailboxID: mailbox.id) }
                }
            }
            for i in 1 ... 10 {
                try await deliver(Self.message("m\(i)"), to: [alice])
                let count = try await store.uids(mailboxID: mailbox.id).count
                XCTAssertEqual(count, i)
                let record = try await store.message(mailboxID: mailbox.id, uid: UInt32(i))
                XCTAssertNotNil(record)
            }
            try await group.waitForAll()
        }
        XCTAssertGreaterThan(store.readers.openCount, 0)
        XCTAssertLessThanOrEqual(store.readers.openCount, store.readers.limit)
        try store.close()
        XCTAssertEqual(store.readers.openCount, 0, "closing the store closed its connections")
        do {
            _ = try await store.uids(mailboxID: mailbox.id)
            XCTFail("a closed store does not read")
        } catch is StoreError {}
        self.store = try SQLiteMailStore(directory: directory)
    }

    func testFailedFlagWriteLeavesNothingAndKeepsFull() async throws {
        let alice = try await account("alice@example.org")
        let mailbox = try await inbox(alice)
        do {
            try await store.setFlags(mailboxID: mailbox.id, uid: 99, flags: [.seen], keywords: [])
            XCTFail("no message 99")
        } catch StoreError.notFound {}
        let synchronous = try await store.writerPragma("synchronous")
        XCTAssertEqual(synchronous, "2")
    }

    func testUIDsComeFromTheStoreInOrderAndAGoneMailboxThrows() async throws {
        let alice = try await account("alice@example.org")
        let mailbox = try await inbox(alice)
        for i in 0 ..< 4 { try await deliver(Self.message("m\(i)"), to: [alice]) }
        try await store.expunge(mailboxID: mailbox.id, uids: [2])
        let uids = try await store.uids(mailboxID: mailbox.id)
        XCTAssertEqual(uids, [1, 3, 4])
        do {
            _ = try await store.uids(mailboxID: 987_654)
            XCTFail("no such mailbox")
        } catch StoreError.notFound {}
    }

    func testStatusCountsMatchTheRecordsAndAGoneMailboxThrows() async throws {
        let alice = try await account("alice@example.org")
        let mailbox = try await inbox(alice)
        for i in 0 ..< 6 { try await deliver(Self.message("m\(i)"), to: [alice]) }
        try await store.setFlags(mailboxID: mailbox.id, uid: 1, flags: [.seen], keywords: [])
        try await store.setFlags(mailboxID: mailbox.id, uid: 2, flags: [.seen, .deleted], keywords: [])
        try await store.setFlags(mailboxID: mailbox.id, uid: 5, flags: [.deleted, .flagged], keywords: ["$Junk"])
        let counts = try await store.messageCounts(mailboxID: mailbox.id, size: true)
        let records = try await store.messages(mailboxID: mailbox.id)
        XCTAssertEqual(counts, MessageCounts(records: records, size: true))
        XCTAssertEqual(counts.unseen, 4)
        XCTAssertEqual(counts.deleted, 2)
        XCTAssertEqual(counts.deletedSize, records[1].size + records[4].size)
        XCTAssertEqual(counts.size, records.reduce(0) { $0 + $1.size })
        let withoutSize = try await store.messageCounts(mailboxID: mailbox.id, size: false)
        XCTAssertNil(withoutSize.size)
        let deleted = try await store.deletedUIDs(mailboxID: mailbox.id)
        XCTAssertEqual(deleted, [2, 5])
        let index = try await store.mailboxIndex(mailboxID: mailbox.id)
        XCTAssertEqual(index, MailboxIndex(records: records))
        XCTAssertEqual(index.firstUnseen, 3)
        XCTAssertEqual(index.keywords, ["$Junk"])
        do {
            _ = try await store.messageCounts(mailboxID: 987_654, size: false)
            XCTFail("no such mailbox")
        } catch StoreError.notFound {}
    }

    /// The partial indexes of migration v8 only help if SQLite picks them: a statement that words
    /// its WHERE clause differently from the index's silently scans the mailbox again.
    func testFlagQueriesUseThePartialIndexes() async throws {
        for (sql, index) in FlagIndexedSQL.plans {
            let plan = try await store.pool.read { db in
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: [1]).map { $0["detail"] as String }.joined(separator: "; ")
            }
            XCTAssertTrue(plan.contains(index), "\(sql): \(plan)")
        }
    }

    func testSummaryCopiesShareOneBoxAndAChangeReplacesIt() throws {
        var summary = MessageSummary(parsing: Array("Subject: one\r\nFrom: a@example.org\r\n\r\nbody\r\n".utf8))
        let copy = summary
        summary.envelope.subject = "two"
        XCTAssertEqual(copy.envelope.subject, "one", "a copy keeps its own value")
        XCTAssertEqual(summary.envelope.subject, "two")
        XCTAssertNotEqual(summary, copy)
        summary.envelope.subject = "one"
        XCTAssertEqual(summary, copy, "equal by value, not by box")
        let back = try JSONDecoder().decode(MessageSummary.self, from: JSONEncoder().encode(copy))
        XCTAssertEqual(back, copy)
        XCTAssertEqual(try SummaryCodec.decode(SummaryCodec.encode(copy)), copy)
    }
}
