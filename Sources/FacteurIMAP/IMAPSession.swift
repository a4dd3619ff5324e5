// The IMAP session state machine (RFC 9051 §3): not authenticated → authenticated → selected →
// logout. This value holds everything a connection knows (state, TLS, enabled extensions, the
// selected mailbox's UID map) and decides, without I/O, what each command means in the current
// state: replies it can give alone, and the store work (`IMAPCommandRunner`) it needs.

import FacteurNet
import FacteurIdentity
import FacteurStore
import Foundation

public struct IMAPSessionConfiguration: Sendable {
    public var hostname: String
    /// STARTTLS is offered (a TLS context exists and the connection is not TLS yet).
    public var tlsAvailable: Bool
    /// The connection is TLS from the start (IMAPS, RFC 8314).
    public var implicitTLS: Bool
    /// LOGIN and plaintext AUTHENTICATE are allowed without TLS (loopback in development;
    /// RFC 9051 §6.2.3 LOGINDISABLED otherwise).
    public var allowPlaintextAuthentication: Bool
    public var limits: IMAPLimits

    public init(hostname: String, tlsAvailable: Bool, implicitTLS: Bool = false, allowPlaintextAuthentication: Bool = false,
                limits: IMAPLimits = IMAPLimits()) {
        self.hostname = hostname; self.tlsAvailable = tlsAvailable; self.implicitTLS = implicitTLS
        self.allowPlaintextAuthentication = allowPlaintextAuthentication; self.limits = limits
    }
}

/// The mailbox a session has selected: its UIDs in sequence-number order (RFC 9051 §2.3.1.2).
public struct SelectedMailbox: Sendable, Equatable {
    public var id: Int64
    /// Decoded name (UTF-8, `/` delimiter).
    public var name: String
    public var readOnly: Bool
    public var uidValidity: UInt32
    public var uidNext: UInt32
    public var highestModSeq: UInt64
    /// `uids[msn - 1]`; strictly increasing.
    public var uids: [UInt32]

    public var exists: Int { uids.count }

    /// The sequence number of `uid`, if the message is in the snapshot.
    public func sequenceNumber(of uid: UInt32) -> Int? {
        var low = 0, high = uids.count - 1
        while low <= high {
            let mid = (low + high) / 2
            if uids[mid] == uid { return mid + 1 }
            if uids[mid] < uid { low = mid + 1 } else { high = mid - 1 }
        }
        return nil
    }

    /// Resolves a sequence set to (msn, uid) pairs in ascending order. Numbers beyond the
    /// snapshot are ignored for UID sets (RFC 9051 §6.4.8) and reported for sequence sets.
    public func resolve(_ set: [SequenceRange], uid: Bool) -> (messages: [(msn: Int, uid: UInt32)], invalid: Bool) {
        guard !uids.isEmpty else {
            // "*" in an empty mailbox names nothing; other numbers are invalid only for sequence sets.
            return ([], !uid && set.contains { r in
                if case .number = r.first { return true }
                if case .number = r.last { return true }
                return false
            })
        }
        var picked = IndexSetBuilder(count: uids.count)
        var invalid = false
        for range in set {
            if uid {
                let r = range.resolved(star: uids[uids.count - 1])
                // First index with uid >= lower bound, then walk while <= upper.
                var low = 0, high = uids.count
                while low < high {
                    let mid = (low + high) / 2
                    if uids[mid] < r.lowerBound { low = mid + 1 } else { high = mid }
                }
                var i = low
                while i < uids.count, uids[i] <= r.upperBound {
                    picked.insert(i)
                    i += 1
                }
            } else {
                let r = range.resolved(star: UInt32(uids.count))
                if Int(r.upperBound) > uids.count { invalid = true }
                let upper = min(Int(r.upperBound), uids.count)
                if Int(r.lowerBound) <= upper {
                    picked.insert(range: (Int(r.lowerBound) - 1) ..< upper)
                }
            }
        }
        return (picked.indices.map { (msn: $0 + 1, uid: uids[$0]) }, invalid)
    }
}

/// Collects indices without duplicates, ascending, in memory proportional to the mailbox.
struct IndexSetBuilder {
    private var marks: [Bool]
    init(count: Int) { marks = Array(repeating: false, count: count) }
    mutating func insert(_ i: Int) { marks[i] = true }
    mutating func insert(range: Range<Int>) { for i in range { marks[i] = true } }
    var indices: [Int] { marks.indices.filter { marks[$0] } }
}

public struct IMAPSession: Sendable {
    public enum State: Sendable, Equatable {
        case notAuthenticated
        case authenticated
        case selected
        case logout
    }

    public let configuration: IMAPSessionConfiguration
    public let clientAddress: String
    /// Other sessions' changes to the selected mailbox, collected from the store's feed.
    public let changeInbox: IMAPChangeInbox
    /// An AUTHENTICATE exchange in progress, and its tag.
    var authentication: (tag: String, exchange: AuthExchange)?
    /// Set when an expunge could not be reported yet (during FETCH, STORE, SEARCH).
    var needsResync = false
    public internal(set) var state = State.notAuthenticated
    public internal(set) var tlsActive: Bool
    /// This connection's place in the per-account limit, given back when the session goes away.
    var accountSlot: AccountConnectionLimiter.Slot?
    /// COMPRESS=DEFLATE is on (RFC 4978): it cannot be started twice.
    public internal(set) var compressionActive = false
    /// The authenticated account.
    public internal(set) var account: AccountRecord?
    public internal(set) var selected: SelectedMailbox?
    /// ENABLE'd extensions (RFC 5161): IMAP4REV2, UTF8=ACCEPT, CONDSTORE, QRESYNC.
    public internal(set) var enabled: Set<String> = []
    /// SEARCHRES (RFC 5182): the UIDs saved by the last SEARCH RETURN (SAVE).
    var savedSearch: [UInt32] = []
    /// Flag changes this session made itself: the change feed echoes them, they are not news.
    var ownFlagChanges: Set<OwnChange> = []
    var consecutiveBadCommands = 0

