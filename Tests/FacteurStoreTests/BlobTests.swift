// Blob storage: content addressing (one copy per distinct message), the inline/file layout,
// spool files taken over, the CRLF-only rule, and garbage collection.

@testable import FacteurStore
import Foundation
import XCTest

final class BlobTests: StoreTestCase {
    func testOneBlobForManyRecipientsAndForRepeatedDeliveries() async throws {
        var accounts: [AccountRecord] = []
        for n in 0 ..< 5 { accounts.append(try await account("user\(n)@example.org")) }
        let bytes = Self.message("shared", size: 10_000)
        let first = try await deliver(bytes, to: accounts)
        XCTAssertEqual(first.outcomes.count, 5)
        XCTAssertEqual(first.blobID, BlobLayout.blobID(of: bytes))
        let second = try await deliver(bytes, to: [accounts[0]])
        XCTAssertEqual(second.blobID, first.blobID)
        let blobs = try await store.rowCount(.blob)
        XCTAssertEqual(blobs, 1, "one stored copy for 6 messages")
        let messages = try await store.rowCount(.message)
        XCTAssertEqual(messages, 6)
        let inline = try await store.blobIsInline(first.blobID)
        XCTAssertEqual(inline, true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.blobPath(first.blobID)))
    }

    func testLargeMessageIsAFileReadBackByteExact() async throws {
        let alice = try await account("alice@example.org")
        let bob = try await account("bob@example.org")
        var bytes = Self.message("large", size: StoreLimits.inlineBlobThreshold + 1)
        bytes += Array("last line without newline".utf8)
        let prefix = Array("Delivered-To: alice@example.org\r\n".utf8)
        let result = try await deliver(bytes, to: [alice, bob], prefix: prefix)
        let inline = try await store.blobIsInline(result.blobID)
        XCTAssertEqual(inline, false)
        let path = store.blobPath(result.blobID)
        XCTAssertTrue(path.hasSuffix("/blobs/\(result.blobID.prefix(2))/\(result.blobID.dropFirst(2).prefix(2))/\(result.blobID)"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data(bytes))
        let mailbox = try await inbox(alice)
        let message = try await store.messages(mailboxID: mailbox.id)[0]
        let served = try await store.messageBytes(messageID: message.id)
        XCTAssertEqual(served, prefix + bytes)
        XCTAssertEqual(message.size, Int64(served.count))
        let tempFiles = try FileManager.default.contentsOfDirectory(atPath: directory + "/blobs/tmp")
        XCTAssertEqual(tempFiles, [])
        XCTAssertEqual(store.stats.blobFilesWritten, 1)
    }

    func testSpoolFilesAreTakenOver() async throws {
        let alice = try await account("alice@example.org")
        let small = Self.message("spooled-small", size: 5_000)
        let smallSpool = try spool(small)
        let smallResult = try await store.deliver(Delivery(message: .file(path: smallSpool, size: small.count),
                                                           recipients: [DeliveryRecipient(accountID: alice.id)]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: smallSpool), "small spool read then deleted")
        let smallInline = try await store.blobIsInline(smallResult.blobID)
        XCTAssertEqual(smallInline, true)

        let large = Self.message("spooled-large", size: StoreLimits.inlineBlobThreshold * 2)
        let largeSpool = try spool(large)
        let largeResult = try await store.deliver(Delivery(message: .file(path: largeSpool, size: large.count),
                                                           recipients: [DeliveryRecipient(accountID: alice.id)]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: largeSpool), "large spool renamed into blobs/")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: store.blobPath(largeResult.blobID))), Data(large))
        let mailbox = try await inbox(alice)
        let messages = try await store.messages(mailboxID: mailbox.id)
        let first = try await store.messageBytes(messageID: messages[0].id)
        let second = try await store.messageBytes(messageID: messages[1].id)
        XCTAssertEqual(first, small)
        XCTAssertEqual(second, large)

        // Refused deliveries still consume the spool.
        let bad = try spool(Array("Subject: bare LF\n\nbody\n".utf8))
        do {
            _ = try await store.deliver(Delivery(message: .file(path: bad, size: 22), recipients: [DeliveryRecipient(accountID: alice.id)]))
            XCTFail("bare LF accepted")
        } catch StoreError.invalid {}
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad))
    }

    func testBareLineEndingsAreRefused() async throws {
        let alice = try await account("alice@example.org")
        for bad in ["Subject: x\n\r\nbody\r\n", "Subject: x\r\n\r\nbo\rdy\r\n", "Subject: x\r\n\r\nbody\r"] {
            do {
                try await deliver(Array(bad.utf8), to: [alice])
                XCTFail("accepted \(bad.debugDescription)")
            } catch StoreError.invalid {}
        }
        do {
            try await deliver(Self.message("p"), to: [alice], prefix: Array("Received: x\n".utf8))
            XCTFail("accepted a prefix with a bare LF")
        } catch StoreError.invalid {}
        let count = try await store.rowCount(.message)
        XCTAssertEqual(count, 0)
        XCTAssertEqual(LineEndings.firstBareLineEnding(in: UnsafeRawBufferPointer(start: nil, count: 0)), nil)
        let ok = Array("a\r\nb\r\n".utf8)
        XCTAssertNil(ok.withUnsafeBytes { LineEndings.firstBareLineEnding(in: $0) })
        XCTAssertEqual(Array("a\r\nb\nc".utf8).withUnsafeBytes { LineEndings.firstBareLineEnding(in: $0) }, 4)
        XCTAssertEqual(Array("a\rb\nc".utf8).withUnsafeBytes { LineEndings.firstBareLineEnding(in: $0) }, 1)
    }

    func testGarbageCollectionRemovesOnlyUnreferencedBlobs() async throws {
        let alice = try await account("alice@example.org")
        let bob = try await account("bob@example.org")
        let kept = try await deliver(Self.message("kept"), to: [alice, bob])
        let dropped = try await deliver(Self.message("dropped"), to: [alice])
        let largeDropped = try await deliver(Self.message("large", size: StoreLimits.inlineBlobThreshold + 100), to: [alice])
        let aliceInbox = try await inbox(alice)

        // Alice expunges everything; bob still references `kept`. The expunge itself removes
        // the inline blob nobody references; the file blob waits for the collector.
        try await store.expunge(mailboxID: aliceInbox.id, uids: [1, 2, 3])
        let droppedAtExpunge = try await store.blobIsInline(dropped.blobID)
        let largeAtExpunge = try await store.blobIsInline(largeDropped.blobID)
        XCTAssertNil(droppedAtExpunge)
        XCTAssertEqual(largeAtExpunge, false)
        let removed = try await store.collectGarbage()
        XCTAssertEqual(removed, 1)
        let keptInline = try await store.blobIsInline(kept.blobID)
        let largeRow = try await store.blobIsInline(largeDropped.blobID)
        XCTAssertEqual(keptInline, true)
        XCTAssertNil(largeRow)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.blobPath(largeDropped.blobID)))
        let bobInbox = try await inbox(bob)
        let bobMessage = try await store.messages(mailboxID: bobInbox.id)[0]
        let bobBytes = try await store.messageBytes(messageID: bobMessage.id)
        XCTAssertEqual(bobBytes, Self.message("kept"))

        // Nothing left to collect; the same bytes can be delivered again after collection.
        let again = try await store.collectGarbage()
        XCTAssertEqual(again, 0)
        try await deliver(Self.message("dropped"), to: [alice])
        let redelivered = try await store.messages(mailboxID: aliceInbox.id)
        let redeliveredBytes = try await store.messageBytes(messageID: redelivered[0].id)
        XCTAssertEqual(redeliveredBytes, Self.message("dropped"))
        try await deliver(Self.message("large", size: StoreLimits.inlineBlobThreshold + 100), to: [alice])
        XCTAssertTrue(FileManager.default.fileExists(atPath: store.blobPath(largeDropped.blobID)))
    }

    func testGarbageCollectionSkipsBlobsInFlightAndYoungOrphans() async throws {
        let alice = try await account("alice@example.org")
        // A file blob: an expunge leaves those to the collector.
        let bytes = Self.message("in-flight", size: StoreLimits.inlineBlobThreshold + 100)
        let result = try await deliver(bytes, to: [alice])
        let mailbox = try await inbox(alice)
        try await store.expunge(mailboxID: mailbox.id, uids: [1])

        // A delivery of the same bytes is in flight: GC must leave the blob alone.
        await store.blobGuard.acquire(result.blobID)
        let skipped = try await store.collectGarbage()
        XCTAssertEqual(skipped, 0)
        let stillThere = try await store.blobIsInline(result.blobID)
        XCTAssertEqual(stillThere, false, "the file row is still there")
        store.blobGuard.release(result.blobID)

        // An orphan file (no row): kept while young, removed once older than the grace period.
        let orphanBytes = Self.message("orphan", size: StoreLimits.inlineBlobThreshold + 1)
        let orphanID = BlobLayout.blobID(of: orphanBytes)
        let written = try orphanBytes.withUnsafeBytes { try store.blobs.writeDurably($0, id: orphanID) }
        XCTAssertTrue(written)
        let young = try await store.collectGarbage()
        XCTAssertEqual(young, 1, "only the expunged row")
        XCTAssertTrue(FileManager.default.fileExists(atPath: store.blobPath(orphanID)))
        let later = Date().addingTimeInterval(StoreLimits.orphanFileGracePeriod + 1)
        let old = try await store.collectGarbage(now: later)
        XCTAssertEqual(old, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.blobPath(orphanID)))
    }

    func testDeliveryWaitsForGarbageCollectionOfItsBlob() async throws {
        let alice = try await account("alice@example.org")
        let bytes = Self.message("condemned", size: StoreLimits.inlineBlobThreshold + 1)
        let id = BlobLayout.blobID(of: bytes)
        XCTAssertEqual(store.blobGuard.condemn([id]), [id])
        let store = self.store!
        let delivery = Task { try await store.deliver(Delivery(message: .memory(bytes), recipients: [DeliveryRecipient(accountID: alice.id)])) }
        try await Task.sleep(nanoseconds: 50_000_000)
        let messages = try await store.rowCount(.message)
        XCTAssertEqual(messages, 0, "the delivery waits while its blob is condemned")
        store.blobGuard.pardon([id])
        let result = try await delivery.value
        XCTAssertEqual(result.blobID, id)
        XCTAssertTrue(FileManager.default.fileExists(atPath: store.blobPath(id)))
    }
}
