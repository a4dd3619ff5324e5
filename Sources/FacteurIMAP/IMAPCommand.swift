// The typed commands of IMAP4rev2 (RFC 9051 §6) and the extensions Facteur speaks (UIDPLUS
// RFC 4315, MOVE RFC 6851, ENABLE RFC 5161, ID RFC 2971, NAMESPACE RFC 2342, IDLE RFC 2177,
// LIST-EXTENDED RFC 5258, CONDSTORE RFC 7162, ESEARCH RFC 4731, SPECIAL-USE RFC 6154, SORT and
// THREAD RFC 5256, SORT=DISPLAY RFC 5957, ESORT RFC 5267).
// The parser (IMAPParser.swift) produces these; the session consumes them.

import Foundation

/// A tagged command.
public struct IMAPCommand: Sendable, Equatable {
    public var tag: String
    public var kind: Kind

    public init(tag: String, _ kind: Kind) {
        self.tag = tag
        self.kind = kind
    }

    public enum Kind: Sendable, Equatable {
        // Any state (RFC 9051 §6.1)
        case capability
        case noop
        case logout
        // Not authenticated (§6.2)
        case startTLS
        /// `initialResponse` is the SASL-IR (RFC 4959) base64 text as sent; `=` means empty.
        case authenticate(mechanism: String, initialResponse: [UInt8]?)
        case login(user: [UInt8], password: [UInt8])
        // Authenticated (§6.3)
        case enable([String])
        /// RFC 4978: COMPRESS DEFLATE.
        case compress(String)
        case select(MailboxName, condStore: Bool, qresync: QResyncParameters? = nil)
        case examine(MailboxName, condStore: Bool, qresync: QResyncParameters? = nil)
        case create(MailboxName, specialUse: [String])
        case delete(MailboxName)
        case rename(from: MailboxName, to: MailboxName)
        case subscribe(MailboxName)
        case unsubscribe(MailboxName)
        case list(ListCommand)
        case lsub(reference: MailboxName, pattern: MailboxName)
        case namespace
        case status(MailboxName, [StatusAttribute])
        case append(MailboxName, [AppendMessage])
        case idle
        /// ID (RFC 2971): nil for `ID NIL`.
        case id([IDField]?)
        /// QUOTA (RFC 9208 §4.1): GETQUOTA quota-root, GETQUOTAROOT mailbox, SETQUOTA (refused).
        case getQuota(root: [UInt8])
        case getQuotaRoot(MailboxName)
        case setQuota(root: [UInt8])
        // Selected (§6.4)
        case check
        case close
        case unselect
        case expunge
        case uidExpunge(SequenceSet)
        case search(SearchCommand, uid: Bool)
        case fetch(SequenceSet, [FetchAttribute], modifiers: FetchModifiers, uid: Bool)
        case store(SequenceSet, StoreAction, unchangedSince: UInt64?, uid: Bool)
        case copy(SequenceSet, MailboxName, uid: Bool)
        case move(SequenceSet, MailboxName, uid: Bool)
        /// SORT and THREAD (RFC 5256; types in IMAPSort.swift and IMAPThread.swift).
        case sort(SortCommand, uid: Bool)
        case thread(ThreadCommand, uid: Bool)
    }

