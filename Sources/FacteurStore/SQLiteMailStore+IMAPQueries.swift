// Narrow and batched message queries for IMAP on big mailboxes: what SELECT needs (RFC 9051
// §6.3.2: EXISTS, FLAGS, UNSEEN) without loading every MessageRecord, and FETCH's records and
// MIME summaries read a batch of UIDs per query instead of one query per message (RFC 9051 §6.4.5).

import FacteurMIME
import Foundation
import GRDB

/// What SELECT/EXAMINE report about a mailbox's messages (RFC 9051 §6.3.2, §7.3.1, RFC 3501 §7.1 UNSEEN).
public struct MailboxIndex: Sendable, Equatable {
    /// Every UID, ascending: `uids[msn - 1]`.
    public var uids: [UInt32]
    /// Sequence number (1-based) of the first message without \Seen, if any.
    public var firstUnseen: Int?
    /// Keywords used by at least one message, sorted, without duplicates.
    public var keywords: [String]

    public init(uids: [UInt32], firstUnseen: Int?, keywords: [String]) {
        self.uids = uids; self.firstUnseen = firstUnseen; self.keywords = keywords
    }

    /// The same figures from records already loaded (in UID order).
    public init(records: [MessageRecord]) {
        var keywords = Set<String>()
        var firstUnseen: Int?
        for (i, m) in records.enumerated() {
            keywords.formUnion(m.keywords)
            if firstUnseen == nil, !m.flags.contains(.seen) { firstUnseen = i + 1 }
        }
        self.init(uids: records.map(\.uid), firstUnseen: firstUnseen, keywords: keywords.sorted())
    }
}

/// STATUS's counts (RFC 9051 §6.3.11, STATUS=SIZE RFC 8438, DELETED-STORAGE RFC 9208 §5.4).
public struct MessageCounts: Sendable, Equatable {
    public var unseen = 0
    public var deleted = 0
    /// Octets of the \Deleted messages (what an EXPUNGE would free).
    public var deletedSize: Int64 = 0
    /// Octets of every message; nil unless asked for (it reads every row).
    public var size: Int64?

    public init(unseen: Int = 0, deleted: Int = 0, deletedSize: Int64 = 0, size: Int64? = nil) {
        self.unseen = unseen; self.deleted = deleted; self.deletedSize = deletedSize; self.size = size
    }

    public init(records: [MessageRecord], size: Bool) {
        for m in records {
            if !m.flags.contains(.seen) { unseen += 1 }
            if m.flags.contains(.deleted) { deleted += 1; deletedSize += m.size }
        }
        self.size = size ? records.reduce(Int64(0)) { $0 + $1.size } : nil
    }
}

/// The statements that the partial indexes of migration v8 serve. Each repeats its index's WHERE
/// clause word for word, or SQLite scans the mailbox instead; a test checks every plan.
enum FlagIndexedSQL {
    static let firstUnseen = "SELECT uid FROM message WHERE mailboxID = ? AND (flags & 1) = 0 ORDER BY uid LIMIT 1"
    static let unseenCount = "SELECT COUNT(*) FROM message WHERE mailboxID = ? AND (flags & 1) = 0"
    static let deletedUIDs = "SELECT uid FROM message WHERE mailboxID = ? AND (flags & 8) <> 0 ORDER BY uid"
    static let deleted = "SELECT COUNT(*), TOTAL(size) FROM message WHERE mailboxID = ? AND (flags & 8) <> 0"
    static let keywords = "SELECT DISTINCT keywords FROM message WHERE mailboxID = ? AND keywords <> ''"

    /// Each statement and the index it must use.
    static let plans = [(firstUnseen, "message_unseen"), (unseenCount, "message_unseen"), (deletedUIDs, "message_deleted"),
                        (deleted, "message_deleted"), (keywords, "message_keywords")]
}

/// How many UIDs or ids one batched query binds: well under SQLite's host-parameter limit,
/// and small enough that one batch of records stays a few hundred kilobytes.
public let storeQueryBatchSize = 500

// Defaults, so that every MailStore answers these through the per-message calls; SQLiteMailStore
// overrides them with one query per batch.
extension MailStore {
    public func mailboxIndex(mailboxID: Int64) async throws -> MailboxIndex {
        MailboxIndex(records: try await messages(mailboxID: mailboxID))
    }

