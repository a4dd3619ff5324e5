// The outbound queue's persistence in SQLiteMailStore: queued messages (a blob reference plus
// the envelope, RFC 5321 §3.3, with RFC 3461's DSN parameters ENVID/RET/NOTIFY/ORCPT) and one
// row per recipient with its delivery state. A message is acknowledged as queued only once its
// blob is durable and its rows are committed (DESIGN.md, Durability). Workers claim recipients
// with a lease so that no recipient is ever being delivered by two workers at once.

import FacteurMIME
import Foundation
import GRDB

// MARK: - Public types

/// Where one recipient of a queued message stands.
public enum QueueRecipientState: String, Sendable, Codable, CaseIterable {
    /// Never tried yet.
    case pending
    /// Tried and failed temporarily; tried again at `nextAttempt`.
    case deferred
    /// A remote server (or the local store) took responsibility: final.
    case delivered
    /// Failed permanently, or expired: final.
    case failed

    public var isFinal: Bool { self == .delivered || self == .failed }
}

/// RFC 3461 §4.3 RET: what a DSN carries of the original message.
public enum DSNReturn: String, Sendable, Codable {
    case full = "FULL"
    case headers = "HDRS"
}

/// RFC 3461 §4.1 NOTIFY: when the sender wants a DSN for a recipient. Empty set = NEVER.
public struct DSNNotify: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let success = DSNNotify(rawValue: 1)
    public static let failure = DSNNotify(rawValue: 2)
    public static let delay = DSNNotify(rawValue: 4)
    public static let never: DSNNotify = []

    /// The NOTIFY parameter's value (`NEVER` or a comma list), RFC 3461 §4.1.
    public var parameterValue: String {
        if isEmpty { return "NEVER" }
        var parts: [String] = []
        if contains(.success) { parts.append("SUCCESS") }
        if contains(.failure) { parts.append("FAILURE") }
        if contains(.delay) { parts.append("DELAY") }
        return parts.joined(separator: ",")
    }

    /// Parses a NOTIFY value; nil when malformed (NEVER combined with others, unknown words).
    public init?(parameterValue: String) {
        let words = parameterValue.uppercased().split(separator: ",").map(String.init)
        guard !words.isEmpty else { return nil }
        if words == ["NEVER"] { self = []; return }
        var value: DSNNotify = []
        for word in words {
            switch word {
            case "SUCCESS": value.insert(.success)
            case "FAILURE": value.insert(.failure)
            case "DELAY": value.insert(.delay)
            default: return nil
            }
        }
        self = value
    }
}

/// What a message itself demands of the TLS that carries it onward, beyond the destination's
/// own policy (MTA-STS, DANE, configuration).
public enum MessageTLSDemand: String, Sendable, Codable, CaseIterable {
    /// The destination's policy decides (opportunistic STARTTLS unless it asks for more).
    case standard
    /// RFC 8689 REQUIRETLS: only over TLS with a verified certificate (MTA-STS or DANE), on every
    /// hop; never downgrade, bounce instead, and pass REQUIRETLS on to the next hop.
    case requireTLS
    /// RFC 8689 §4 `TLS-Required: No` header, or RFC 8460 §3 TLS reports: deliver even when the
    /// destination's TLS policy fails (falling back to unverified TLS or plaintext).
    case policyExempt
}

/// One recipient as handed to `enqueue`.
public struct QueueRecipientInput: Sendable, Equatable {
    /// `local@domain`; the domain decides the route.
    public var address: String
    /// RFC 3461 §4.2 ORCPT, as `addr-type;xtext-address` (e.g. `rfc822;a@b`), or nil.
    public var originalRecipient: String?
    /// RFC 3461 §4.1 NOTIFY; nil: not given (we then report failures and delays).
    public var notify: DSNNotify?
    public init(address: String, originalRecipient: String? = nil, notify: DSNNotify? = nil) {
        self.address = address; self.originalRecipient = originalRecipient; self.notify = notify
    }
}

