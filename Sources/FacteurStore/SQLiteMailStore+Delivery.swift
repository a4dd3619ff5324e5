// Delivery into SQLiteMailStore with group commit: concurrent `deliver` calls share write
// transactions, so one WAL fsync acknowledges many messages (DESIGN.md, Durability). Each
// delivery still gets its own result: a failing one is rolled back to its savepoint alone.
// IMAP invariants kept here: RFC 9051 §2.3.1.1 (UIDs strictly ascending, never reused),
// RFC 7162 §3.1 (every append takes a new, higher MODSEQ).

import Dispatch
import FacteurMIME
import Foundation
import GRDB

/// A delivery ready to commit: validated, hashed, parsed, its large blob already durable.
struct PreparedDelivery: Sendable {
    var blobID: String
    var blobSize: Int64
    /// The bytes when they go inside SQLite; nil when they are a file under blobs/.
    var inlineData: [UInt8]?
    var summary: [UInt8]
    var recipients: [DeliveryRecipient]
    var internalDate: Double
    /// The text for the full-text index, extracted here so that the commit only inserts it.
    var fullText: FullTextDocument? = nil
}

struct PendingDelivery: Sendable {
    var delivery: PreparedDelivery
    var continuation: CheckedContinuation<DeliveryResult, any Error>
}

/// Another write that shares the group commit (queueing a message for outbound delivery):
/// `work` runs inside the batch's transaction under its own savepoint, `finish` after the commit.
final class GroupWriteJob: @unchecked Sendable {
    let work: (Database) throws -> Void
    let finish: ((any Error)?) -> Void
    init(work: @escaping (Database) throws -> Void, finish: @escaping ((any Error)?) -> Void) {
        self.work = work
        self.finish = finish
    }
}

enum PendingWrite: Sendable {
    case delivery(PendingDelivery)
    case job(GroupWriteJob)

    func fail(_ error: any Error) {
        switch self {
        case .delivery(let pending): pending.continuation.resume(throwing: error)
        case .job(let job): job.finish(error)
        }
    }
}

/// The group-commit queue. While a transaction runs, new deliveries wait here; the next
/// transaction takes all of them (up to `StoreLimits.maxDeliveriesPerCommit`). Nothing sleeps:
/// the batch is simply whatever arrived during the previous commit's fsync.
final class DeliveryQueue: @unchecked Sendable {
    let dispatch = DispatchQueue(label: "facteur.store.group-commit")
    private let lock = NSLock()
    private var pending: [PendingWrite] = []
    private var running = false
    private var closed = false

    /// Queues a delivery (or another write); true when the caller must start the drain loop.
    func enqueue(_ write: PendingWrite) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if closed {
            write.fail(StoreError.writeFailed("the store is closed"))
            return false
        }
        pending.append(write)
        if running { return false }
        running = true
        return true
    }

    /// The next batch, or nil (and the loop stops) when nothing waits.
    func nextBatch() -> [PendingWrite]? {
        lock.lock()
        defer { lock.unlock() }
        guard !pending.isEmpty else {
            running = false
            return nil
        }
        let count = min(pending.count, StoreLimits.maxDeliveriesPerCommit)
        let batch = Array(pending.prefix(count))
        pending.removeFirst(count)
        return batch
    }

    /// Refuses new deliveries and waits until the ones queued are committed.
    func shutDown() {
        lock.withLock { closed = true }
        dispatch.sync {}
    }
}

/// The blob ids deliveries in flight are about to reference, and those garbage collection is
/// deleting. A delivery never proceeds with a condemned blob (it waits for GC to finish, then
/// writes the blob anew), and GC never condemns a blob in flight.
final class BlobGuard: @unchecked Sendable {
    private let lock = NSLock()
    private var inFlight: [String: Int] = [:]
    private var condemned = Set<String>()
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire(_ id: String) async {
        while true {
            let blocked: Bool = lock.withLock {
                if condemned.contains(id) { return true }
                inFlight[id, default: 0] += 1
                return false
            }
            if !blocked { return }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                lock.lock()
                if condemned.contains(id) {
                    waiters.append(continuation)
                    lock.unlock()
                } else {
                    lock.unlock()
                    continuation.resume()
                }
            }
        }
    }

    func release(_ id: String) {
        lock.withLock {
            if let n = inFlight[id], n > 1 { inFlight[id] = n - 1 } else { inFlight.removeValue(forKey: id) }
        }
    }

    /// Marks the ids not in flight as condemned and returns them.
    func condemn(_ ids: [String]) -> [String] {
        lock.withLock {
            let free = ids.filter { inFlight[$0] == nil && !condemned.contains($0) }
            condemned.formUnion(free)
            return free
        }
    }

    func pardon(_ ids: [String]) {
        guard !ids.isEmpty else { return }
        let wake: [CheckedContinuation<Void, Never>] = lock.withLock {
            condemned.subtract(ids)
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in wake { waiter.resume() }
    }
}