    public func uids(mailboxID: Int64) async throws -> [UInt32] {
        try await messages(mailboxID: mailboxID).map(\.uid)
    }

    public func messageCounts(mailboxID: Int64, size: Bool) async throws -> MessageCounts {
        MessageCounts(records: try await messages(mailboxID: mailboxID), size: size)
    }

    public func summaries(of records: [MessageRecord]) async throws -> [Int64: MessageSummary] {
        try await summaries(messageIDs: records.map(\.id))
    }

    public func messages(mailboxID: Int64, uids: [UInt32]) async throws -> [MessageRecord] {
        var out: [MessageRecord] = []
        for uid in Set(uids).sorted() {
            if let record = try await message(mailboxID: mailboxID, uid: uid) { out.append(record) }
        }
        return out
    }

    public func summaries(messageIDs: [Int64]) async throws -> [Int64: MessageSummary] {
        var out: [Int64: MessageSummary] = [:]
        for id in Set(messageIDs) {
            if let summary = try await summary(messageID: id) { out[id] = summary }
        }
        return out
    }
}

extension SQLiteMailStore {
    /// Three narrow queries in one read transaction (one snapshot): the UIDs come from the
    /// UNIQUE (mailboxID, uid) index alone, without touching the table rows.
    public func mailboxIndex(mailboxID: Int64) async throws -> MailboxIndex {
        try await read { db in
            guard let count = try Int.fetchOne(db.cachedStatement(sql: "SELECT messageCount FROM mailbox WHERE id = ?"),
                                               arguments: [mailboxID]) else {
                throw StoreError.notFound("mailbox \(mailboxID)")
            }
            var uids: [UInt32] = []
            uids.reserveCapacity(max(0, min(count, 10_000_000)))
            let cursor = try Int64.fetchCursor(db.cachedStatement(sql: "SELECT uid FROM message WHERE mailboxID = ? ORDER BY uid"),
                                               arguments: [mailboxID])
            while let uid = try cursor.next() { uids.append(UInt32(truncatingIfNeeded: uid)) }

            var firstUnseen: Int?
            if let uid = try Int64.fetchOne(db.cachedStatement(sql: FlagIndexedSQL.firstUnseen), arguments: [mailboxID]) {
                firstUnseen = Self.position(of: UInt32(truncatingIfNeeded: uid), in: uids).map { $0 + 1 }
            }

            var keywords = Set<String>()
            let stored = try String.fetchCursor(db.cachedStatement(sql: FlagIndexedSQL.keywords), arguments: [mailboxID])
            while let joined = try stored.next() { keywords.formUnion(StoreNames.splitKeywords(joined)) }
            return MailboxIndex(uids: uids, firstUnseen: firstUnseen, keywords: keywords.sorted())
        }
    }

    /// The records with these UIDs, ascending by UID; UIDs not in the mailbox are skipped.
    /// One query per `storeQueryBatchSize` UIDs: a range scan when the batch is dense (the
    /// usual FETCH 1:*), an IN list otherwise.
    public func messages(mailboxID: Int64, uids: [UInt32]) async throws -> [MessageRecord] {
        let sorted = Set(uids).sorted()
        guard !sorted.isEmpty else { return [] }
        var out: [MessageRecord] = []
        out.reserveCapacity(sorted.count)
        var start = 0
        while start < sorted.count {
            let end = min(start + storeQueryBatchSize, sorted.count)
            let batch = Array(sorted[start..<end])
            if batch.count == 1, let uid = batch.first {
                // FETCH of one message, the commonest: one statement needs no transaction.
                if let record = try await message(mailboxID: mailboxID, uid: uid) { out.append(record) }
                start = end
                continue
            }
            let records: [MessageRecord] = try await read { db in
                guard let low = batch.first, let high = batch.last else { return [] }
                // UInt64 arithmetic: the span of two UInt32 never overflows it.
                let span = UInt64(high) - UInt64(low) + 1
                if span <= UInt64(batch.count) * 2 {
                    let wanted = Set(batch)
                    return try Self.messageRecords(db.cachedStatement(sql: """
                        SELECT \(Self.messageColumns) FROM message WHERE mailboxID = ? AND uid BETWEEN ? AND ? ORDER BY uid
                        """), arguments: [mailboxID, Int64(low), Int64(high)]).filter { wanted.contains($0.uid) }
                }
                let statement = try db.cachedStatement(sql: "SELECT \(Self.messageColumns) FROM message WHERE mailboxID = ? AND uid = ?")
                return try batch.flatMap { uid in try Self.messageRecords(statement, arguments: [mailboxID, Int64(uid)]) }
            }
            out.append(contentsOf: records)
            start = end
        }
        return out
    }

