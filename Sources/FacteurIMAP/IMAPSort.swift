// IMAP SORT (RFC 5256 §3 `SORT`, §2.1 base subject, §2.2 sent date) with the display-name keys of
// SORT=DISPLAY (RFC 5957): the command's types and grammar, the per-message sort values, and the
// ordering. Pure values: the runner (IMAPCommandRunner+Sort.swift) loads messages and writes replies.

import FacteurMIME
import Foundation

// MARK: - Command

/// sort-key (RFC 5256 §4, RFC 5957 §4).
public enum SortKey: String, Sendable, Hashable, CaseIterable {
    case arrival = "ARRIVAL"
    case cc = "CC"
    case date = "DATE"
    case from = "FROM"
    case size = "SIZE"
    case subject = "SUBJECT"
    case to = "TO"
    case displayFrom = "DISPLAYFROM"
    case displayTo = "DISPLAYTO"
}

/// sort-criterion = ["REVERSE" SP] sort-key
public struct SortCriterion: Sendable, Hashable {
    public var key: SortKey
    public var reverse: Bool
    public init(_ key: SortKey, reverse: Bool = false) { self.key = key; self.reverse = reverse }
}

/// `SORT (criteria) charset search-key…` (RFC 5256 §3), with ESORT's RETURN options (RFC 5267 §3.2).
public struct SortCommand: Sendable, Equatable {
    public var criteria: [SortCriterion]
    /// Uppercased; the runner refuses anything but UTF-8 and US-ASCII (BADCHARSET).
    public var charset: String
    public var key: SearchKey
    /// nil: answered with `* SORT`; otherwise with ESEARCH (RFC 5267 §3.2).
    public var returnOptions: [SearchReturnOption]?
    public init(criteria: [SortCriterion], charset: String, key: SearchKey, returnOptions: [SearchReturnOption]? = nil) {
        self.criteria = criteria; self.charset = charset; self.key = key; self.returnOptions = returnOptions
    }
}

/// What SORT and THREAD accept from a client, beyond the parser's general limits.
public enum IMAPSortLimits {
    /// Criteria in one SORT: nine keys exist, each at most once is useful; a few repeats are tolerated.
    public static let maxCriteria = 32
    /// Message IDs kept from one References field (the last ones: the nearest ancestors decide the parent).
    public static let maxReferencesPerMessage = 256
    /// Longest Message ID taken into account (RFC 5322 §2.1.1 line length); longer ones are invalid.
    public static let maxMessageIDLength = 998
    /// Longest subject examined for its base subject; the rest is cut off first.
    public static let maxSubjectBytes = 16 * 1024
}

// MARK: - Grammar (RFC 5256 §4, RFC 5267 §3.2)

extension Cursor {
    /// sort = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria SP search-criteria
    /// sort-criteria = "(" sort-criterion *(SP sort-criterion) ")"
    /// search-criteria = charset 1*(SP search-key)
    mutating func sortCommand() throws -> SortCommand {
        try space()
        var returnOptions: [SearchReturnOption]?
        if try peek() != UInt8(ascii: "(") {
            guard try word() == "RETURN" else { throw ParseFailure.bad("expected sort criteria") }
            try space()
            returnOptions = try list { c -> SearchReturnOption in
                let o = try c.word()
                // SAVE is SEARCHRES's, not ESORT's (RFC 5267 §3.2 lists MIN, MAX, ALL, COUNT).
                guard let option = SearchReturnOption(rawValue: o), option != .save else {
                    throw ParseFailure.bad("unknown RETURN option \(o)")
                }
                return option
            }
            try space()
        }
        let criteria = try list(allowEmpty: false) { c -> SortCriterion in
            var name = try c.word()
            var reverse = false
            if name == "REVERSE" {
                try c.space()
                reverse = true
                name = try c.word()
            }
            guard let key = SortKey(rawValue: name) else { throw ParseFailure.bad("unknown sort key \(name)") }
            return SortCriterion(key, reverse: reverse)
        }
        guard criteria.count <= IMAPSortLimits.maxCriteria else { throw ParseFailure.bad("too many sort criteria") }
        let (charset, key) = try searchCriteria()
        return SortCommand(criteria: criteria, charset: charset, key: key, returnOptions: returnOptions)
    }

    /// search-criteria = charset 1*(SP search-key): the charset is required here, unlike SEARCH's.
    mutating func searchCriteria() throws -> (charset: String, key: SearchKey) {
        try space()
        let charset = try astringText().uppercased()
        let search = try searchCommand()
        // searchCommand() reads the keys; a RETURN or CHARSET among them is not SORT's grammar.
        guard search.charset == nil, search.returnOptions == nil else { throw ParseFailure.bad("unexpected search option") }
        return (charset, search.key)
    }
}

// MARK: - Collation and base subject (RFC 5256 §2.1 and §7, RFC 5051)

