// Group commit: concurrent deliveries share transactions, each keeps its own result, a failing
// delivery does not fail the others, a failing commit makes nothing visible.

@testable import FacteurStore
import Foundation
import XCTest

final class GroupCommitTests: StoreTestCase {
    func testConcurrentDeliveriesShareCommits() async throws {
        let alice = try await account("alice@example.org")
        let bob = try await account("bob@example.org")
        let store = self.store!
        let count = 200
        let results = try await withThrowingTaskGroup(of: DeliveryResult.self) { group in
            for n in 0 ..< count {
                group.addTask {
                    try await store.deliver(Delivery(message: .memory(Self.message("c\(n)", size: 2_000)),
                                                     recipients: [DeliveryRecipient(accountID: (n % 2 == 0 ? alice : bob).id)]))
                }
            }
            var all: [DeliveryResult] = []
            for try await result in group { all.append(result) }
            return all
        }
        XCTAssertEqual(results.count, count)
        let aliceInbox = try await inbox(alice)
        let bobInbox = try await inbox(bob)
        let aliceMessages = try await store.messages(mailboxID: aliceInbox.id)
        let bobMessages = try await store.messages(mailboxID: bobInbox.id)
        XCTAssertEqual(aliceMessages.map(\.uid), Array(1 ... 100))
        XCTAssertEqual(bobMessages.map(\.uid), Array(1 ... 100))
        // Every result names a UID that holds its own message.
        var byUID: [Int64: Set<UInt32>] = [:]
        for result in results {
            guard case .stored(let mailbox, let uid)? = result.outcomes.first else { return XCTFail("\(result)") }
            XCTAssertTrue(byUID[mailbox, default: []].insert(uid).inserted, "UID handed out twice")
        }
        let modSeqs = aliceMessages.map(\.modSeq)
        XCTAssertEqual(modSeqs, modSeqs.sorted())
        XCTAssertEqual(Set(modSeqs).count, modSeqs.count)
        let stats = store.stats
        print("group commit: \(stats.deliveries) deliveries in \(stats.commits) commits")
        XCTAssertEqual(stats.deliveries, count)
        XCTAssertLessThan(stats.commits, stats.deliveries)
    }