/// A message handed to the queue.
public struct QueueSubmission: Sendable {
    /// The reverse-path (RFC 5321 §4.1.1.2); "" is the null sender of a DSN, never bounced.
    public var sender: String
    public var recipients: [QueueRecipientInput]
    public var message: MessageData
    /// RFC 3461 §4.4 ENVID and §4.3 RET.
    public var envelopeID: String?
    public var ret: DSNReturn?
    /// The message needs SMTPUTF8 (RFC 6531): UTF-8 in header fields. Non-ASCII addresses set
    /// it on their own.
    public var requiresSMTPUTF8: Bool
    /// Who submitted it (submission's authenticated account), for the CLI and logs.
    public var account: String?
    /// CRLF-terminated header lines put before `message` (our Received: trace, submission's
    /// added Date:/Message-ID:), stored as part of the queued bytes.
    public var headerPrefix: [UInt8]
    /// REQUIRETLS or `TLS-Required: No` (RFC 8689).
    public var tlsDemand: MessageTLSDemand
    public init(sender: String, recipients: [QueueRecipientInput], message: MessageData, envelopeID: String? = nil,
                ret: DSNReturn? = nil, requiresSMTPUTF8: Bool = false, account: String? = nil, headerPrefix: [UInt8] = [],
                tlsDemand: MessageTLSDemand = .standard) {
        self.sender = sender; self.recipients = recipients; self.message = message; self.envelopeID = envelopeID
        self.ret = ret; self.requiresSMTPUTF8 = requiresSMTPUTF8; self.account = account; self.headerPrefix = headerPrefix
        self.tlsDemand = tlsDemand
    }
}

/// How long a queued message is tried, and when its sender hears that it is late.
public struct QueueTimes: Sendable, Equatable {
    /// After this the remaining recipients fail (default 5 days).
    public var lifetime: TimeInterval
    /// After this a delay DSN goes out once (default 4 hours); nil: never.
    public var delayWarning: TimeInterval?
    public init(lifetime: TimeInterval = 5 * 86400, delayWarning: TimeInterval? = 4 * 3600) {
        self.lifetime = lifetime; self.delayWarning = delayWarning
    }
}

public struct QueuedRecipient: Sendable, Equatable, Codable {
    public var id: Int64
    public var address: String
    public var domain: String
    public var originalRecipient: String?
    public var notify: DSNNotify?
    public var state: QueueRecipientState
    public var attempts: Int
    public var nextAttempt: Date
    public var lastAttempt: Date?
    /// The last remote reply or local reason, as text (`550 5.1.1 no such user`).
    public var lastReply: String?
    /// The host that gave `lastReply`.
    public var remoteHost: String?
    /// A failure DSN or success DSN for this recipient has been queued.
    public var reported: Bool
}

public struct QueuedMessage: Sendable, Equatable, Codable {
    public var id: Int64
    public var blobID: String
    public var size: Int64
    public var sender: String
    public var envelopeID: String?
    public var ret: DSNReturn?
    public var requiresSMTPUTF8: Bool
    /// The body has octets above 127 (RFC 6152 8BITMIME needed).
    public var has8BitData: Bool
    public var account: String?
    public var created: Date
    public var expires: Date
    /// When the delay warning is due; nil once sent or when none is wanted.
    public var warnAt: Date?
    public var recipients: [QueuedRecipient]
    /// REQUIRETLS or `TLS-Required: No` (RFC 8689), as submitted.
    public var tlsDemand: MessageTLSDemand = .standard
}

/// Recipients of one message and one domain that a worker now holds.
public struct QueueClaim: Sendable, Equatable {
    public var message: QueuedMessage
    public var domain: String
    /// Only the claimed recipients (all of `domain`, due, not final).
    public var recipients: [QueuedRecipient]
}

/// What happened to one recipient in one attempt.
public enum QueueAttemptOutcome: Sendable, Equatable {
    case delivered(reply: String, host: String?)
    case deferred(reply: String, host: String?, nextAttempt: Date)
    case failed(reply: String, host: String?)
}