/// The collation of SORT and THREAD: RFC 5256 §7 requires I18NLEVEL=1's i;unicode-casemap
/// (RFC 5051 §2): each character replaced by its titlecase, the result decomposed (NFKD), then
/// octets compared. On ASCII text this is i;ascii-casemap (RFC 4790 §9.2): a-z compare as A-Z.
enum Collation {
    static func asciiUpper(_ b: UInt8) -> UInt8 { b >= 0x61 && b <= 0x7A ? b - 0x20 : b }

    /// The sort key of a string: its casemapped UTF-8 octets.
    static func key(_ text: String) -> [UInt8] {
        if text.utf8.allSatisfy({ $0 < 0x80 }) { return text.utf8.map(asciiUpper) }
        var mapped = ""
        mapped.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            // The simple (one-to-one) titlecase mapping of RFC 5051: a multi-character full
            // mapping (ß → Ss) leaves the character as it is.
            let title = scalar.properties.titlecaseMapping
            if title.unicodeScalars.count == 1 { mapped += title } else { mapped.unicodeScalars.append(scalar) }
        }
        return Array(mapped.decomposedStringWithCompatibilityMapping.utf8)
    }

    /// -1, 0, 1 on keys; the empty string collates first (RFC 5256 §3).
    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        let n = min(a.count, b.count)
        var i = 0
        while i < n {
            if a[i] != b[i] { return a[i] < b[i] ? -1 : 1 }
            i += 1
        }
        return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
    }
}

/// The base subject of RFC 5256 §2.1, and whether extracting it showed a reply or forward
/// (what THREAD=REFERENCES step 5 needs: a subj-refwd, a "(fwd)" trailer or a [fwd: …] wrapper was removed).
public struct BaseSubject: Sendable, Equatable {
    /// UTF-8 octets, casing kept.
    public var text: String
    public var isReplyOrForward: Bool

    /// Extracts the base subject from a Subject value as it stands in the header (encoded words kept).
    public init(_ raw: String) {
        // (1) RFC 2047 words decoded to UTF-8; tabs and line breaks become spaces; runs of spaces, one.
        let decoded = EncodedWords.decode(raw)
        var s: [UInt8] = []
        s.reserveCapacity(min(decoded.utf8.count, IMAPSortLimits.maxSubjectBytes))
        for b in decoded.utf8.prefix(IMAPSortLimits.maxSubjectBytes) {
            let c: UInt8 = (b == 0x09 || b == 0x0D || b == 0x0A) ? 0x20 : b
            if c == 0x20, s.last == 0x20 { continue }
            s.append(c)
        }
        var start = 0, end = s.count
        var replyOrForward = false

        func matches(_ word: String, at i: Int) -> Bool {
            let w = Array(word.utf8)
            guard i + w.count <= end else { return false }
            for k in 0 ..< w.count where Collation.asciiUpper(s[i + k]) != Collation.asciiUpper(w[k]) { return false }
            return true
        }
        // subj-blob = "[" *BLOBCHAR "]" *WSP; returns the index after it.
        func blob(at i: Int) -> Int? {
            guard i < end, s[i] == UInt8(ascii: "[") else { return nil }
            var j = i + 1
            while j < end, s[j] != UInt8(ascii: "["), s[j] != UInt8(ascii: "]") { j += 1 }
            guard j < end, s[j] == UInt8(ascii: "]") else { return nil }
            j += 1
            while j < end, s[j] == 0x20 { j += 1 }
            return j
        }
        // subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
        func refwd(at i: Int) -> Int? {
            var j: Int
            if matches("re", at: i) { j = i + 2 } else if matches("fwd", at: i) { j = i + 3 } else if matches("fw", at: i) { j = i + 2 } else { return nil }
            while j < end, s[j] == 0x20 { j += 1 }
            if let after = blob(at: j) { j = after }
            guard j < end, s[j] == UInt8(ascii: ":") else { return nil }
            return j + 1
        }

        while true {
            // (2) Trailers: "(fwd)" or WSP, repeatedly, from the end.
            while end > start {
                if s[end - 1] == 0x20 {
                    end -= 1
                } else if end - start >= 5, matches("(fwd)", at: end - 5) {
                    end -= 5
                    replyOrForward = true
                } else {
                    break
                }
            }
            // (3)-(5) Leaders (*subj-blob subj-refwd, or WSP) and a leading blob that leaves a
            // non-empty subj-base, until neither applies.
            var changed = true
            while changed {
                changed = false
                while start < end {
                    if s[start] == 0x20 {
                        start += 1
                        continue
                    }
                    var j = start
                    while let after = blob(at: j) { j = after }
                    guard let after = refwd(at: j) else { break }
                    start = after
                    replyOrForward = true
                    changed = true
                }
                if let after = blob(at: start), after < end {
                    start = after
                    changed = true
                }
            }
            // (6) "[fwd:" … "]" around the whole: unwrap and start again from (2).
            if end - start >= 6, matches("[fwd:", at: start), s[end - 1] == UInt8(ascii: "]") {
                start += 5
                end -= 1
                replyOrForward = true
                continue
            }
            break
        }
        text = String(decoding: s[start ..< end], as: UTF8.self)
        isReplyOrForward = replyOrForward
    }
}