    /// The MIME summaries of these messages, by message id (absent ids are left out).
    public func summaries(messageIDs: [Int64]) async throws -> [Int64: MessageSummary] {
        let ids = Array(Set(messageIDs))
        var out: [Int64: MessageSummary] = [:]
        out.reserveCapacity(ids.count)
        var start = 0
        while start < ids.count {
            let end = min(start + storeQueryBatchSize, ids.count)
            let batch = Array(ids[start..<end])
            // One prepared statement stepped per id: cheaper than preparing an IN list each time.
            let rows: [(Int64, [UInt8])] = try await read { db in
                let statement = try db.cachedStatement(sql: """
                    SELECT blob.summary FROM message JOIN blob ON blob.id = message.blobID WHERE message.id = ?
                    """)
                var rows: [(Int64, [UInt8])] = []
                rows.reserveCapacity(batch.count)
                for id in batch {
                    if let encoded = try Data.fetchOne(statement, arguments: [id]) { rows.append((id, [UInt8](encoded))) }
                }
                return rows
            }
            for (id, encoded) in rows {
                do {
                    out[id] = try SummaryCodec.decode(encoded)
                } catch {
                    throw StoreError.invalid("summary of message \(id) is unreadable: \(error)")
                }
            }
            start = end
        }
        return out
    }

    /// Binary search in ascending UIDs.
    static func position(of uid: UInt32, in uids: [UInt32]) -> Int? {
        var low = 0, high = uids.count - 1
        while low <= high {
            let mid = low + (high - low) / 2
            if uids[mid] == uid { return mid }
            if uids[mid] < uid { low = mid + 1 } else { high = mid - 1 }
        }
        return nil
    }
}

// MARK: - Batched reads and writes for IMAP commands on many messages

/// One message's new flags in a batched STORE (RFC 9051 §6.4.6).
public struct FlagUpdate: Sendable, Equatable {
    public var uid: UInt32
    public var flags: MessageFlags
    public var keywords: [String]
    public init(uid: UInt32, flags: MessageFlags, keywords: [String]) {
        self.uid = uid; self.flags = flags; self.keywords = keywords
    }
}

/// What a store can do for IMAP in one query or one transaction instead of one per message.
/// Optional: the IMAP layer asks `store as? any IMAPBatchedStore` and otherwise falls back to
/// the per-message MailStore calls, so other MailStore implementations need nothing.
public protocol IMAPBatchedStore: Sendable {
    /// The served bytes (prefix + blob) of these messages, by message id; absent ids are left out.
    func messageBytes(messageIDs: [Int64]) async throws -> [Int64: [UInt8]]
    /// The prefix and the first `blobLength` bytes of the blob of each message, by message id:
    /// what BODY[HEADER] needs, without reading the body.
    func messageHeads(of messages: [(record: MessageRecord, blobLength: Int)]) async throws -> [Int64: [UInt8]]
    /// Sets flags and keywords of several messages in one transaction: each changed message gets
    /// its own new MODSEQ (RFC 7162 §3.1.3), in the order given, exactly as one `setFlags` call
    /// per message would. Returns the new MODSEQ by UID; UIDs no longer in the mailbox are left out.
    func setFlags(mailboxID: Int64, updates: [FlagUpdate]) async throws -> [UInt32: UInt64]
    /// UIDs of the messages flagged \Deleted, ascending (EXPUNGE without loading every record).
    func deletedUIDs(mailboxID: Int64) async throws -> [UInt32]
}

extension SQLiteMailStore: IMAPBatchedStore {
    public func messageBytes(messageIDs: [Int64]) async throws -> [Int64: [UInt8]] {
        try await servedBytes(Array(Set(messageIDs)).map { ($0, nil) })
    }

