// FacteurStore: where mail lives. The `MailStore` protocol is what every protocol target
// (SMTP, IMAP, POP3) and the CLI talk to; `SQLiteMailStore` is the embedded implementation
// (GRDB, WAL, synchronous=FULL). Invariants follow IMAP (RFC 9051 §2.3.1.1, RFC 7162):
// UIDs strictly increase per mailbox, MODSEQ increases on every change.

import FacteurMIME
import Foundation

// MARK: - Records

public struct DomainRecord: Sendable, Equatable, Codable {
    public var name: String
    public var created: Date
    public init(name: String, created: Date) { self.name = name; self.created = created }
}

/// Limits per account; `nil` means unlimited.
public struct Quota: Sendable, Equatable, Codable {
    public var bytes: Int64?
    public var messages: Int64?
    public init(bytes: Int64? = nil, messages: Int64? = nil) { self.bytes = bytes; self.messages = messages }
    public static let unlimited = Quota()
}

public struct Usage: Sendable, Equatable, Codable {
    public var bytes: Int64
    public var messages: Int64
    public init(bytes: Int64 = 0, messages: Int64 = 0) { self.bytes = bytes; self.messages = messages }
}

/// Credentials as stored text; FacteurIdentity writes and reads these formats.
/// `passwordHash` is a PHC string (`$scrypt$…`), `scramSHA256` is RFC 5803's
/// `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
public struct StoredCredentials: Sendable, Equatable, Codable {
    public var passwordHash: String
    public var scramSHA256: String?
    public init(passwordHash: String, scramSHA256: String?) { self.passwordHash = passwordHash; self.scramSHA256 = scramSHA256 }
}

public struct AccountRecord: Sendable, Equatable, Codable {
    public var id: Int64
    /// `local@domain`, lowercased.
    public var address: String
    public var displayName: String?
    public var quota: Quota
    public var usage: Usage
    public var isAdmin: Bool
    public var created: Date
    public init(id: Int64, address: String, displayName: String?, quota: Quota, usage: Usage, isAdmin: Bool, created: Date) {
        self.id = id; self.address = address; self.displayName = displayName; self.quota = quota
        self.usage = usage; self.isAdmin = isAdmin; self.created = created
    }
}

/// An alias: `source` is `local@domain`, or `@domain` for a domain's catch-all.
/// `targets` are local account addresses (external members come with the outbound queue).
public struct AliasRecord: Sendable, Equatable, Codable {
    public var source: String
    public var targets: [String]
    public init(source: String, targets: [String]) { self.source = source; self.targets = targets }
}

/// RFC 6154 special-use attributes.
public enum SpecialUse: String, Sendable, Codable, CaseIterable {
    case all = "\\All", archive = "\\Archive", drafts = "\\Drafts", flagged = "\\Flagged"
    case junk = "\\Junk", sent = "\\Sent", trash = "\\Trash"
}

public struct MailboxRecord: Sendable, Equatable, Codable {
    public var id: Int64
    public var accountID: Int64
    /// Full name with `/` as hierarchy delimiter, e.g. `Archive/2026`. INBOX is always `INBOX`.
    public var name: String
    public var uidValidity: UInt32
    public var uidNext: UInt32
    public var highestModSeq: UInt64
    public var specialUse: SpecialUse?
    public var subscribed: Bool
    public var messageCount: Int
    public init(id: Int64, accountID: Int64, name: String, uidValidity: UInt32, uidNext: UInt32, highestModSeq: UInt64,
                specialUse: SpecialUse?, subscribed: Bool, messageCount: Int) {
        self.id = id; self.accountID = accountID; self.name = name; self.uidValidity = uidValidity; self.uidNext = uidNext
        self.highestModSeq = highestModSeq; self.specialUse = specialUse; self.subscribed = subscribed; self.messageCount = messageCount
    }
}

/// IMAP system flags.
/// The bit values are stored, and the partial indexes of migration v8 name seen (1) and
/// deleted (8) as literals: they never change.
public struct MessageFlags: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let seen = MessageFlags(rawValue: 1 << 0)
    public static let answered = MessageFlags(rawValue: 1 << 1)
    public static let flagged = MessageFlags(rawValue: 1 << 2)
    public static let deleted = MessageFlags(rawValue: 1 << 3)
    public static let draft = MessageFlags(rawValue: 1 << 4)
}

public struct MessageRecord: Sendable, Equatable, Codable {
    public var id: Int64
    public var mailboxID: Int64
    public var uid: UInt32
    public var modSeq: UInt64
    public var flags: MessageFlags
    public var keywords: [String]
    public var internalDate: Date
    /// Octets served to clients: the per-recipient header prefix plus the blob.
    public var size: Int64
    /// SHA-256 of the blob, lowercase hex.
    public var blobID: String
    /// Length of the per-recipient prefix (Return-Path, Delivered-To, Received, …) served before the blob.
    public var prefixLength: Int
    public init(id: Int64, mailboxID: Int64, uid: UInt32, modSeq: UInt64, flags: MessageFlags, keywords: [String],
                internalDate: Date, size: Int64, blobID: String, prefixLength: Int) {
        self.id = id; self.mailboxID = mailboxID; self.uid = uid; self.modSeq = modSeq; self.flags = flags
        self.keywords = keywords; self.internalDate = internalDate; self.size = size; self.blobID = blobID
        self.prefixLength = prefixLength
    }
}