// MARK: - Sort values and ordering (RFC 5256 §3, RFC 5957 §3)

/// What SORT and THREAD compare about one message, computed once per command.
struct SortableMessage: Sendable {
    /// Sequence number: the final tie-breaker (RFC 5256 §3) and the number SORT returns.
    var msn: Int
    var uid: UInt32
    var arrival: Double
    /// RFC 5256 §2.2: the Date header in UTC, or INTERNALDATE when it is missing or unreadable.
    var sent: Double
    var size: Int64
    /// Collation keys (i;unicode-casemap).
    var subject: [UInt8]
    var from: [UInt8]
    var to: [UInt8]
    var cc: [UInt8]
    var displayFrom: [UInt8]
    var displayTo: [UInt8]
    var isReplyOrForward: Bool

    init(msn: Int, uid: UInt32, internalDate: Date, size: Int64, envelope: Envelope?) {
        self.msn = msn
        self.uid = uid
        arrival = internalDate.timeIntervalSince1970
        self.size = size
        if let text = envelope?.date, let date = MailDate(parsing: text) {
            sent = date.date.timeIntervalSince1970
        } else {
            sent = arrival
        }
        let base = BaseSubject(envelope?.subject ?? "")
        subject = Collation.key(base.text)
        isReplyOrForward = base.isReplyOrForward
        from = Collation.key(Self.mailbox(envelope?.from))
        to = Collation.key(Self.mailbox(envelope?.to))
        cc = Collation.key(Self.mailbox(envelope?.cc))
        displayFrom = Collation.key(Self.display(envelope?.from))
        displayTo = Collation.key(Self.display(envelope?.to))
    }

    /// The first address, group markers (host NIL, RFC 3501 §7.4.2) skipped.
    static func first(_ list: [EnvelopeAddress]?) -> EnvelopeAddress? {
        list?.first { $0.host != nil }
    }

    /// RFC 5256 §3 FROM/TO/CC: the addr-mailbox of the first address; absent gives the empty string.
    static func mailbox(_ list: [EnvelopeAddress]?) -> String {
        first(list)?.mailbox ?? ""
    }

    /// RFC 5957 §3: the first address's addr-name, RFC 2047 words decoded, when that is not the
    /// empty string; otherwise addr-mailbox@addr-host; otherwise addr-mailbox; otherwise "".
    static func display(_ list: [EnvelopeAddress]?) -> String {
        guard let address = first(list) else { return "" }
        if let name = address.name {
            let decoded = EncodedWords.decode(name)
            if !decoded.isEmpty { return decoded }
        }
        let mailbox = address.mailbox ?? ""
        guard let host = address.host, !host.isEmpty else { return mailbox }
        return mailbox + "@" + host
    }

    /// Sent date, then sequence number: the order of THREAD's sibling sorts (RFC 5256 §2.2).
    static func sentOrder(_ a: SortableMessage, _ b: SortableMessage) -> Bool {
        a.sent != b.sent ? a.sent < b.sent : a.msn < b.msn
    }
}

enum IMAPSorter {
    /// -1, 0, 1 for one key.
    static func compare(_ a: SortableMessage, _ b: SortableMessage, by key: SortKey) -> Int {
        func three<T: Comparable>(_ x: T, _ y: T) -> Int { x == y ? 0 : (x < y ? -1 : 1) }
        switch key {
        case .arrival: return three(a.arrival, b.arrival)
        case .date: return three(a.sent, b.sent)
        case .size: return three(a.size, b.size)
        case .subject: return Collation.compare(a.subject, b.subject)
        case .from: return Collation.compare(a.from, b.from)
        case .to: return Collation.compare(a.to, b.to)
        case .cc: return Collation.compare(a.cc, b.cc)
        case .displayFrom: return Collation.compare(a.displayFrom, b.displayFrom)
        case .displayTo: return Collation.compare(a.displayTo, b.displayTo)
        }
    }

    /// RFC 5256 §3: criteria in order, REVERSE flipping one; messages equal on every criterion
    /// stay in sequence-number order (REVERSE does not flip that final tie-breaker).
    static func sort(_ messages: [SortableMessage], by criteria: [SortCriterion]) -> [SortableMessage] {
        messages.sorted { a, b in
            for criterion in criteria {
                let c = compare(a, b, by: criterion.key)
                if c != 0 { return criterion.reverse ? c > 0 : c < 0 }
            }
            return a.msn < b.msn
        }
    }
}
