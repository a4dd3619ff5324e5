// Mailboxes and messages of SQLiteMailStore with IMAP's invariants: UIDVALIDITY unique per
// mailbox name incarnation and UIDs never reused (RFC 9051 §2.3.1.1); MODSEQ raised by every
// change and expunges kept as tombstones for VANISHED (RFC 7162 §3.1, §3.2.10); special-use
// attributes (RFC 6154).

import FacteurMIME
import Foundation
import GRDB

/// An expunged message's tombstone: what QRESYNC's VANISHED (EARLIER) reports.
public struct ExpungedMessage: Sendable, Equatable {
    public var uid: UInt32
    public var modSeq: UInt64
    public init(uid: UInt32, modSeq: UInt64) { self.uid = uid; self.modSeq = modSeq }
}

extension SQLiteMailStore {
    static let mailboxColumns = "id, accountID, name, uidValidity, uidNext, highestModSeq, specialUse, subscribed, messageCount"

    static func mailboxRecord(_ row: Row) -> MailboxRecord {
        let uidNext: Int64 = row[4]
        let specialUse: String? = row[6]
        return MailboxRecord(id: row[0], accountID: row[1], name: row[2], uidValidity: UInt32(truncatingIfNeeded: row[3] as Int64),
                             uidNext: UInt32(clamping: uidNext), highestModSeq: UInt64(clamping: row[5] as Int64),
                             specialUse: specialUse.flatMap(SpecialUse.init(rawValue:)), subscribed: row[7],
                             messageCount: row[8])
    }

    /// UIDVALIDITY: the creation time in seconds, but always above the last value handed out,
    /// so a name deleted and created again within a second (or after the clock stepped back)
    /// still gets a new one. Stored in `setting` so it survives the mailboxes themselves.
    static func nextUIDValidity(_ db: Database) throws -> UInt32 {
        let last = try Int64.fetchOne(db, sql: "SELECT CAST(value AS INTEGER) FROM setting WHERE key = 'uidValidity'") ?? 0
        let now = Int64(Date().timeIntervalSince1970)
        var next = max(now, last + 1)
        if next > Int64(UInt32.max) { next = 1 }  // the year 2106: start over (uniqueness is then best effort)
        try db.execute(sql: "INSERT OR REPLACE INTO setting (key, value) VALUES ('uidValidity', ?)", arguments: ["\(next)"])
        return UInt32(next)
    }