    /// The blob's head comes from the cache when it is there; the prefix (per recipient) is read
    /// only when the message has one.
    public func messageHeads(of messages: [(record: MessageRecord, blobLength: Int)]) async throws -> [Int64: [UInt8]] {
        var out: [Int64: [UInt8]] = [:]
        out.reserveCapacity(messages.count)
        // Cached heads of messages that also need their prefix read.
        var heads: [Int64: [UInt8]] = [:]
        var missing: [(id: Int64, limit: Int?)] = []
        let cached = headCache.values(forBlobs: messages.lazy.map(\.record.blobID))
        for ((record, length), head) in zip(messages, cached) {
            if let head, head.count == length {
                if record.prefixLength == 0 { out[record.id] = head } else { heads[record.id] = head }
            } else {
                missing.append((record.id, max(0, length)))
            }
        }
        if !heads.isEmpty {
            let ids = Array(heads.keys)
            let prefixes: [(Int64, Data)] = try await read { db in
                let statement = try db.cachedStatement(sql: "SELECT prefix FROM message WHERE id = ?")
                return try ids.compactMap { id in try Data.fetchOne(statement, arguments: [id]).map { (id, $0) } }
            }
            for (id, prefix) in prefixes { out[id] = [UInt8](prefix) + (heads[id] ?? []) }
        }
        if !missing.isEmpty {
            let read = try await servedBytes(missing)
            for (record, length) in messages {
                guard let bytes = read[record.id] else { continue }
                out[record.id] = bytes
                let head = Array(bytes.dropFirst(record.prefixLength))
                if head.count == length { headCache.insert(head, forBlob: record.blobID, cost: head.count) }
            }
        }
        return out
    }

    /// Prefix + blob of each message, the blob cut to `limit` bytes when one is given.
    private func servedBytes(_ wanted: [(id: Int64, limit: Int?)]) async throws -> [Int64: [UInt8]] {
        var out: [Int64: [UInt8]] = [:]
        out.reserveCapacity(wanted.count)
        var start = 0
        while start < wanted.count {
            let end = min(start + storeQueryBatchSize, wanted.count)
            let batch = Array(wanted[start..<end])
            start = end
            let rows: [(id: Int64, limit: Int?, prefix: Data, data: Data?, blobID: String)] = try await read { db in
                let whole = try db.cachedStatement(sql: """
                    SELECT message.prefix, blob.data, blob.id FROM message JOIN blob ON blob.id = message.blobID WHERE message.id = ?
                    """)
                let head = try db.cachedStatement(sql: """
                    SELECT message.prefix, substr(blob.data, 1, ?), blob.id FROM message JOIN blob ON blob.id = message.blobID
                    WHERE message.id = ?
                    """)
                return try batch.compactMap { item in
                    let row = if let limit = item.limit {
                        try Row.fetchOne(head, arguments: [limit, item.id])
                    } else {
                        try Row.fetchOne(whole, arguments: [item.id])
                    }
                    return row.map { (id: item.id, limit: item.limit, prefix: $0[0] ?? Data(), data: $0[1], blobID: $0[2]) }
                }
            }
            for row in rows {
                var bytes = [UInt8](row.prefix)
                if let data = row.data {
                    bytes.append(contentsOf: data)
                } else {
                    bytes.append(contentsOf: try blobs.read(row.blobID, maxLength: row.limit))
                }
                out[row.id] = bytes
            }
        }
        return out
    }

