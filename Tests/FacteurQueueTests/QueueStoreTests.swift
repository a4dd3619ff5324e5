// The queue's persistence in SQLiteMailStore: atomic enqueue, claims, state transitions,
// the CLI operations (list/show/retry/bounce/delete), garbage collection, restart.

import FacteurStore
import Foundation
import XCTest
@testable import FacteurQueue

final class QueueStoreTests: XCTestCase {
    var directory = ""
    var store: SQLiteMailStore!

    override func setUp() async throws {
        directory = temporaryDirectory("queue-store")
        store = try SQLiteMailStore(directory: directory)
    }

    override func tearDown() async throws {
        try? store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    let message = crlf("From: a@example.net\nTo: b@example.org\nSubject: hi\n\nbody\n")

    func submission(_ recipients: [String], sender: String = "a@example.net", bytes: [UInt8]? = nil) -> QueueSubmission {
        QueueSubmission(sender: sender, recipients: recipients.map { QueueRecipientInput(address: $0) },
                        message: .memory(bytes ?? message), envelopeID: "env-1", ret: .headers)
    }

    /// Concurrent submissions share the group commit (one fsync for many), as deliveries do.
    func testConcurrentEnqueuesShareCommits() async throws {
        let store = self.store!
        let before = store.stats.commits
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<64 {
                group.addTask {
                    _ = try await store.enqueue(QueueSubmission(
                        sender: "a@example.org", recipients: [QueueRecipientInput(address: "r\(i)@example.com")],
                        message: .memory(Array("Subject: \(i)\r\n\r\nbody \(i)\r\n".utf8))))
                }
            }
            try await group.waitForAll()
        }
        let queued = try await store.queuedMessages()
        XCTAssertEqual(queued.count, 64)
        XCTAssertEqual(Set(queued.flatMap { $0.recipients.map(\.address) }).count, 64, "each submission kept its own rows")
        let commits = store.stats.commits - before
        XCTAssertGreaterThan(commits, 0)
        XCTAssertLessThan(commits, 64, "several enqueues per transaction")
    }