extension SQLiteMailStore {
    /// Stores one message for its recipients. Returns once the blob is durable and the rows are
    /// committed. A `.file` spool is taken over whatever the outcome (renamed into blobs/ when
    /// large, read then deleted when small). Bytes must use CRLF line endings only: a bare CR or
    /// LF is refused with `StoreError.invalid` (see `LineEndings`).
    public func deliver(_ delivery: Delivery) async throws -> DeliveryResult {
        var spool: String?
        if case .file(let path, _) = delivery.message { spool = path }
        defer { if let spool { unlink(spool) } }

        guard !delivery.recipients.isEmpty, delivery.recipients.count <= StoreLimits.maxRecipientsPerDelivery else {
            throw StoreError.invalid("a delivery needs 1 to \(StoreLimits.maxRecipientsPerDelivery) recipients")
        }
        var recipients = delivery.recipients
        for i in recipients.indices {
            recipients[i].mailbox = try StoreNames.mailboxName(recipients[i].mailbox)
            recipients[i].keywords = try StoreNames.keywords(recipients[i].keywords)
            guard recipients[i].headerPrefix.count <= StoreLimits.maxHeaderPrefixLength else {
                throw StoreError.invalid("header prefix longer than \(StoreLimits.maxHeaderPrefixLength) octets")
            }
            let prefix = recipients[i].headerPrefix
            if !prefix.isEmpty {
                try LineEndings.check(prefix, what: "header prefix")
                guard prefix.count >= 2, prefix[prefix.count - 2] == LineEndings.cr, prefix[prefix.count - 1] == LineEndings.lf else {
                    throw StoreError.invalid("header prefix must end with CRLF")
                }
            }
        }
        let internalDate = delivery.internalDate.timeIntervalSince1970

        // Read what must be read, hash, parse: on the caller's task, in parallel with the
        // commits of others.
        var prepared: PreparedDelivery
        var largeSource: LargeSource?
        switch delivery.message {
        case .memory(let bytes):
            prepared = try Self.prepare(bytes, recipients: recipients, internalDate: internalDate)
            if bytes.count > StoreLimits.inlineBlobThreshold {
                largeSource = .memory(bytes)
                prepared.inlineData = nil
            }
        case .file(let path, _):
            let size = Self.fileSize(path)
            if let size, size <= StoreLimits.inlineBlobThreshold {
                let bytes = try BlobFiles.read(path: path)
                prepared = try Self.prepare(bytes, recipients: recipients, internalDate: internalDate)
            } else {
                let data: Data
                do {
                    data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
                } catch {
                    throw StoreError.notFound("spool file \(path): \(error)")
                }
                try LineEndings.check(data, what: "message")
                let parsed = MessageSummary(parsing: data)
                prepared = PreparedDelivery(blobID: BlobLayout.blobID(of: data), blobSize: Int64(data.count), inlineData: nil,
                                            summary: SummaryCodec.encode(parsed), recipients: recipients, internalDate: internalDate,
                                            fullText: nil)
                largeSource = .spool(path)
            }
        }

        await blobGuard.acquire(prepared.blobID)
        defer { blobGuard.release(prepared.blobID) }

        if let largeSource {
            let id = prepared.blobID
            let files = blobs
            let written = try await Self.onIOThread {
                switch largeSource {
                case .memory(let bytes): return try bytes.withUnsafeBytes { try files.writeDurably($0, id: id) }
                case .spool(let path): return try files.adoptDurably(spool: path, id: id)
                }
            }
            if case .spool = largeSource { spool = nil }
            if written { counters.withLock { $0.blobFilesWritten += 1 } }
        }

        let ready = prepared
        return try await withCheckedThrowingContinuation { continuation in
            if deliveryQueue.enqueue(.delivery(PendingDelivery(delivery: ready, continuation: continuation))) {
                deliveryQueue.dispatch.async { self.drainDeliveries() }
            }
        }
    }