extension QueueSubmission {
    /// The domain of an address, lowercased: what routing looks at.
    static func domain(of address: String) -> String {
        guard let at = address.lastIndex(of: "@") else { return "" }
        return address[address.index(after: at)...].lowercased()
    }
}

// MARK: - Schema

enum QueueSchema {
    /// Registered by `SQLiteSchema.migrator` after v1.
    static func v2(_ db: Database) throws {
        try db.execute(sql: """
            -- One row per queued message; the bytes are a blob, shared with mailboxes when equal.
            CREATE TABLE queue_message (
                id          INTEGER PRIMARY KEY AUTOINCREMENT,
                blobID      TEXT NOT NULL REFERENCES blob(id),
                size        INTEGER NOT NULL CHECK (size >= 0),
                sender      TEXT NOT NULL,
                envid       TEXT,
                ret         TEXT CHECK (ret IS NULL OR ret IN ('FULL', 'HDRS')),
                smtputf8    INTEGER NOT NULL DEFAULT 0 CHECK (smtputf8 IN (0, 1)),
                eightBit    INTEGER NOT NULL DEFAULT 0 CHECK (eightBit IN (0, 1)),
                account     TEXT,
                created     REAL NOT NULL,
                expires     REAL NOT NULL,
                warnAt      REAL
            );
            CREATE INDEX queue_message_blob ON queue_message(blobID);

            CREATE TABLE queue_recipient (
                id          INTEGER PRIMARY KEY AUTOINCREMENT,
                messageID   INTEGER NOT NULL REFERENCES queue_message(id) ON DELETE CASCADE,
                address     TEXT NOT NULL CHECK (address <> ''),
                domain      TEXT NOT NULL,
                orcpt       TEXT,
                notify      INTEGER CHECK (notify IS NULL OR notify BETWEEN 0 AND 7),
                state       TEXT NOT NULL CHECK (state IN ('pending', 'deferred', 'delivered', 'failed')),
                attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                nextAttempt REAL NOT NULL,
                lastAttempt REAL,
                lastReply   TEXT,
                remoteHost  TEXT,
                reported    INTEGER NOT NULL DEFAULT 0 CHECK (reported IN (0, 1)),
                -- The worker holding this recipient, until when (a crashed worker's lease ends).
                claimOwner  TEXT,
                claimUntil  REAL
            );
            CREATE INDEX queue_recipient_message ON queue_recipient(messageID);
            CREATE INDEX queue_recipient_due ON queue_recipient(state, nextAttempt);
            """)
    }