    public func setFlags(mailboxID: Int64, updates: [FlagUpdate]) async throws -> [UInt32: UInt64] {
        guard !updates.isEmpty else { return [:] }
        let prepared = try updates.map { ($0.uid, $0.flags.rawValue, StoreNames.joinKeywords(try StoreNames.keywords($0.keywords))) }
        return try await writeWithoutFsync { db in
            guard let mailbox = try Row.fetchOne(db.cachedStatement(sql: "SELECT accountID, highestModSeq FROM mailbox WHERE id = ?"),
                                                 arguments: [mailboxID]) else {
                throw StoreError.notFound("mailbox \(mailboxID)")
            }
            let accountID: Int64 = mailbox[0]
            var modSeq: Int64 = mailbox[1]
            let update = try db.cachedStatement(sql: "UPDATE message SET flags = ?, keywords = ?, modSeq = ? WHERE mailboxID = ? AND uid = ?")
            var out: [UInt32: UInt64] = [:]
            var changes: [MailboxChange] = []
            for (uid, flags, keywords) in prepared {
                try update.execute(arguments: [flags, keywords, modSeq + 1, mailboxID, Int64(uid)])
                // A message expunged meanwhile is skipped, not an error: the rest still change.
                guard db.changesCount == 1 else { continue }
                modSeq += 1
                out[uid] = UInt64(modSeq)
                changes.append(.flagsChanged(accountID: accountID, mailboxID: mailboxID, uid: uid, modSeq: UInt64(modSeq)))
            }
            if !changes.isEmpty {
                try db.cachedStatement(sql: "UPDATE mailbox SET highestModSeq = ? WHERE id = ?").execute(arguments: [modSeq, mailboxID])
                self.publishOnCommit(db, changes)
            }
            return out
        }
    }

    public func uids(mailboxID: Int64) async throws -> [UInt32] {
        try await read { db in
            try Self.requireMailbox(db, mailboxID)
            var uids: [UInt32] = []
            let cursor = try Int64.fetchCursor(db.cachedStatement(sql: "SELECT uid FROM message WHERE mailboxID = ? ORDER BY uid"),
                                               arguments: [mailboxID])
            while let uid = try cursor.next() { uids.append(UInt32(truncatingIfNeeded: uid)) }
            return uids
        }
    }

    /// Counted on the partial indexes of migration v8 (only the unseen and the deleted messages'
    /// entries are read); the total size alone reads every row, so only when asked.
    public func messageCounts(mailboxID: Int64, size: Bool) async throws -> MessageCounts {
        try await read { db in
            try Self.requireMailbox(db, mailboxID)
            var counts = MessageCounts()
            counts.unseen = try Int.fetchOne(db.cachedStatement(sql: FlagIndexedSQL.unseenCount), arguments: [mailboxID]) ?? 0
            if let row = try Row.fetchOne(db.cachedStatement(sql: FlagIndexedSQL.deleted), arguments: [mailboxID]) {
                counts.deleted = row[0]
                counts.deletedSize = Int64(row[1] as Double)
            }
            if size {
                counts.size = Int64(try Double.fetchOne(db.cachedStatement(sql: "SELECT TOTAL(size) FROM message WHERE mailboxID = ?"),
                                                        arguments: [mailboxID]) ?? 0)
            }
            return counts
        }
    }

    /// Summaries are a function of the blob's bytes, and a blob id is the hash of its bytes: a
    /// cached summary never goes stale. Misses are read in one transaction, by blob id.
    public func summaries(of records: [MessageRecord]) async throws -> [Int64: MessageSummary] {
        var out: [Int64: MessageSummary] = [:]
        out.reserveCapacity(records.count)
        var missing: [MessageRecord] = []
        for (record, cached) in zip(records, summaryCache.values(forBlobs: records.lazy.map(\.blobID))) {
            if let cached { out[record.id] = cached } else { missing.append(record) }
        }
        var start = 0
        while start < missing.count {
            let end = min(start + storeQueryBatchSize, missing.count)
            let batch = Array(missing[start..<end])
            start = end
            let rows: [(record: MessageRecord, encoded: [UInt8])] = try await read { db in
                let statement = try db.cachedStatement(sql: "SELECT summary FROM blob WHERE id = ?")
                return try batch.compactMap { record in
                    try Data.fetchOne(statement, arguments: [record.blobID]).map { (record, [UInt8]($0)) }
                }
            }
            for row in rows {
                let summary: MessageSummary
                do {
                    summary = try SummaryCodec.decode(row.encoded)
                } catch {
                    throw StoreError.invalid("summary of message \(row.record.id) is unreadable: \(error)")
                }
                summaryCache.insert(summary, forBlob: row.record.blobID, cost: row.encoded.count)
                out[row.record.id] = summary
            }
        }
        return out
    }

    public func deletedUIDs(mailboxID: Int64) async throws -> [UInt32] {
        try await read { db in
            try Int64.fetchAll(db.cachedStatement(sql: FlagIndexedSQL.deletedUIDs),
                               arguments: [mailboxID]).map { UInt32(truncatingIfNeeded: $0) }
        }
    }
}