    private enum LargeSource: Sendable {
        case memory([UInt8])
        case spool(String)
    }

    private static func prepare(_ bytes: [UInt8], recipients: [DeliveryRecipient], internalDate: Double) throws
        -> PreparedDelivery {
        try LineEndings.check(bytes, what: "message")
        let parsed = MessageSummary(parsing: bytes)
        return PreparedDelivery(blobID: BlobLayout.blobID(of: bytes), blobSize: Int64(bytes.count), inlineData: bytes,
                                summary: SummaryCodec.encode(parsed), recipients: recipients, internalDate: internalDate,
                                fullText: nil)
    }

    private static func fileSize(_ path: String) -> Int? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int(info.st_size)
    }

    /// Blocking file work (fsync) off Swift's cooperative threads.
    private static func onIOThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            DispatchQueue.global().async {
                do {
                    continuation.resume(returning: try work())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    // MARK: Group commit

    /// Runs on `deliveryQueue.dispatch`: one transaction per batch until nothing waits.
    func drainDeliveries() {
        while let batch = deliveryQueue.nextBatch() {
            commit(batch)
        }
    }

    /// Runs `updates` inside the next group commit (one fsync shared with concurrent deliveries
    /// and other group writes) and returns its result once committed.
    func groupWrite<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let box = NIOLockedResult<T>()
            let job = GroupWriteJob(work: { db in box.set(try updates(db)) }, finish: { error in
                if let error { continuation.resume(throwing: error) } else if let value = box.get() {
                    continuation.resume(returning: value)
                } else {
                    continuation.resume(throwing: StoreError.writeFailed("group write produced no result"))
                }
            })
            if deliveryQueue.enqueue(.job(job)) {
                deliveryQueue.dispatch.async { self.drainDeliveries() }
            }
        }
    }

    private func commit(_ batch: [PendingWrite]) {
        var results = [Result<DeliveryResult, any Error>](repeating: .failure(StoreError.writeFailed("not run")),
                                                           count: batch.count)
        var stored = 0
        var deliveries = 0
        let fault = faultInjection.withLock { $0 }
        do {
            try pool.write { db in
                stored = 0
                deliveries = 0
                var changes: [MailboxChange] = []
                let savepoint = try db.cachedStatement(sql: "SAVEPOINT delivery")
                let release = try db.cachedStatement(sql: "RELEASE delivery")
                let rollback = try db.cachedStatement(sql: "ROLLBACK TO delivery")
                for (index, pending) in batch.enumerated() {
                    var local: [MailboxChange] = []
                    try savepoint.execute()
                    do {
                        switch pending {
                        case .delivery(let item):
                            let outcomes = try Self.store(item.delivery, in: db, changes: &local)
                            try fault?(item.delivery.blobID)
                            results[index] = .success(DeliveryResult(outcomes: outcomes, blobID: item.delivery.blobID))
                            deliveries += 1
                        case .job(let job):
                            try job.work(db)
                            results[index] = .success(DeliveryResult(outcomes: [], blobID: ""))
                        }
                        try release.execute()
                        changes += local
                        stored += local.count
                    } catch {
                        let failure = Self.storeError(error, writing: true)
                        do {
                            try rollback.execute()
                            try release.execute()
                        } catch {
                            // SQLite aborted the whole transaction (SQLITE_FULL, I/O error):
                            // the batch fails, with the delivery's error as the cause.
                            throw failure
                        }
                        results[index] = .failure(failure)
                    }
                }
                try fault?(nil)
                publishOnCommit(db, changes)
            }
            counters.withLock {
                $0.commits += 1
                $0.deliveries += deliveries
                $0.messagesStored += stored
            }
        } catch {
            // The transaction rolled back: nothing of this batch is visible.
            let failure = Self.storeError(error, writing: true)
            logger.error("group commit of \(batch.count) writes failed: \(failure)")
            for index in results.indices { results[index] = .failure(failure) }
        }
        for (pending, result) in zip(batch, results) {
            switch pending {
            case .delivery(let item): item.continuation.resume(with: result)
            case .job(let job):
                if case .failure(let error) = result { job.finish(error) } else { job.finish(nil) }
            }
        }
    }

    /// Writes one delivery's rows: the blob once, then a message per recipient that has room.
    private static func store(_ delivery: PreparedDelivery, in db: Database, changes: inout [MailboxChange]) throws
        -> [RecipientOutcome] {
        var outcomes: [RecipientOutcome] = []
        outcomes.reserveCapacity(delivery.recipients.count)
        var blobWritten = false
        let lookup = try db.cachedStatement(sql: """
            SELECT m.id, m.uidNext, m.highestModSeq, a.quotaBytes, a.quotaMessages, a.usageBytes, a.usageMessages
            FROM mailbox m JOIN account a ON a.id = m.accountID WHERE m.accountID = ? AND m.name = ?
            """)
        let insertMessage = try db.cachedStatement(sql: """
            INSERT INTO message (mailboxID, uid, modSeq, flags, keywords, internalDate, size, blobID, prefix)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        let updateMailbox = try db.cachedStatement(sql: """
            UPDATE mailbox SET uidNext = ?, highestModSeq = ?, messageCount = messageCount + 1 WHERE id = ?
            """)
        let updateUsage = try db.cachedStatement(sql: """
            UPDATE account SET usageBytes = usageBytes + ?, usageMessages = usageMessages + 1 WHERE id = ?
            """)

        for recipient in delivery.recipients {
            // A folder chosen for the message (Junk, a filter's target) that the user has deleted
            // falls back to INBOX, as Dovecot's LDA does: mail is never lost to a missing folder.
            var found = try Row.fetchOne(lookup, arguments: [recipient.accountID, recipient.mailbox])
            if found == nil, recipient.mailbox != StoreNames.inbox {
                found = try Row.fetchOne(lookup, arguments: [recipient.accountID, StoreNames.inbox])
            }
            guard let row = found else {
                outcomes.append(.mailboxMissing)
                continue
            }
            let mailboxID: Int64 = row[0]
            let uidNext: Int64 = row[1]
            let highestModSeq: Int64 = row[2]
            let quotaBytes: Int64? = row[3]
            let quotaMessages: Int64? = row[4]
            let usageBytes: Int64 = row[5]
            let usageMessages: Int64 = row[6]
            let size = delivery.blobSize + Int64(recipient.headerPrefix.count)

            // Delivery-time quota: the limit plus the grace margin (StoreLimits).
            if let limit = quotaBytes, usageBytes + size > withGrace(limit) {
                outcomes.append(.overQuota)
                continue
            }
            if let limit = quotaMessages, usageMessages + 1 > withGrace(limit) {
                outcomes.append(.overQuota)
                continue
            }
            guard uidNext <= Int64(UInt32.max) else {
                throw StoreError.invalid("mailbox \(recipient.mailbox) has used every UID")
            }

            if !blobWritten {
                try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO blob (id, size, data, summary, created) VALUES (?, ?, ?, ?, ?)
                    """).execute(arguments: [delivery.blobID, delivery.blobSize, delivery.inlineData.map { Data($0) },
                                             Data(delivery.summary), now])
                // Full-text indexing is not done here: it would add about 1 ms of single-writer time per
                // message to every delivery. New blobs are indexed in the background and, at the latest,
                // by the first SEARCH BODY/TEXT of their mailbox (`indexPendingFullText`), as Dovecot does.
                if let fullText = delivery.fullText { try indexFullText(blobID: delivery.blobID, fullText, in: db) }
                blobWritten = true
            }
            let modSeq = highestModSeq + 1
            try insertMessage.execute(arguments: [
                mailboxID, uidNext, modSeq, recipient.flags.rawValue, StoreNames.joinKeywords(recipient.keywords),
                delivery.internalDate, size, delivery.blobID, Data(recipient.headerPrefix),
            ])
            try updateMailbox.execute(arguments: [uidNext + 1, modSeq, mailboxID])
            try updateUsage.execute(arguments: [size, recipient.accountID])
            outcomes.append(.stored(mailboxID: mailboxID, uid: UInt32(uidNext)))
            changes.append(.appended(accountID: recipient.accountID, mailboxID: mailboxID, uid: UInt32(uidNext),
                                     modSeq: UInt64(modSeq)))
        }
        return outcomes
    }
}

/// A value set inside a transaction and read after its commit.
final class NIOLockedResult<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    func set(_ newValue: T) { lock.withLock { value = newValue } }
    func get() -> T? { lock.withLock { value } }
}