    func testOneFailingDeliveryDoesNotFailItsBatch() async throws {
        let alice = try await account("alice@example.org")
        let poison = Self.message("poison")
        let poisonID = BlobLayout.blobID(of: poison)
        store.faultInjection.withLock {
            $0 = { blobID in
                if blobID == poisonID { throw StoreError.writeFailed("injected") }
            }
        }
        let store = self.store!
        let outcomes = await withTaskGroup(of: (Bool, Result<DeliveryResult, any Error>).self) { group in
            for n in 0 ..< 40 {
                let bytes = n == 20 ? poison : Self.message("ok\(n)")
                group.addTask {
                    do {
                        return (n == 20, .success(try await store.deliver(Delivery(message: .memory(bytes),
                                                                                   recipients: [DeliveryRecipient(accountID: alice.id)]))))
                    } catch {
                        return (n == 20, .failure(error))
                    }
                }
            }
            var all: [(Bool, Result<DeliveryResult, any Error>)] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        for (isPoison, result) in outcomes {
            switch (isPoison, result) {
            case (true, .failure(let error)): XCTAssertEqual(error as? StoreError, .writeFailed("injected"))
            case (false, .success): break
            default: XCTFail("poison \(isPoison): \(result)")
            }
        }
        let messages = try await store.rowCount(.message)
        XCTAssertEqual(messages, 39)
        let poisonRow = try await store.blobIsInline(poisonID)
        XCTAssertNil(poisonRow, "the failed delivery left nothing behind")
        let usage = try await store.account(id: alice.id)?.usage.messages
        XCTAssertEqual(usage, 39)
        let uids = try await store.messages(mailboxID: try await inbox(alice).id).map(\.uid)
        XCTAssertEqual(uids, Array(1 ... 39), "no gap: the rolled-back UID was never visible")
    }

    func testFailingCommitMakesNothingVisible() async throws {
        let alice = try await account("alice@example.org")
        store.faultInjection.withLock {
            $0 = { blobID in
                if blobID == nil { throw StoreError.writeFailed("disk full (injected)") }
            }
        }
        let feed = store.changes()
        do {
            try await deliver(Self.message("lost"), to: [alice])
            XCTFail("commit failure not reported")
        } catch let error as StoreError {
            guard case .writeFailed = error else { return XCTFail("\(error)") }
        }
        let messages = try await store.rowCount(.message)
        let blobs = try await store.rowCount(.blob)
        XCTAssertEqual(messages, 0)
        XCTAssertEqual(blobs, 0)
        let mailbox = try await inbox(alice)
        XCTAssertEqual(mailbox.uidNext, 1)
        XCTAssertEqual(mailbox.highestModSeq, 1)
        let usage = try await store.account(id: alice.id)?.usage
        XCTAssertEqual(usage, Usage())

        // The store keeps working once the fault clears; the feed never saw the lost message.
        store.faultInjection.withLock { $0 = nil }
        let result = try await deliver(Self.message("kept"), to: [alice])
        XCTAssertEqual(storedUID(result.outcomes[0]), 1)
        var iterator = feed.makeAsyncIterator()
        let first = await iterator.next()
        XCTAssertEqual(first, .appended(accountID: alice.id, mailboxID: mailbox.id, uid: 1, modSeq: 2))
    }

    func testFullDatabaseSurfacesAsWriteFailedAndCommitsNothing() async throws {
        let alice = try await account("alice@example.org")
        try await deliver(Self.message("before"), to: [alice])
        try await store.limitDatabaseGrowth(extraPages: 0)  // SQLITE_FULL from now on
        let store = self.store!
        let failures = await withTaskGroup(of: StoreError?.self) { group in
            for n in 0 ..< 20 {
                group.addTask {
                    do {
                        _ = try await store.deliver(Delivery(message: .memory(Self.message("full\(n)", size: 10_000)),
                                                             recipients: [DeliveryRecipient(accountID: alice.id)]))
                        return nil
                    } catch {
                        return error as? StoreError
                    }
                }
            }
            var all: [StoreError?] = []
            for await failure in group { all.append(failure) }
            return all
        }
        for failure in failures {
            guard case .writeFailed? = failure else { return XCTFail("expected writeFailed, got \(String(describing: failure))") }
        }
        let messages = try await store.rowCount(.message)
        let blobs = try await store.rowCount(.blob)
        XCTAssertEqual(messages, 1)
        XCTAssertEqual(blobs, 1)
        let mailbox = try await inbox(alice)
        XCTAssertEqual(mailbox.uidNext, 2)
        XCTAssertEqual(mailbox.messageCount, 1)

        // Room again: delivery resumes where it stopped.
        try await store.limitDatabaseGrowth(extraPages: 1_000_000)
        let result = try await deliver(Self.message("after", size: 10_000), to: [alice])
        XCTAssertEqual(storedUID(result.outcomes[0]), 2)
    }

    func testRealDiskErrorSurfacesAsWriteFailed() async throws {
        let alice = try await account("alice@example.org")
        // Make the blob directory unusable: a large blob cannot be written.
        let blobRoot = directory + "/blobs"
        try FileManager.default.removeItem(atPath: blobRoot)
        try Data().write(to: URL(fileURLWithPath: blobRoot))
        do {
            try await deliver(Self.message("large", size: StoreLimits.inlineBlobThreshold + 1), to: [alice])
            XCTFail("write into a file-as-directory succeeded")
        } catch let error as StoreError {
            guard case .writeFailed = error else { return XCTFail("\(error)") }
        }
        let messages = try await store.rowCount(.message)
        XCTAssertEqual(messages, 0)
    }
}