    func testEnqueueKeepsEnvelopeAndRecipientsPending() async throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var input = submission(["b@example.org", "c@Example.COM"])
        input.recipients[0].notify = [.failure, .delay]
        input.recipients[0].originalRecipient = "rfc822;b@example.org"
        let queued = try await store.enqueue(input, now: now, times: QueueTimes(lifetime: 100, delayWarning: 10))
        XCTAssertEqual(queued.sender, "a@example.net")
        XCTAssertEqual(queued.envelopeID, "env-1")
        XCTAssertEqual(queued.ret, .headers)
        XCTAssertEqual(queued.expires, now.addingTimeInterval(100))
        XCTAssertEqual(queued.warnAt, now.addingTimeInterval(10))
        XCTAssertFalse(queued.has8BitData)
        XCTAssertEqual(queued.recipients.map(\.state), [.pending, .pending])
        XCTAssertEqual(queued.recipients.map(\.domain), ["example.org", "example.com"])
        XCTAssertEqual(queued.recipients[0].notify, [.failure, .delay])
        XCTAssertEqual(queued.recipients[0].originalRecipient, "rfc822;b@example.org")
        let bytes = try await store.queuedMessageBytes(blobID: queued.blobID)
        XCTAssertEqual(bytes, message)
        let listed = try await store.queuedMessages()
        XCTAssertEqual(listed.map(\.id), [queued.id])
    }

    func testHeaderPrefixIsPartOfTheQueuedBytes() async throws {
        var input = submission(["b@example.org"])
        input.headerPrefix = crlf("Received: from client by us\n")
        let queued = try await store.enqueue(input)
        let bytes = try await store.queuedMessageBytes(blobID: queued.blobID)
        XCTAssertEqual(bytes, crlf("Received: from client by us\n") + message)
        input.headerPrefix = Array("bare\n".utf8)
        do {
            _ = try await store.enqueue(input)
            XCTFail("a prefix with a bare LF was accepted")
        } catch {}
    }

    func testEnqueueRefusesBareLineFeedsAndEmptyRecipientLists() async throws {
        do {
            _ = try await store.enqueue(submission(["b@example.org"], bytes: Array("a\nb".utf8)))
            XCTFail("bare LF accepted")
        } catch let error as StoreError {
            guard case .invalid = error else { return XCTFail("\(error)") }
        }
        do {
            _ = try await store.enqueue(submission([]))
            XCTFail("no recipients accepted")
        } catch {}
        let listed = try await store.queuedMessages()
        XCTAssertTrue(listed.isEmpty, "nothing half-queued")
    }

    func testLargeMessagesAreBlobFilesAndEightBitIsNoted() async throws {
        let big = crlf("Subject: big\n\n" + String(repeating: "é line of text\n", count: 30_000))
        let queued = try await store.enqueue(submission(["b@example.org"], bytes: big))
        XCTAssertTrue(queued.has8BitData)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(directory)/blobs/\(queued.blobID.prefix(2))"))
        let bytes = try await store.queuedMessageBytes(blobID: queued.blobID)
        XCTAssertEqual(bytes, big)
    }

    func testAClaimIsExclusiveUntilReleasedOrExpired() async throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        _ = try await store.enqueue(submission(["b@example.org", "c@example.org", "d@example.com"]), now: now)
        let first = try await store.claimQueueWork(now: now, owner: "w1", lease: 60, limit: 10)
        XCTAssertEqual(first.count, 2, "one claim per (message, domain)")
        XCTAssertEqual(Set(first.map(\.domain)), ["example.org", "example.com"])
        XCTAssertEqual(first.first { $0.domain == "example.org" }?.recipients.count, 2)
        let second = try await store.claimQueueWork(now: now, owner: "w2", lease: 60, limit: 10)
        XCTAssertTrue(second.isEmpty, "a held recipient is never handed to a second worker")
        let afterLease = try await store.claimQueueWork(now: now.addingTimeInterval(61), owner: "w2", lease: 60, limit: 10)
        XCTAssertEqual(afterLease.count, 2, "a crashed worker's lease ends")
        try await store.releaseQueueClaims()
        let afterRelease = try await store.claimQueueWork(now: now, owner: "w3", lease: 60, limit: 10)
        XCTAssertEqual(afterRelease.count, 2)
    }

    func testOutcomesMoveRecipientsAndFinishedMessagesGo() async throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let queued = try await store.enqueue(submission(["b@example.org", "c@example.org"]), now: now)
        let claim = try await store.claimQueueWork(now: now, owner: "w", lease: 60, limit: 10)[0]
        let later = now.addingTimeInterval(300)
        try await store.recordQueueAttempt(owner: "w", [
            (claim.recipients[0].id, .delivered(reply: "250 2.0.0 ok", host: "mx")),
            (claim.recipients[1].id, .deferred(reply: "451 4.7.1 greylisted", host: "mx", nextAttempt: later)),
        ], now: now)
        var shown = try await store.queuedMessage(id: queued.id)
        XCTAssertEqual(shown?.recipients.map(\.state), [.delivered, .deferred])
        XCTAssertEqual(shown?.recipients[1].attempts, 1)
        XCTAssertEqual(shown?.recipients[1].lastReply, "451 4.7.1 greylisted")
        XCTAssertEqual(shown?.recipients[1].remoteHost, "mx")
        XCTAssertEqual(shown?.recipients[1].nextAttempt, later)
        let early = try await store.claimQueueWork(now: now.addingTimeInterval(10), owner: "w", lease: 60, limit: 10)
        XCTAssertTrue(early.isEmpty, "not due before nextAttempt")
        // A stale owner cannot overwrite.
        try await store.recordQueueAttempt(owner: "other", [(claim.recipients[1].id, .failed(reply: "550 x", host: nil))], now: now)
        shown = try await store.queuedMessage(id: queued.id)
        XCTAssertEqual(shown?.recipients[1].state, .deferred)

        let retry = try await store.claimQueueWork(now: later, owner: "w", lease: 60, limit: 10)
        XCTAssertEqual(retry.first?.recipients.map(\.address), ["c@example.org"])
        try await store.recordQueueAttempt(owner: "w", [(retry[0].recipients[0].id, .delivered(reply: "250 ok", host: "mx"))], now: later)
        let removed = try await store.removeFinishedQueueMessages()
        XCTAssertEqual(removed, [queued.id])
        let gone = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(gone)
    }

    func testFailedRecipientsStayUntilReported() async throws {
        let queued = try await store.enqueue(submission(["b@example.org"]))
        let claim = try await store.claimQueueWork(now: Date(), owner: "w", lease: 60, limit: 10)[0]
        try await store.recordQueueAttempt(owner: "w", [(claim.recipients[0].id, .failed(reply: "550 5.1.1 no", host: "mx"))], now: Date())
        var removed = try await store.removeFinishedQueueMessages()
        XCTAssertEqual(removed, [], "the DSN is still owed")
        let owed = try await store.unreportedFailures()
        XCTAssertEqual(owed.map(\.id), [queued.id])
        try await store.markQueueRecipientsReported(claim.recipients.map(\.id))
        removed = try await store.removeFinishedQueueMessages()
        XCTAssertEqual(removed, [queued.id])
    }

    func testRetryBounceDelete() async throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let a = try await store.enqueue(submission(["b@example.org"]), now: now)
        let b = try await store.enqueue(submission(["c@example.org"]), now: now)
        for claim in try await store.claimQueueWork(now: now, owner: "w", lease: 60, limit: 10) {
            try await store.recordQueueAttempt(owner: "w", claim.recipients.map {
                ($0.id, .deferred(reply: "421 busy", host: nil, nextAttempt: now.addingTimeInterval(3600)))
            }, now: now)
        }
        let changed = try await store.retryQueued(id: a.id, now: now.addingTimeInterval(1))
        XCTAssertEqual(changed, 1)
        let due = try await store.claimQueueWork(now: now.addingTimeInterval(1), owner: "w", lease: 60, limit: 10)
        XCTAssertEqual(due.map(\.message.id), [a.id])
        try await store.releaseQueueClaims()
        let all = try await store.retryQueued(id: nil, now: now.addingTimeInterval(2))
        XCTAssertEqual(all, 2)

        let bounced = try await store.bounceQueued(id: b.id)
        XCTAssertEqual(bounced, 1)
        let shown = try await store.queuedMessage(id: b.id)
        XCTAssertEqual(shown?.recipients.first?.state, .failed)
        XCTAssertTrue(shown?.recipients.first?.lastReply?.contains("administrator") == true)

        try await store.deleteQueued(id: a.id)
        let deleted = try await store.queuedMessage(id: a.id)
        XCTAssertNil(deleted)
        do {
            try await store.deleteQueued(id: a.id)
            XCTFail("deleted twice")
        } catch let error as StoreError {
            guard case .notFound = error else { return XCTFail("\(error)") }
        }
    }

    func testGarbageCollectionKeepsQueuedBlobs() async throws {
        let big = crlf("Subject: big\n\n" + String(repeating: "x line of text\n", count: 30_000))
        let queued = try await store.enqueue(submission(["b@example.org"], bytes: big))
        let small = try await store.enqueue(submission(["b@example.org"]))
        let removedWhileQueued = try await store.collectGarbage()
        XCTAssertEqual(removedWhileQueued, 0)
        let stillThere = try await store.queuedMessageBytes(blobID: queued.blobID)
        XCTAssertEqual(stillThere, big)
        try await store.deleteQueued(id: queued.id)
        try await store.deleteQueued(id: small.id)
        let removed = try await store.collectGarbage()
        XCTAssertEqual(removed, 2, "unreferenced once dequeued")
    }

    func testQueueSurvivesReopening() async throws {
        let queued = try await store.enqueue(submission(["b@example.org"]))
        _ = try await store.claimQueueWork(now: Date(), owner: "dead", lease: 3600, limit: 10)
        try store.close()
        store = try SQLiteMailStore(directory: directory)
        let listed = try await store.queuedMessages()
        XCTAssertEqual(listed.map(\.id), [queued.id])
        try await store.releaseQueueClaims()
        let claims = try await store.claimQueueWork(now: Date(), owner: "alive", lease: 60, limit: 10)
        XCTAssertEqual(claims.count, 1, "resumed after a restart")
    }

    func testNotifyParameterRoundTrip() {
        XCTAssertEqual(DSNNotify(parameterValue: "NEVER"), [])
        XCTAssertEqual(DSNNotify(parameterValue: "success,DELAY"), [.success, .delay])
        XCTAssertNil(DSNNotify(parameterValue: "NEVER,SUCCESS"))
        XCTAssertNil(DSNNotify(parameterValue: ""))
        XCTAssertEqual(DSNNotify([.failure, .delay]).parameterValue, "FAILURE,DELAY")
        XCTAssertEqual(DSNNotify.never.parameterValue, "NEVER")
    }
}