    static func insertMailbox(_ db: Database, accountID: Int64, name: String, specialUse: SpecialUse?, subscribed: Bool) throws
        -> MailboxRecord {
        let uidValidity = try nextUIDValidity(db)
        try db.execute(sql: """
            INSERT INTO mailbox (accountID, name, uidValidity, specialUse, subscribed, created) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [accountID, name, Int64(uidValidity), specialUse?.rawValue, subscribed, now])
        return MailboxRecord(id: db.lastInsertedRowID, accountID: accountID, name: name, uidValidity: uidValidity, uidNext: 1,
                             highestModSeq: 1, specialUse: specialUse, subscribed: subscribed, messageCount: 0)
    }

    /// INBOX first, then by name.
    public func mailboxes(accountID: Int64) async throws -> [MailboxRecord] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT \(Self.mailboxColumns) FROM mailbox WHERE accountID = ? ORDER BY name <> 'INBOX', name
                """), arguments: [accountID]).map(Self.mailboxRecord)
        }
    }

    public func mailbox(accountID: Int64, name: String) async throws -> MailboxRecord? {
        let name = try StoreNames.mailboxName(name)
        return try await readStatement { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT \(Self.mailboxColumns) FROM mailbox WHERE accountID = ? AND name = ?"),
                             arguments: [accountID, name]).map(Self.mailboxRecord)
        }
    }

    /// Creates the mailbox, and its missing ancestors (RFC 9051 §6.3.4 lets CREATE do so).
    /// New mailboxes are not subscribed (SUBSCRIBE is the client's to send).
    @discardableResult
    public func createMailbox(accountID: Int64, name: String, specialUse: SpecialUse?) async throws -> MailboxRecord {
        let name = try StoreNames.mailboxName(name)
        return try await write { db in
            guard try Self.fetchAccount(db, id: accountID) != nil else { throw StoreError.notFound("account \(accountID)") }
            let exists = try db.cachedStatement(sql: "SELECT 1 FROM mailbox WHERE accountID = ? AND name = ?")
            if try Bool.fetchOne(exists, arguments: [accountID, name]) == true {
                throw StoreError.alreadyExists("mailbox \(name)")
            }
            var changes: [MailboxChange] = []
            for ancestor in StoreNames.ancestors(of: name) where try Bool.fetchOne(exists, arguments: [accountID, ancestor]) != true {
                let parent = try Self.insertMailbox(db, accountID: accountID, name: ancestor, specialUse: nil, subscribed: false)
                changes.append(.mailboxCreated(accountID: accountID, mailboxID: parent.id))
            }
            let mailbox = try Self.insertMailbox(db, accountID: accountID, name: name, specialUse: specialUse, subscribed: false)
            changes.append(.mailboxCreated(accountID: accountID, mailboxID: mailbox.id))
            self.publishOnCommit(db, changes)
            return mailbox
        }
    }

    /// Deletes a mailbox and its messages (their blobs become garbage). Its children stay;
    /// INBOX cannot be deleted (RFC 9051 §6.3.5). The name's next incarnation gets a new
    /// UIDVALIDITY.
    public func deleteMailbox(accountID: Int64, name: String) async throws {
        let name = try StoreNames.mailboxName(name)
        guard name != StoreNames.inbox else { throw StoreError.invalid("INBOX cannot be deleted") }
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT id, messageCount FROM mailbox WHERE accountID = ? AND name = ?",
                                             arguments: [accountID, name]) else {
                throw StoreError.notFound("mailbox \(name)")
            }
            let mailboxID: Int64 = row[0]
            let bytes = try Int64.fetchOne(db, sql: "SELECT coalesce(sum(size), 0) FROM message WHERE mailboxID = ?",
                                           arguments: [mailboxID]) ?? 0
            let count: Int64 = row[1]
            try db.execute(sql: "DELETE FROM mailbox WHERE id = ?", arguments: [mailboxID])
            try db.execute(sql: "UPDATE account SET usageBytes = usageBytes - ?, usageMessages = usageMessages - ? WHERE id = ?",
                           arguments: [bytes, count, accountID])
            self.publishOnCommit(db, [.mailboxDeleted(accountID: accountID, mailboxID: mailboxID)])
        }
    }

    /// Renames a mailbox and its children; each keeps its UIDVALIDITY and UIDs (RFC 9051
    /// §6.3.6). Renaming INBOX is refused here (IMAP's move-the-messages semantics belong to
    /// the IMAP layer).
    public func renameMailbox(accountID: Int64, from oldRaw: String, to newRaw: String) async throws {
        let old = try StoreNames.mailboxName(oldRaw)
        let new = try StoreNames.mailboxName(newRaw)
        guard old != StoreNames.inbox else { throw StoreError.invalid("renaming INBOX is not supported by the store") }
        guard new != old, !new.hasPrefix(old + "/") else { throw StoreError.invalid("cannot rename \(old) to \(new)") }
        try await write { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT id, name FROM mailbox WHERE accountID = ? AND (name = ? OR substr(name, 1, ?) = ?)
                """, arguments: [accountID, old, old.unicodeScalars.count + 1, old + "/"])  // substr counts code points
            guard rows.contains(where: { ($0[1] as String) == old }) else { throw StoreError.notFound("mailbox \(old)") }
            let exists = try db.cachedStatement(sql: "SELECT 1 FROM mailbox WHERE accountID = ? AND name = ?")
            var changes: [MailboxChange] = []
            for row in rows {
                let id: Int64 = row[0]
                let name: String = row[1]
                let renamed = new + String(decoding: name.utf8.dropFirst(old.utf8.count), as: UTF8.self)
                guard renamed.utf8.count <= StoreLimits.maxMailboxNameLength else {
                    throw StoreError.invalid("mailbox name \(renamed) too long")
                }
                if try Bool.fetchOne(exists, arguments: [accountID, renamed]) == true {
                    throw StoreError.alreadyExists("mailbox \(renamed)")
                }
                try db.execute(sql: "UPDATE mailbox SET name = ? WHERE id = ?", arguments: [renamed, id])
                changes.append(.mailboxRenamed(accountID: accountID, mailboxID: id))
            }
            var created: [MailboxChange] = []
            for ancestor in StoreNames.ancestors(of: new) where try Bool.fetchOne(exists, arguments: [accountID, ancestor]) != true {
                let parent = try Self.insertMailbox(db, accountID: accountID, name: ancestor, specialUse: nil, subscribed: false)
                created.append(.mailboxCreated(accountID: accountID, mailboxID: parent.id))
            }
            self.publishOnCommit(db, created + changes)
        }
    }

    /// IMAP SUBSCRIBE / UNSUBSCRIBE (RFC 9051 §6.3.7).
    public func setSubscribed(accountID: Int64, name: String, _ subscribed: Bool) async throws {
        let name = try StoreNames.mailboxName(name)
        try await write { db in
            try db.execute(sql: "UPDATE mailbox SET subscribed = ? WHERE accountID = ? AND name = ?",
                           arguments: [subscribed, accountID, name])
            guard db.changesCount == 1 else { throw StoreError.notFound("mailbox \(name)") }
        }
    }

    // MARK: - Messages

    static let messageColumns = "id, mailboxID, uid, modSeq, flags, keywords, internalDate, size, blobID, length(prefix)"

    static func messageRecord(_ row: Row) -> MessageRecord {
        MessageRecord(id: row[0], mailboxID: row[1], uid: UInt32(truncatingIfNeeded: row[2] as Int64),
                      modSeq: UInt64(clamping: row[3] as Int64), flags: MessageFlags(rawValue: row[4]),
                      keywords: StoreNames.splitKeywords(row[5]), internalDate: Date(timeIntervalSince1970: row[6]),
                      size: row[7], blobID: row[8], prefixLength: row[9])
    }

    /// The records a statement selects (`messageColumns`), decoded from the statement's columns
    /// as it steps: copying each row first costs more than the query itself.
    static func messageRecords(_ statement: Statement, arguments: StatementArguments) throws -> [MessageRecord] {
        try Array(Row.fetchCursor(statement, arguments: arguments).map(messageRecord))
    }

    static func requireMailbox(_ db: Database, _ mailboxID: Int64) throws {
        guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM mailbox WHERE id = ?"), arguments: [mailboxID]) == true else {
            throw StoreError.notFound("mailbox \(mailboxID)")
        }
    }

    /// In UID order.
    public func messages(mailboxID: Int64) async throws -> [MessageRecord] {
        try await read { db in
            try Self.requireMailbox(db, mailboxID)
            return try Self.messageRecords(db.cachedStatement(sql: """
                SELECT \(Self.messageColumns) FROM message WHERE mailboxID = ? ORDER BY uid
                """), arguments: [mailboxID])
        }
    }

    public func message(mailboxID: Int64, uid: UInt32) async throws -> MessageRecord? {
        try await readStatement { db in
            try Self.messageRecords(db.cachedStatement(sql: "SELECT \(Self.messageColumns) FROM message WHERE mailboxID = ? AND uid = ?"),
                                    arguments: [mailboxID, Int64(uid)]).first
        }
    }

    /// The parsed structure of the message's blob (offsets relative to the blob, without prefix).
    public func summary(messageID: Int64) async throws -> MessageSummary? {
        let encoded: Data? = try await readStatement { db in
            try Data.fetchOne(db.cachedStatement(sql: """
                SELECT blob.summary FROM message JOIN blob ON blob.id = message.blobID WHERE message.id = ?
                """), arguments: [messageID])
        }
        guard let encoded else { return nil }
        do {
            return try SummaryCodec.decode([UInt8](encoded))
        } catch {
            throw StoreError.invalid("summary of message \(messageID) is unreadable: \(error)")
        }
    }

    public func messageBytes(messageID: Int64) async throws -> [UInt8] {
        let found: (prefix: Data, data: Data?, blobID: String)? = try await readStatement { db in
            try Row.fetchOne(db.cachedStatement(sql: """
                SELECT message.prefix, blob.data, blob.id FROM message JOIN blob ON blob.id = message.blobID WHERE message.id = ?
                """), arguments: [messageID]).map { (prefix: $0[0] ?? Data(), data: $0[1], blobID: $0[2]) }
        }
        guard let found else { throw StoreError.notFound("message \(messageID)") }
        var bytes = [UInt8](found.prefix)
        if let data = found.data {
            bytes.append(contentsOf: data)
        } else {
            bytes.append(contentsOf: try blobs.read(found.blobID))
        }
        return bytes
    }

    /// Replaces flags and keywords with a new MODSEQ (RFC 7162 §3.1.3), even when they are
    /// unchanged: the IMAP layer decides whether a STORE is a change.
    @discardableResult
    public func setFlags(mailboxID: Int64, uid: UInt32, flags: MessageFlags, keywords: [String]) async throws -> UInt64 {
        let keywords = StoreNames.joinKeywords(try StoreNames.keywords(keywords))
        return try await writeWithoutFsync { db in
            guard let mailbox = try Row.fetchOne(db.cachedStatement(sql: "SELECT accountID, highestModSeq FROM mailbox WHERE id = ?"),
                                                 arguments: [mailboxID]) else {
                throw StoreError.notFound("mailbox \(mailboxID)")
            }
            let modSeq = (mailbox[1] as Int64) + 1
            try db.cachedStatement(sql: "UPDATE message SET flags = ?, keywords = ?, modSeq = ? WHERE mailboxID = ? AND uid = ?")
                .execute(arguments: [flags.rawValue, keywords, modSeq, mailboxID, Int64(uid)])
            guard db.changesCount == 1 else { throw StoreError.notFound("message \(uid) in mailbox \(mailboxID)") }
            try db.cachedStatement(sql: "UPDATE mailbox SET highestModSeq = ? WHERE id = ?").execute(arguments: [modSeq, mailboxID])
            self.publishOnCommit(db, [.flagsChanged(accountID: mailbox[0], mailboxID: mailboxID, uid: uid, modSeq: UInt64(modSeq))])
            return UInt64(modSeq)
        }
    }

    /// Removes the messages with these UIDs (absent ones are ignored). The whole expunge takes
    /// one new MODSEQ, recorded with each UID as a tombstone; usage counters go down in the same
    /// transaction.
    ///
    /// Commits without its own fsync (`writeWithoutFsync`). Blobs kept inside the database that
    /// no message or queued message references any more go in the same transaction, so that
    /// churn does not grow the file until the next garbage collection; blob files are left to
    /// the collector (a file cannot be removed inside a transaction).
    public func expunge(mailboxID: Int64, uids: [UInt32]) async throws {
        let uids = Array(Set(uids)).sorted()
        try await writeWithoutFsync { db in
            guard let mailbox = try Row.fetchOne(db.cachedStatement(sql: "SELECT accountID, highestModSeq FROM mailbox WHERE id = ?"),
                                                 arguments: [mailboxID]) else {
                throw StoreError.notFound("mailbox \(mailboxID)")
            }
            let accountID: Int64 = mailbox[0]
            var found: [(uid: Int64, size: Int64, blobID: String)] = []
            let lookup = try db.cachedStatement(sql: "SELECT uid, size, blobID FROM message WHERE mailboxID = ? AND uid = ?")
            for uid in uids {
                if let row = try Row.fetchOne(lookup, arguments: [mailboxID, Int64(uid)]) {
                    found.append((uid: row[0], size: row[1], blobID: row[2]))
                }
            }
            guard !found.isEmpty else { return }
            let modSeq = (mailbox[1] as Int64) + 1
            let delete = try db.cachedStatement(sql: "DELETE FROM message WHERE mailboxID = ? AND uid = ?")
            let tombstone = try db.cachedStatement(sql: "INSERT OR REPLACE INTO expunged (mailboxID, uid, modSeq) VALUES (?, ?, ?)")
            var bytes: Int64 = 0
            for message in found {
                try delete.execute(arguments: [mailboxID, message.uid])
                try tombstone.execute(arguments: [mailboxID, message.uid, modSeq])
                bytes += message.size
            }
            // A delivery of the same bytes later writes the row again (INSERT OR IGNORE in its
            // own transaction), so removing it here races with nothing.
            let dropBlob = try db.cachedStatement(sql: "DELETE FROM blob WHERE id = ? AND data IS NOT NULL AND \(Self.blobIsUnreferenced)")
            for blobID in Set(found.map(\.blobID)) { try dropBlob.execute(arguments: [blobID]) }
            try db.cachedStatement(sql: "UPDATE mailbox SET highestModSeq = ?, messageCount = messageCount - ? WHERE id = ?")
                .execute(arguments: [modSeq, found.count, mailboxID])
            try db.cachedStatement(sql: "UPDATE account SET usageBytes = usageBytes - ?, usageMessages = usageMessages - ? WHERE id = ?")
                .execute(arguments: [bytes, found.count, accountID])
            self.publishOnCommit(db, found.map {
                .expunged(accountID: accountID, mailboxID: mailboxID, uid: UInt32($0.uid), modSeq: UInt64(modSeq))
            })
        }
    }

    /// Tombstones with a MODSEQ above `modSeq`, in UID order (QRESYNC VANISHED, RFC 7162 §3.2.10).
    public func expunged(mailboxID: Int64, sinceModSeq modSeq: UInt64) async throws -> [ExpungedMessage] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT uid, modSeq FROM expunged WHERE mailboxID = ? AND modSeq > ? ORDER BY uid",
                             arguments: [mailboxID, Int64(clamping: modSeq)]).map {
                ExpungedMessage(uid: UInt32(truncatingIfNeeded: $0[0] as Int64), modSeq: UInt64(clamping: $0[1] as Int64))
            }
        }
    }
}