    /// The command's name as the client would write it, for logs and "X completed" replies.
    public var name: String {
        switch kind {
        case .capability: return "CAPABILITY"
        case .compress: return "COMPRESS"
        case .noop: return "NOOP"
        case .logout: return "LOGOUT"
        case .startTLS: return "STARTTLS"
        case .authenticate: return "AUTHENTICATE"
        case .login: return "LOGIN"
        case .enable: return "ENABLE"
        case .select: return "SELECT"
        case .examine: return "EXAMINE"
        case .create: return "CREATE"
        case .delete: return "DELETE"
        case .rename: return "RENAME"
        case .subscribe: return "SUBSCRIBE"
        case .unsubscribe: return "UNSUBSCRIBE"
        case .list: return "LIST"
        case .lsub: return "LSUB"
        case .namespace: return "NAMESPACE"
        case .status: return "STATUS"
        case .append: return "APPEND"
        case .idle: return "IDLE"
        case .id: return "ID"
        case .getQuota: return "GETQUOTA"
        case .getQuotaRoot: return "GETQUOTAROOT"
        case .setQuota: return "SETQUOTA"
        case .check: return "CHECK"
        case .close: return "CLOSE"
        case .unselect: return "UNSELECT"
        case .expunge: return "EXPUNGE"
        case .uidExpunge: return "UID EXPUNGE"
        case .search(_, let uid): return uid ? "UID SEARCH" : "SEARCH"
        case .fetch(_, _, _, let uid): return uid ? "UID FETCH" : "FETCH"
        case .store(_, _, _, let uid): return uid ? "UID STORE" : "STORE"
        case .copy(_, _, let uid): return uid ? "UID COPY" : "COPY"
        case .move(_, _, let uid): return uid ? "UID MOVE" : "MOVE"
        case .sort(_, let uid): return uid ? "UID SORT" : "SORT"
        case .thread(_, let uid): return uid ? "UID THREAD" : "THREAD"
        }
    }
}

/// A mailbox name as it travels: bytes, in modified UTF-7 (RFC 3501 §5.1.3) unless the client
/// enabled UTF8=ACCEPT (RFC 6855 §3). The session decodes it knowing which applies.
public struct MailboxName: Sendable, Hashable, CustomStringConvertible {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// RFC 9051 §5.1: INBOX is case-insensitive.
    public var isInbox: Bool {
        bytes.count == 5 && String(decoding: bytes, as: UTF8.self).uppercased() == "INBOX"
    }

    public var description: String { String(decoding: bytes, as: UTF8.self) }
}

// MARK: - Sequence sets (RFC 9051 §9 `sequence-set`, RFC 5182 `$`)

/// One end of a sequence range: a number, or `*` (the largest number in use).
public enum SequenceNumber: Sendable, Hashable {
    case number(UInt32)
    case last
}

public struct SequenceRange: Sendable, Hashable {
    public var first: SequenceNumber
    public var last: SequenceNumber
    public init(_ first: SequenceNumber, _ last: SequenceNumber) { self.first = first; self.last = last }
    public init(_ single: SequenceNumber) { self.first = single; self.last = single }

    /// The range resolved against the largest value in use (`*`), lower bound first.
    public func resolved(star: UInt32) -> ClosedRange<UInt32> {
        func value(_ n: SequenceNumber) -> UInt32 {
            switch n {
            case .number(let v): return v
            case .last: return star
            }
        }
        let a = value(first), b = value(last)
        return min(a, b)...max(a, b)
    }
}

/// A sequence set, or `$`: the result of the last SEARCH with SAVE (RFC 5182).
public enum SequenceSet: Sendable, Hashable {
    case ranges([SequenceRange])
    case saved

    public static func single(_ n: UInt32) -> SequenceSet { .ranges([SequenceRange(.number(n))]) }
}

// MARK: - Flags (RFC 9051 §2.3.2)

/// A flag as the client wrote it: a system flag (`\Seen`), a keyword (`$Forwarded`), or an
/// unknown backslash flag (kept so that STORE can refuse it).
public enum Flag: Sendable, Hashable {
    case seen, answered, flagged, deleted, draft
    /// `\Recent` exists only in IMAP4rev1; it is never set by a client.
    case recent
    case keyword(String)
    case otherSystem(String)

    public init(_ text: String) {
        switch text.lowercased() {
        case "\\seen": self = .seen
        case "\\answered": self = .answered
        case "\\flagged": self = .flagged
        case "\\deleted": self = .deleted
        case "\\draft": self = .draft
        case "\\recent": self = .recent
        default: self = text.hasPrefix("\\") ? .otherSystem(text) : .keyword(text)
        }
    }

    public var text: String {
        switch self {
        case .seen: return "\\Seen"
        case .answered: return "\\Answered"
        case .flagged: return "\\Flagged"
        case .deleted: return "\\Deleted"
        case .draft: return "\\Draft"
        case .recent: return "\\Recent"
        case .keyword(let k): return k
        case .otherSystem(let s): return s
        }
    }
}