    /// Registered after v5: the message's own TLS demand (RFC 8689 REQUIRETLS, TLS-Required: No).
    static func v6(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE queue_message ADD COLUMN tlsDemand TEXT NOT NULL DEFAULT 'standard'
                CHECK (tlsDemand IN ('standard', 'requireTLS', 'policyExempt'));
            """)
    }
}

// MARK: - Store operations

extension SQLiteMailStore {
    /// Longest reply text kept per recipient: remote servers' replies are untrusted input.
    static let maxQueueReplyLength = 2000
    static let maxQueueRecipients = StoreLimits.maxRecipientsPerDelivery

    /// Queues a message for its recipients. Returns once the blob is durable and the rows are
    /// committed: only then may SMTP answer 250. A `.file` spool is consumed whatever happens.
    public func enqueue(_ submission: QueueSubmission, now: Date = Date(), times: QueueTimes = QueueTimes()) async throws
        -> QueuedMessage {
        var spool: String?
        if case .file(let path, _) = submission.message { spool = path }
        defer { if let spool { unlink(spool) } }
        guard !submission.recipients.isEmpty, submission.recipients.count <= Self.maxQueueRecipients else {
            throw StoreError.invalid("a queued message needs 1 to \(Self.maxQueueRecipients) recipients")
        }
        for recipient in submission.recipients {
            guard QueueSubmission.domain(of: recipient.address).isEmpty == false,
                  recipient.address.utf8.count <= StoreLimits.maxLocalPartLength + 1 + StoreLimits.maxDomainLength else {
                throw StoreError.invalid("bad recipient address \(recipient.address)")
            }
        }
        guard submission.headerPrefix.count <= StoreLimits.maxHeaderPrefixLength else {
            throw StoreError.invalid("header prefix longer than \(StoreLimits.maxHeaderPrefixLength) octets")
        }
        var joined = submission.headerPrefix
        switch submission.message {
        case .memory(let b): joined += b
        case .file(let path, _): joined += try BlobFiles.read(path: path)
        }
        let bytes = joined
        try LineEndings.check(bytes, what: "message")
        let blobID = BlobLayout.blobID(of: bytes)
        let summary = SummaryCodec.encode(MessageSummary(parsing: bytes))
        let eightBit = bytes.contains { $0 >= 0x80 }
        let utf8 = submission.requiresSMTPUTF8 || submission.sender.utf8.contains { $0 >= 0x80 }
            || submission.recipients.contains { $0.address.utf8.contains { $0 >= 0x80 } }
        let inline = bytes.count <= StoreLimits.inlineBlobThreshold

        await blobGuard.acquire(blobID)
        defer { blobGuard.release(blobID) }
        if !inline {
            let files = blobs
            try await Self.queueIO { try bytes.withUnsafeBytes { _ = try files.writeDurably($0, id: blobID) } }
        }
        let created = now.timeIntervalSince1970
        let expires = created + times.lifetime
        let warnAt = times.delayWarning.map { created + $0 }
        let size = Int64(bytes.count)
        // In the group commit: concurrent submissions (and deliveries) share one fsync.
        let (id, recipientIDs): (Int64, [Int64]) = try await groupWrite { db in
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO blob (id, size, data, summary, created) VALUES (?, ?, ?, ?, ?)")
                .execute(arguments: [blobID, size, inline ? Data(bytes) : nil, Data(summary), created])
            try db.cachedStatement(sql: """
                INSERT INTO queue_message (blobID, size, sender, envid, ret, smtputf8, eightBit, account, created, expires, warnAt,
                                           tlsDemand)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [blobID, size, submission.sender, submission.envelopeID, submission.ret?.rawValue,
                                         utf8, eightBit, submission.account, created, expires, warnAt,
                                         submission.tlsDemand.rawValue])
            let messageID = db.lastInsertedRowID
            let insert = try db.cachedStatement(sql: """
                INSERT INTO queue_recipient (messageID, address, domain, orcpt, notify, state, nextAttempt)
                VALUES (?, ?, ?, ?, ?, 'pending', ?)
                """)
            var ids: [Int64] = []
            for r in submission.recipients {
                try insert.execute(arguments: [messageID, r.address, QueueSubmission.domain(of: r.address),
                                               r.originalRecipient, r.notify?.rawValue, created])
                ids.append(db.lastInsertedRowID)
            }
            return (messageID, ids)
        }
        // What was just committed, as `queuedMessage(id:)` would read it back (one read less
        // per submission).
        let recipients = zip(recipientIDs, submission.recipients).map { id, r in
            QueuedRecipient(id: id, address: r.address, domain: QueueSubmission.domain(of: r.address),
                            originalRecipient: r.originalRecipient, notify: r.notify, state: .pending, attempts: 0,
                            nextAttempt: Date(timeIntervalSince1970: created), lastAttempt: nil, lastReply: nil,
                            remoteHost: nil, reported: false)
        }
        return QueuedMessage(id: id, blobID: blobID, size: size, sender: submission.sender, envelopeID: submission.envelopeID,
                             ret: submission.ret, requiresSMTPUTF8: utf8, has8BitData: eightBit, account: submission.account,
                             created: Date(timeIntervalSince1970: created), expires: Date(timeIntervalSince1970: expires),
                             warnAt: warnAt.map { Date(timeIntervalSince1970: $0) }, recipients: recipients,
                             tlsDemand: submission.tlsDemand)
    }

    /// Every queued message with its recipients, oldest first.
    public func queuedMessages() async throws -> [QueuedMessage] {
        try await read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT \(Self.queueMessageColumns) FROM queue_message ORDER BY id")
            return try rows.map { try Self.queuedMessage($0, db: db) }
        }
    }

    public func queuedMessage(id: Int64) async throws -> QueuedMessage? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.queueMessageColumns) FROM queue_message WHERE id = ?", arguments: [id])
                .map { try Self.queuedMessage($0, db: db) }
        }
    }

    /// The message's bytes as queued.
    public func queuedMessageBytes(blobID: String) async throws -> [UInt8] {
        let data: Data?? = try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT data FROM blob WHERE id = ?"), arguments: [blobID]).map { $0[0] as Data? }
        }
        guard let row = data else { throw StoreError.notFound("blob \(blobID)") }
        if let inline = row { return [UInt8](inline) }
        let files = blobs
        return try await Self.queueIO { try files.read(blobID) }
    }

    /// Claims up to `limit` (message, domain) groups whose recipients are due at `now` and not
    /// held by another worker; they are held by `owner` until `now + lease`.
    public func claimQueueWork(now: Date, owner: String, lease: TimeInterval, limit: Int) async throws -> [QueueClaim] {
        let t = now.timeIntervalSince1970
        // In the group commit too: a claim needs no fsync of its own (leases are released at
        // start-up anyway), and passes come as often as submissions wake the worker.
        return try await groupWrite { db in
            let groups = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT messageID, domain FROM queue_recipient
                WHERE state IN ('pending', 'deferred') AND nextAttempt <= ? AND (claimUntil IS NULL OR claimUntil <= ?)
                GROUP BY messageID, domain ORDER BY min(nextAttempt), messageID LIMIT ?
                """), arguments: [t, t, max(0, limit)])
            // Prepared once per pass, not once per group: a pass claims up to hundreds of groups.
            let claim = try db.cachedStatement(sql: """
                UPDATE queue_recipient SET claimOwner = ?, claimUntil = ?
                WHERE messageID = ? AND domain = ? AND state IN ('pending', 'deferred') AND nextAttempt <= ?
                  AND (claimUntil IS NULL OR claimUntil <= ?)
                RETURNING id
                """)
            let messageRow = try db.cachedStatement(sql: "SELECT \(Self.queueMessageColumns) FROM queue_message WHERE id = ?")
            var claims: [QueueClaim] = []
            for group in groups {
                let messageID: Int64 = group[0]
                let domain: String = group[1]
                let mine = Set(try Int64.fetchAll(claim, arguments: [owner, t + lease, messageID, domain, t, t]))
                guard !mine.isEmpty,
                      let row = try Row.fetchOne(messageRow, arguments: [messageID]) else { continue }
                // The message comes with all its recipients (ordered by id); the claimed ones are a subset.
                let message = try Self.queuedMessage(row, db: db)
                let recipients = message.recipients.filter { mine.contains($0.id) }
                claims.append(QueueClaim(message: message, domain: domain, recipients: recipients))
            }
            return claims
        }
    }

    /// Ends every lease (at start-up: no worker of a previous run is alive any more).
    public func releaseQueueClaims() async throws {
        try await write { db in
            try db.execute(sql: "UPDATE queue_recipient SET claimOwner = NULL, claimUntil = NULL WHERE claimOwner IS NOT NULL")
        }
    }

    /// Records one attempt's outcome for recipients `owner` holds and releases them. Outcomes for
    /// recipients no longer held by `owner` (deleted, bounced by an operator) are ignored.
    public func recordQueueAttempt(owner: String, _ outcomes: [(recipientID: Int64, outcome: QueueAttemptOutcome)],
                                   now: Date) async throws {
        let t = now.timeIntervalSince1970
        let list = outcomes.map { ($0.recipientID, $0.outcome) }
        // In the group commit: the outcomes of concurrent lanes (and submissions) share one
        // fsync instead of a transaction each. Still committed before this returns.
        try await groupWrite { db in
            let update = try db.cachedStatement(sql: """
                UPDATE queue_recipient SET state = ?, attempts = attempts + 1, lastAttempt = ?, nextAttempt = ?,
                    lastReply = ?, remoteHost = ?, claimOwner = NULL, claimUntil = NULL
                WHERE id = ? AND claimOwner = ? AND state IN ('pending', 'deferred')
                """)
            for (id, outcome) in list {
                let state: QueueRecipientState
                let reply: String
                let host: String?
                var next = t
                switch outcome {
                case .delivered(let r, let h): state = .delivered; reply = r; host = h
                case .failed(let r, let h): state = .failed; reply = r; host = h
                case .deferred(let r, let h, let n): state = .deferred; reply = r; host = h; next = n.timeIntervalSince1970
                }
                try update.execute(arguments: [state.rawValue, t, next, String(reply.prefix(Self.maxQueueReplyLength)),
                                               host, id, owner])
            }
        }
    }

    /// Marks recipients as reported (their DSN is queued) so no second DSN goes out.
    public func markQueueRecipientsReported(_ ids: [Int64]) async throws {
        try await write { db in
            let statement = try db.cachedStatement(sql: "UPDATE queue_recipient SET reported = 1 WHERE id = ?")
            for id in ids { try statement.execute(arguments: [id]) }
        }
    }

    /// The delay warning of `messageID` went out (or is not wanted): never again.
    public func clearQueueDelayWarning(messageID: Int64) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE queue_message SET warnAt = NULL WHERE id = ?", arguments: [messageID])
        }
    }

    /// Removes messages whose recipients are all final and reported where a report was due
    /// (delivered ones need none unless NOTIFY=SUCCESS, which the worker reports at once).
    /// Returns their ids; their blobs become garbage unless something else references them.
    @discardableResult
    public func removeFinishedQueueMessages() async throws -> [Int64] {
        try await groupWrite { db in
            let ids = try Int64.fetchAll(db.cachedStatement(sql: """
                SELECT m.id FROM queue_message m WHERE NOT EXISTS (
                    SELECT 1 FROM queue_recipient r WHERE r.messageID = m.id
                    AND (r.state IN ('pending', 'deferred') OR (r.state = 'failed' AND r.reported = 0)))
                """))
            let delete = try db.cachedStatement(sql: "DELETE FROM queue_message WHERE id = ?")
            for id in ids { try delete.execute(arguments: [id]) }
            return ids
        }
    }

    /// `facteur queue retry`: makes the message's waiting recipients (or every queued message's,
    /// when `id` is nil) due now. Returns how many recipients changed.
    @discardableResult
    public func retryQueued(id: Int64?, now: Date = Date()) async throws -> Int {
        try await write { db in
            if let id {
                guard try Bool.fetchOne(db, sql: "SELECT 1 FROM queue_message WHERE id = ?", arguments: [id]) == true else {
                    throw StoreError.notFound("queued message \(id)")
                }
                try db.execute(sql: "UPDATE queue_recipient SET nextAttempt = ? WHERE messageID = ? AND state IN ('pending', 'deferred')",
                               arguments: [now.timeIntervalSince1970, id])
            } else {
                try db.execute(sql: "UPDATE queue_recipient SET nextAttempt = ? WHERE state IN ('pending', 'deferred')",
                               arguments: [now.timeIntervalSince1970])
            }
            return db.changesCount
        }
    }

    /// `facteur queue bounce`: fails every waiting recipient now with `reason`; the delivery
    /// worker then sends the DSN. Returns how many recipients changed.
    @discardableResult
    public func bounceQueued(id: Int64, reason: String = "5.0.0 removed from the queue by the administrator",
                             now: Date = Date()) async throws -> Int {
        try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM queue_message WHERE id = ?", arguments: [id]) == true else {
                throw StoreError.notFound("queued message \(id)")
            }
            try db.execute(sql: """
                UPDATE queue_recipient SET state = 'failed', lastReply = ?, lastAttempt = ?, claimOwner = NULL, claimUntil = NULL
                WHERE messageID = ? AND state IN ('pending', 'deferred')
                """, arguments: [reason, now.timeIntervalSince1970, id])
            return db.changesCount
        }
    }

    /// `facteur queue delete`: drops the message without any DSN.
    public func deleteQueued(id: Int64) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM queue_message WHERE id = ?", arguments: [id])
            guard db.changesCount == 1 else { throw StoreError.notFound("queued message \(id)") }
        }
    }

    /// Failed recipients whose DSN is still owed, grouped by message (the worker's bounce pass).
    public func unreportedFailures() async throws -> [QueuedMessage] {
        try await read { db in
            let ids = try Int64.fetchAll(db, sql: """
                SELECT DISTINCT messageID FROM queue_recipient WHERE state = 'failed' AND reported = 0 AND claimOwner IS NULL
                ORDER BY messageID
                """)
            return try ids.compactMap { id in
                try Row.fetchOne(db, sql: "SELECT \(Self.queueMessageColumns) FROM queue_message WHERE id = ?", arguments: [id])
                    .map { try Self.queuedMessage($0, db: db) }
            }
        }
    }

    /// Messages whose delay warning is due at `now` and that still have deferred recipients.
    public func queuedMessagesDueForDelayWarning(now: Date) async throws -> [QueuedMessage] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(Self.queueMessageColumns) FROM queue_message m WHERE warnAt IS NOT NULL AND warnAt <= ?
                AND EXISTS (SELECT 1 FROM queue_recipient r WHERE r.messageID = m.id AND r.state = 'deferred')
                ORDER BY id
                """, arguments: [now.timeIntervalSince1970]).map { try Self.queuedMessage($0, db: db) }
        }
    }

    /// The earliest time any waiting recipient is due, for the worker's sleep.
    public func nextQueueAttempt() async throws -> Date? {
        try await read { db in
            try Double.fetchOne(db, sql: "SELECT min(nextAttempt) FROM queue_recipient WHERE state IN ('pending', 'deferred')")
                .map { Date(timeIntervalSince1970: $0) }
        }
    }

    // MARK: Rows

    static let queueMessageColumns = "id, blobID, size, sender, envid, ret, smtputf8, eightBit, account, created, expires, warnAt, tlsDemand"
    static let queueRecipientColumns = """
        id, address, domain, orcpt, notify, state, attempts, nextAttempt, lastAttempt, lastReply, remoteHost, reported
        """

    static func queuedMessage(_ row: Row, db: Database) throws -> QueuedMessage {
        let id: Int64 = row[0]
        let recipients = try Row.fetchAll(db.cachedStatement(sql: "SELECT \(queueRecipientColumns) FROM queue_recipient WHERE messageID = ? ORDER BY id"),
                                          arguments: [id]).map(queuedRecipient)
        let ret: String? = row[5]
        let warnAt: Double? = row[11]
        let tlsDemand: String = row[12]
        return QueuedMessage(id: id, blobID: row[1], size: row[2], sender: row[3], envelopeID: row[4],
                             ret: ret.flatMap(DSNReturn.init(rawValue:)), requiresSMTPUTF8: row[6], has8BitData: row[7],
                             account: row[8], created: Date(timeIntervalSince1970: row[9]),
                             expires: Date(timeIntervalSince1970: row[10]),
                             warnAt: warnAt.map { Date(timeIntervalSince1970: $0) }, recipients: recipients,
                             tlsDemand: MessageTLSDemand(rawValue: tlsDemand) ?? .standard)
    }

    static func queuedRecipient(_ row: Row) -> QueuedRecipient {
        let notify: Int? = row[4]
        let state: String = row[5]
        let last: Double? = row[8]
        return QueuedRecipient(id: row[0], address: row[1], domain: row[2], originalRecipient: row[3],
                               notify: notify.map(DSNNotify.init(rawValue:)),
                               state: QueueRecipientState(rawValue: state) ?? .failed, attempts: row[6],
                               nextAttempt: Date(timeIntervalSince1970: row[7]),
                               lastAttempt: last.map { Date(timeIntervalSince1970: $0) }, lastReply: row[9],
                               remoteHost: row[10], reported: row[11])
    }

    /// Blocking file work off Swift's cooperative threads.
    static func queueIO<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            DispatchQueue.global().async {
                do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
            }
        }
    }
}