final class QueueListingTests: XCTestCase {
    func testListAndShowCarryStateAttemptsNextAttemptAndReply() async throws {
        let directory = temporaryDirectory("listing")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteMailStore(directory: directory)
        defer { try? store.close() }
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var input = QueueSubmission(sender: "a@example.net", recipients: [QueueRecipientInput(address: "b@example.org"),
                                                                        QueueRecipientInput(address: "c@example.org")],
                                    message: .memory(crlf("Subject: s\n\nx\n")), envelopeID: "E9")
        input.recipients[1].notify = [.failure]
        let queued = try await store.enqueue(input, now: now)
        let claim = try await store.claimQueueWork(now: now, owner: "w", lease: 60, limit: 1)[0]
        try await store.recordQueueAttempt(owner: "w", [
            (claim.recipients[0].id, .deferred(reply: "451 4.7.1 greylisted\u{1b}[31m", host: "mx.example.org",
                                               nextAttempt: now.addingTimeInterval(600))),
            (claim.recipients[1].id, .delivered(reply: "250 2.0.0 ok", host: "mx.example.org")),
        ], now: now)
        let messages = try await store.queuedMessages()
        let list = QueueListing.list(messages, now: now.addingTimeInterval(7200))
        XCTAssertTrue(list.contains("\(queued.id) "))
        XCTAssertTrue(list.contains("2h0m"))
        XCTAssertTrue(list.contains("b@example.org (deferred), c@example.org (delivered)"))
        XCTAssertTrue(list.contains("1 message(s), 1 recipient(s) waiting"))
        let shown = QueueListing.show(messages[0], now: now)
        XCTAssertTrue(shown.contains("<b@example.org>: deferred, 1 attempt(s), next Fri, 15 Jan 2027 08:10:00 +0000"), shown)
        XCTAssertTrue(shown.contains("last reply from mx.example.org: 451 4.7.1 greylisted?[31m"), "no escape reaches the terminal")
        XCTAssertTrue(shown.contains("ENVID:       E9"))
        XCTAssertTrue(shown.contains("NOTIFY=FAILURE"))
        XCTAssertEqual(QueueListing.list([]), "The queue is empty.\n")
    }
}