// MARK: - Dates (RFC 9051 §9 `date`, `date-time`)

/// A calendar day as SEARCH uses it (`1-Feb-1994`): no time, no zone.
public struct IMAPDate: Sendable, Hashable {
    public var year: Int
    public var month: Int
    public var day: Int
    public init(year: Int, month: Int, day: Int) { self.year = year; self.month = month; self.day = day }

    /// Days since 1970-01-01 (proleptic Gregorian), for comparisons.
    public var dayNumber: Int {
        // Howard Hinnant's days_from_civil.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
}

// MARK: - APPEND (RFC 9051 §6.3.12, MULTIAPPEND RFC 3502)

public struct AppendMessage: Sendable, Equatable {
    public var flags: [Flag]
    /// INTERNALDATE requested by the client (`date-time`).
    public var internalDate: Date?
    public var bytes: [UInt8]
    public init(flags: [Flag] = [], internalDate: Date? = nil, bytes: [UInt8]) {
        self.flags = flags; self.internalDate = internalDate; self.bytes = bytes
    }
}

// MARK: - LIST (RFC 9051 §6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819)

public struct ListCommand: Sendable, Equatable {
    public var reference: MailboxName
    public var patterns: [MailboxName]
    /// Selection options: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE.
    public var selectionOptions: [String]
    /// Return options: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS (…).
    public var returnOptions: [String]
    public var returnStatus: [StatusAttribute]
    public init(reference: MailboxName, patterns: [MailboxName], selectionOptions: [String] = [],
                returnOptions: [String] = [], returnStatus: [StatusAttribute] = []) {
        self.reference = reference; self.patterns = patterns; self.selectionOptions = selectionOptions
        self.returnOptions = returnOptions; self.returnStatus = returnStatus
    }
}

/// STATUS items (RFC 9051 §6.3.11; SIZE from RFC 8438; HIGHESTMODSEQ from RFC 7162).
public enum StatusAttribute: String, Sendable, Hashable, CaseIterable {
    case messages = "MESSAGES"
    case uidNext = "UIDNEXT"
    case uidValidity = "UIDVALIDITY"
    case unseen = "UNSEEN"
    case deleted = "DELETED"
    case size = "SIZE"
    case recent = "RECENT"
    case highestModSeq = "HIGHESTMODSEQ"
    /// RFC 9208 §4.2.2: the size of the \Deleted messages, in units of 1024 octets.
    case deletedStorage = "DELETED-STORAGE"
    /// RFC 8474 §4.
    case mailboxID = "MAILBOXID"
}

public struct IDField: Sendable, Equatable {
    public var key: String
    public var value: String?
    public init(key: String, value: String?) { self.key = key; self.value = value }
}

// MARK: - FETCH (RFC 9051 §6.4.5)

/// BODY[section] (RFC 9051 §6.4.5): a part path, then what of it.
public struct SectionSpec: Sendable, Hashable {
    public enum Text: Sendable, Hashable {
        case header
        case headerFields([String])
        case headerFieldsNot([String])
        case text
        /// Only after a part number: the part's own MIME header.
        case mime
    }
    /// 1-based part numbers; empty for the whole message.
    public var part: [Int]
    public var text: Text?
    public init(part: [Int] = [], text: Text? = nil) { self.part = part; self.text = text }
}

/// `<offset.length>` of BODY[]<…>; `length` is nil in the response form `<offset>`.
public struct Partial: Sendable, Hashable {
    public var offset: UInt32
    public var length: UInt32
    public init(offset: UInt32, length: UInt32) { self.offset = offset; self.length = length }
}

public enum FetchAttribute: Sendable, Hashable {
    case envelope
    case flags
    case internalDate
    case rfc822
    case rfc822Header
    case rfc822Size
    case rfc822Text
    /// BODY without brackets: the non-extensible structure.
    case bodyStructure(extensible: Bool)
    case uid
    case bodySection(SectionSpec, partial: Partial?, peek: Bool)
    /// BINARY[part] (RFC 3516): the part decoded from its transfer encoding.
    case binary(part: [Int], partial: Partial?, peek: Bool)
    case binarySize(part: [Int])
    case modSeq
    /// RFC 8474 §5.1, §5.2.
    case emailID
    case threadID
}

/// SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids] [seq-match-data])), RFC 7162 §3.2.5.
public struct QResyncParameters: Sendable, Hashable {
    public var uidValidity: UInt32
    public var modSeq: UInt64
    /// The UIDs the client knows (nil: all of them).
    public var knownUIDs: SequenceSet?
    /// Sequence numbers and the UIDs the client had for them; parsed, then not needed: the
    /// server answers from its tombstones, which is what the RFC allows (§3.2.5.2).
    public var sequenceMatch: (sequences: SequenceSet, uids: SequenceSet)?