    struct OwnChange: Hashable, Sendable {
        var uid: UInt32
        var modSeq: UInt64
    }

    public init(configuration: IMAPSessionConfiguration, clientAddress: String, changeInbox: IMAPChangeInbox = IMAPChangeInbox()) {
        self.configuration = configuration
        self.clientAddress = clientAddress
        self.changeInbox = changeInbox
        self.tlsActive = configuration.implicitTLS
    }

    public var utf8Accepted: Bool { enabled.contains("UTF8=ACCEPT") }
    public var isIMAP4rev2: Bool { enabled.contains("IMAP4REV2") }
    var plaintextAuthenticationAllowed: Bool { tlsActive || configuration.allowPlaintextAuthentication }

    // MARK: Greeting and capabilities

    /// RFC 9051 §7.1.1: the greeting carries the capabilities, saving a round trip.
    public func greeting() -> [UInt8] {
        Array("* OK [CAPABILITY \(capabilities().joined(separator: " "))] \(configuration.hostname) Facteur IMAP ready\r\n".utf8)
    }

    /// RFC 9051 §7.2.2. Before authentication: how to log in; after it: what the server does.
    public func capabilities(mechanisms: [String] = ["PLAIN", "LOGIN", "SCRAM-SHA-256"]) -> [String] {
        var caps = ["IMAP4rev1", "IMAP4rev2"]
        if state == .notAuthenticated {
            if configuration.tlsAvailable, !tlsActive { caps.append("STARTTLS") }
            if plaintextAuthenticationAllowed {
                caps += mechanisms.map { "AUTH=\($0)" }
            } else {
                caps.append("LOGINDISABLED")
                caps += mechanisms.filter { $0 == "SCRAM-SHA-256" }.map { "AUTH=\($0)" }
            }
            caps.append("SASL-IR")
        }
        caps += ["LITERAL+", "ENABLE", "IDLE", "NAMESPACE", "ID", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN",
                 "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "ESEARCH", "SEARCHRES",
                 "UTF8=ACCEPT", "STATUS=SIZE", "MULTIAPPEND", "BINARY", "CONDSTORE", "QRESYNC",
                 "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE", "APPENDLIMIT=\(configuration.limits.maxMessageSize)",
                 "SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "OBJECTID"]
        if state != .notAuthenticated, !compressionActive { caps.append("COMPRESS=DEFLATE") }
        return caps
    }

    // MARK: State rules

    /// Whether `command` may run in the current state (RFC 9051 §6: each command lists its states).
    public func allows(_ command: IMAPCommand.Kind) -> Bool {
        switch command {
        case .capability, .noop, .logout, .id:
            return true
        case .startTLS, .authenticate, .login:
            return state == .notAuthenticated
        case .enable, .compress, .select, .examine, .create, .delete, .rename, .subscribe, .unsubscribe, .list, .lsub, .namespace,
             .status, .append, .idle, .getQuota, .getQuotaRoot, .setQuota:
            return state == .authenticated || state == .selected
        case .check, .close, .unselect, .expunge, .uidExpunge, .search, .fetch, .store, .copy, .move, .sort, .thread:
            return state == .selected
        }
    }

    // MARK: Transitions (called by the runner once the store agreed)

    mutating func didAuthenticate(_ account: AccountRecord) {
        self.account = account
        state = .authenticated
    }

    mutating func didSelect(_ mailbox: SelectedMailbox) {
        selected = mailbox
        savedSearch = []
        ownFlagChanges = []
        state = .selected
    }

    mutating func didDeselect() {
        selected = nil
        savedSearch = []
        ownFlagChanges = []
        if state == .selected { state = .authenticated }
    }

    mutating func didLogout() { state = .logout }

    mutating func didStartTLS() { tlsActive = true }

    /// Counts syntax errors; true when the client should be disconnected.
    mutating func noteBadCommand() -> Bool {
        consecutiveBadCommands += 1
        return consecutiveBadCommands >= configuration.limits.maxConsecutiveBadCommands
    }

    mutating func noteGoodCommand() { consecutiveBadCommands = 0 }

    // MARK: Mailbox names (RFC 9051 §5.1, RFC 3501 §5.1.3, RFC 6855 §3)

    /// The stored name for what the client sent: UTF-8 when UTF8=ACCEPT is on, modified UTF-7
    /// otherwise; INBOX in any case is INBOX. nil when the name cannot be decoded.
    public func decodeMailboxName(_ name: MailboxName) -> String? {
        if name.isInbox { return "INBOX" }
        let decoded: String?
        if utf8Accepted {
            decoded = String(validating: name.bytes, as: UTF8.self)
        } else {
            decoded = ModifiedUTF7.decode(name.bytes)
        }
        guard var decoded, !decoded.isEmpty else { return nil }
        // INBOX's children: the first component is case-insensitive too.
        if decoded.uppercased().hasPrefix("INBOX/") { decoded = "INBOX" + decoded.dropFirst(5) }
        return decoded
    }

    public func encodeMailboxName(_ name: String) -> [UInt8] {
        utf8Accepted ? Array(name.utf8) : ModifiedUTF7.encode(name)
    }
}