// MARK: - Delivery

/// The message bytes of a delivery: in memory, or spooled to a file (large messages) that the
/// store takes over (moves or deletes) whatever the outcome.
public enum MessageData: Sendable {
    case memory([UInt8])
    case file(path: String, size: Int)

    public var count: Int {
        switch self {
        case .memory(let bytes): return bytes.count
        case .file(_, let size): return size
        }
    }
}

public struct DeliveryRecipient: Sendable {
    public var accountID: Int64
    public var mailbox: String
    /// Bytes served before the blob for this recipient only (CRLF-terminated header lines).
    public var headerPrefix: [UInt8]
    public var flags: MessageFlags
    public var keywords: [String]
    public init(accountID: Int64, mailbox: String = "INBOX", headerPrefix: [UInt8] = [], flags: MessageFlags = [], keywords: [String] = []) {
        self.accountID = accountID; self.mailbox = mailbox; self.headerPrefix = headerPrefix; self.flags = flags; self.keywords = keywords
    }
}

public struct Delivery: Sendable {
    public var message: MessageData
    public var recipients: [DeliveryRecipient]
    public var internalDate: Date
    public init(message: MessageData, recipients: [DeliveryRecipient], internalDate: Date = Date()) {
        self.message = message; self.recipients = recipients; self.internalDate = internalDate
    }
}

public enum RecipientOutcome: Sendable, Equatable {
    case stored(mailboxID: Int64, uid: UInt32)
    /// Over quota beyond the grace margin at delivery time.
    case overQuota
    case mailboxMissing
}

public struct DeliveryResult: Sendable, Equatable {
    /// One outcome per `Delivery.recipients`, in order.
    public var outcomes: [RecipientOutcome]
    public var blobID: String
    public init(outcomes: [RecipientOutcome], blobID: String) { self.outcomes = outcomes; self.blobID = blobID }
}

/// Where mail for an address goes.
public enum RecipientResolution: Sendable, Equatable {
    /// Local accounts (an alias can expand to several; duplicates removed).
    case local([AccountRecord])
    /// An alias with members outside our domains: the message goes to `external` through the
    /// outbound queue (forwarding), and to the local accounts, if any.
    case forwarded(local: [AccountRecord], external: [String])
    /// The domain is ours but nobody answers to this address.
    case unknownUser
    /// Not one of our domains.
    case nonLocalDomain
}

/// The outcome of checking a recipient's quota before accepting it (RCPT TO).
public enum QuotaCheck: Sendable, Equatable {
    case ok
    /// Full now; may clear later (452 4.2.2).
    case full
    /// The declared size can never fit (552 5.2.2).
    case tooLarge
}

// MARK: - Change feed

/// Told of committed changes synchronously, on the committing thread and in commit order: it
/// must only take note (no I/O, no waiting), the writer waits for it. One open IMAP connection
/// is one observer: a stream and a task each would cost every connection memory and every
/// change a wake-up per connection.
public protocol MailboxChangeObserver: AnyObject, Sendable {
    func receive(_ change: MailboxChange)
}

public enum MailboxChange: Sendable, Equatable {
    /// The account the change belongs to.
    public var accountID: Int64 {
        switch self {
        case .appended(let id, _, _, _), .flagsChanged(let id, _, _, _), .expunged(let id, _, _, _),
             .mailboxCreated(let id, _), .mailboxDeleted(let id, _), .mailboxRenamed(let id, _):
            return id
        }
    }

    case appended(accountID: Int64, mailboxID: Int64, uid: UInt32, modSeq: UInt64)
    case flagsChanged(accountID: Int64, mailboxID: Int64, uid: UInt32, modSeq: UInt64)
    case expunged(accountID: Int64, mailboxID: Int64, uid: UInt32, modSeq: UInt64)
    case mailboxCreated(accountID: Int64, mailboxID: Int64)
    case mailboxDeleted(accountID: Int64, mailboxID: Int64)
    case mailboxRenamed(accountID: Int64, mailboxID: Int64)
}

public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case alreadyExists(String)
    case notFound(String)
    case invalid(String)
    /// A write failed (disk full, I/O error); nothing was committed.
    case writeFailed(String)

    public var description: String {
        switch self {
        case .alreadyExists(let what): return "\(what) already exists"
        case .notFound(let what): return "\(what) not found"
        case .invalid(let why): return why
        case .writeFailed(let why): return "write failed: \(why)"
        }
    }
}