    public init(uidValidity: UInt32, modSeq: UInt64, knownUIDs: SequenceSet? = nil,
                sequenceMatch: (sequences: SequenceSet, uids: SequenceSet)? = nil) {
        self.uidValidity = uidValidity; self.modSeq = modSeq; self.knownUIDs = knownUIDs; self.sequenceMatch = sequenceMatch
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.uidValidity == b.uidValidity && a.modSeq == b.modSeq && a.knownUIDs == b.knownUIDs
            && a.sequenceMatch?.sequences == b.sequenceMatch?.sequences && a.sequenceMatch?.uids == b.sequenceMatch?.uids
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(uidValidity); hasher.combine(modSeq); hasher.combine(knownUIDs)
    }
}

/// FETCH modifiers (RFC 7162 §3.1.4: CHANGEDSINCE; §3.2.6: VANISHED).
public struct FetchModifiers: Sendable, Equatable {
    public var changedSince: UInt64?
    public var vanished: Bool
    public init(changedSince: UInt64? = nil, vanished: Bool = false) { self.changedSince = changedSince; self.vanished = vanished }
}

// MARK: - STORE (RFC 9051 §6.4.6)

public struct StoreAction: Sendable, Equatable {
    public enum Mode: Sendable, Equatable { case replace, add, remove }
    public var mode: Mode
    public var silent: Bool
    public var flags: [Flag]
    public init(mode: Mode, silent: Bool, flags: [Flag]) { self.mode = mode; self.silent = silent; self.flags = flags }
}

// MARK: - SEARCH (RFC 9051 §6.4.4, ESEARCH RFC 4731, SEARCHRES RFC 5182)

public indirect enum SearchKey: Sendable, Hashable {
    case all
    case answered, deleted, draft, flagged, seen
    case unanswered, undeleted, undraft, unflagged, unseen
    /// IMAP4rev1 only: \Recent is never set here, so NEW matches nothing and OLD everything.
    case new, old, recent
    case keyword(String), unkeyword(String)
    case bcc(String), cc(String), from(String), to(String), subject(String)
    case body(String), text(String)
    case header(String, String)
    case before(IMAPDate), on(IMAPDate), since(IMAPDate)
    case sentBefore(IMAPDate), sentOn(IMAPDate), sentSince(IMAPDate)
    case larger(UInt64), smaller(UInt64)
    case uid(SequenceSet)
    case sequenceSet(SequenceSet)
    case modSeq(UInt64)
    case not(SearchKey)
    case or(SearchKey, SearchKey)
    case and([SearchKey])
}

/// ESEARCH result options (RFC 4731 §3.1) and SAVE (RFC 5182).
public enum SearchReturnOption: String, Sendable, Hashable {
    case min = "MIN", max = "MAX", all = "ALL", count = "COUNT", save = "SAVE"
}

public struct SearchCommand: Sendable, Equatable {
    public var charset: String?
    public var key: SearchKey
    /// nil: a plain SEARCH answered with `* SEARCH`; otherwise ESEARCH (`RETURN ()` means ALL).
    public var returnOptions: [SearchReturnOption]?
    public init(charset: String? = nil, key: SearchKey, returnOptions: [SearchReturnOption]? = nil) {
        self.charset = charset; self.key = key; self.returnOptions = returnOptions
    }
}