// MARK: - The protocol

public protocol MailStore: Sendable {
    // Domains
    func addDomain(_ name: String) async throws
    func removeDomain(_ name: String) async throws
    func domains() async throws -> [DomainRecord]
    func isLocalDomain(_ name: String) async throws -> Bool

    // Accounts
    @discardableResult
    func addAccount(address: String, credentials: StoredCredentials, quota: Quota, isAdmin: Bool) async throws -> AccountRecord
    func account(address: String) async throws -> AccountRecord?
    func account(id: Int64) async throws -> AccountRecord?
    func accounts(domain: String?) async throws -> [AccountRecord]
    func credentials(address: String) async throws -> StoredCredentials?
    func setCredentials(address: String, _ credentials: StoredCredentials) async throws
    func setQuota(address: String, _ quota: Quota) async throws
    func removeAccount(address: String) async throws

    // Aliases
    func addAlias(source: String, targets: [String]) async throws
    func removeAlias(source: String, target: String?) async throws
    func aliases(domain: String?) async throws -> [AliasRecord]

    /// Postmaster routing (RFC 5321 §4.5.1): where `postmaster@` every local domain goes.
    func setPostmaster(_ address: String?) async throws

    /// Whether what `address` submits is also stored in its Sent mailbox: true/false for this
    /// account, nil for the server's default.
    func sentCopies(address: String) async throws -> Bool?
    func setSentCopies(address: String, _ enabled: Bool?) async throws

    // Routing
    func resolveRecipient(_ address: String) async throws -> RecipientResolution
    func checkQuota(accountID: Int64, incomingSize: Int64?) async throws -> QuotaCheck

    // Delivery: returns once the blob is durable and the rows are committed.
    func deliver(_ delivery: Delivery) async throws -> DeliveryResult

    // Mailboxes
    func mailboxes(accountID: Int64) async throws -> [MailboxRecord]
    func mailbox(accountID: Int64, name: String) async throws -> MailboxRecord?
    @discardableResult
    func createMailbox(accountID: Int64, name: String, specialUse: SpecialUse?) async throws -> MailboxRecord

    // Messages
    func messages(mailboxID: Int64) async throws -> [MessageRecord]
    func message(mailboxID: Int64, uid: UInt32) async throws -> MessageRecord?
    func summary(messageID: Int64) async throws -> MessageSummary?
    /// The bytes served to clients: the recipient's header prefix, then the blob.
    func messageBytes(messageID: Int64) async throws -> [UInt8]
    /// Replaces flags and keywords; bumps MODSEQ. Returns the new MODSEQ.
    @discardableResult
    func setFlags(mailboxID: Int64, uid: UInt32, flags: MessageFlags, keywords: [String]) async throws -> UInt64
    /// Removes messages; bumps MODSEQ; unreferenced blobs become garbage.
    func expunge(mailboxID: Int64, uids: [UInt32]) async throws

    // Batched reads for IMAP on big mailboxes; defaults (per-message calls) and the SQLite
    // versions are in SQLiteMailStore+IMAPQueries.swift.
    /// UIDs, first unseen and keywords, without loading every record (SELECT, RFC 9051 §6.3.2).
    func mailboxIndex(mailboxID: Int64) async throws -> MailboxIndex
    /// The records with these UIDs, ascending; absent UIDs are skipped.
    func messages(mailboxID: Int64, uids: [UInt32]) async throws -> [MessageRecord]
    /// MIME summaries by message id; absent ids are left out.
    func summaries(messageIDs: [Int64]) async throws -> [Int64: MessageSummary]
    /// MIME summaries of these messages by message id (a store may serve them from a cache).
    func summaries(of records: [MessageRecord]) async throws -> [Int64: MessageSummary]
    /// Every UID of the mailbox, ascending (what a session compares its view with); throws
    /// `StoreError.notFound` when the mailbox is gone.
    func uids(mailboxID: Int64) async throws -> [UInt32]
    /// STATUS's counts; `size` asks for the total size too. Throws `StoreError.notFound` when
    /// the mailbox is gone.
    func messageCounts(mailboxID: Int64, size: Bool) async throws -> MessageCounts

    /// Every change, as it commits.
    func changes() -> AsyncStream<MailboxChange>
    /// Hands `observer` the changes of one account from now on (nil: none any more), as they
    /// commit. Replaces the observer's previous account. Held weakly.
    func observeChanges(of accountID: Int64?, by observer: any MailboxChangeObserver)

    /// SEARCH BODY/TEXT through a full-text index: the UIDs of the mailbox whose messages contain
    /// every `body` string in their body and every `text` string anywhere (case-insensitive
    /// substrings), or nil when the store cannot answer without reading the messages (the
    /// default: the caller then scans).
    func fullTextCandidates(mailboxID: Int64, body: [String], text: [String]) async throws -> Set<UInt32>?
}
