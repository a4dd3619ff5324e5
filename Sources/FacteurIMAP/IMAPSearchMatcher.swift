// Evaluates SEARCH keys (RFC 9051 §6.4.4) on one message. Flags, sizes, dates and UIDs come
// from the message record; address and subject keys from the stored ENVELOPE; HEADER from the
// message bytes; BODY and TEXT from the store's full-text index (`FullTextAnswers`, computed once
// per SEARCH, so NOT and OR around them cost nothing), and from the bytes only when the store has
// no index for the mailbox. Matching is case-insensitive substring matching, as §6.4.4 asks.

import FacteurMIME
import FacteurStore
import Foundation

struct IMAPSearchMatcher {
    let store: any MailStore
    let selected: SelectedMailbox
    let saved: [UInt32]
    let fullText: FullTextAnswers

    private var summary: (id: Int64, value: MessageSummary?)?
    private var bytes: (id: Int64, value: [UInt8])?
    /// Summaries read ahead for a batch of messages (`prefetch`): one store query per batch
    /// instead of one per message when the key looks at the envelope.
    private var prefetched: [Int64: MessageSummary] = [:]

    init(store: any MailStore, selected: SelectedMailbox, saved: [UInt32], fullText: FullTextAnswers = FullTextAnswers()) {
        self.store = store
        self.selected = selected
        self.saved = saved
        self.fullText = fullText
    }

    mutating func matches(_ key: SearchKey, msn: Int, record: MessageRecord) async throws -> Bool {
        switch key {
        case .all: return true
        case .answered: return record.flags.contains(.answered)
        case .deleted: return record.flags.contains(.deleted)
        case .draft: return record.flags.contains(.draft)
        case .flagged: return record.flags.contains(.flagged)
        case .seen: return record.flags.contains(.seen)
        case .unanswered: return !record.flags.contains(.answered)
        case .undeleted: return !record.flags.contains(.deleted)
        case .undraft: return !record.flags.contains(.draft)
        case .unflagged: return !record.flags.contains(.flagged)
        case .unseen: return !record.flags.contains(.seen)
        case .new, .recent: return false
        case .old: return true
        case .keyword(let k): return record.keywords.contains { $0.caseInsensitiveCompare(k) == .orderedSame }
        case .unkeyword(let k): return !record.keywords.contains { $0.caseInsensitiveCompare(k) == .orderedSame }
        case .larger(let n): return record.size > Int64(clamping: n)
        case .smaller(let n): return record.size < Int64(clamping: n)
        case .before(let d): return IMAPDateFormat.day(of: record.internalDate) < d.dayNumber
        case .on(let d): return IMAPDateFormat.day(of: record.internalDate) == d.dayNumber
        case .since(let d): return IMAPDateFormat.day(of: record.internalDate) >= d.dayNumber
        case .sentBefore(let d), .sentOn(let d), .sentSince(let d):
            // RFC 9051 §6.4.4: the Date: header's day, time and zone disregarded.
            guard let text = try await loadSummary(record)?.envelope.date, let date = MailDate(parsing: text) else { return false }
            let day = IMAPDate(year: date.year, month: date.month, day: date.day).dayNumber
            switch key {
            case .sentBefore: return day < d.dayNumber
            case .sentOn: return day == d.dayNumber
            default: return day >= d.dayNumber
            }
        case .modSeq(let m): return record.modSeq >= m
        case .uid(let set):
            return contains(set, number: record.uid, uid: true)
        case .sequenceSet(let set):
            if case .saved = set { return saved.contains(record.uid) }
            return contains(set, number: UInt32(msn), uid: false)
        case .from(let s): return try await addressMatch(record, s) { $0.from }
        case .to(let s): return try await addressMatch(record, s) { $0.to }
        case .cc(let s): return try await addressMatch(record, s) { $0.cc }
        case .bcc(let s): return try await addressMatch(record, s) { $0.bcc }
        case .subject(let s):
            return Self.contains(try await loadSummary(record)?.envelope.subject ?? "", s)
        case .header(let field, let value):
            let header = IMAPFetchRenderer.filterHeader(try await headerBytes(record), names: [field], keep: true)
            guard header.count > 2 else { return false }
            if value.isEmpty { return true }
            // Only the values, not the names, are searched.
            let text = String(decoding: header, as: UTF8.self)
            let values = text.split(separator: "\r\n").map { line -> Substring in
                guard let colon = line.firstIndex(of: ":") else { return line }
                return line[line.index(after: colon)...]
            }.joined(separator: " ")
            return Self.contains(values, value)
        case .body(let s):
            if let uids = fullText.body[s] { return uids.contains(record.uid) }
            let all = try await loadBytes(record)
            guard let summary = try await loadSummary(record) else { return false }
            let start = min(all.count, record.prefixLength + summary.body.bodyOffset)
            return Self.contains(String(decoding: all[start...], as: UTF8.self), s)
        case .text(let s):
            if let uids = fullText.text[s] { return uids.contains(record.uid) }
            return Self.contains(String(decoding: try await loadBytes(record), as: UTF8.self), s)
        case .not(let k): return !(try await matches(k, msn: msn, record: record))
        case .or(let a, let b):
            if try await matches(a, msn: msn, record: record) { return true }
            return try await matches(b, msn: msn, record: record)
        case .and(let keys):
            for k in keys where !(try await matches(k, msn: msn, record: record)) { return false }
            return true
        }
    }

    private func contains(_ set: SequenceSet, number: UInt32, uid: Bool) -> Bool {
        switch set {
        case .saved: return uid ? saved.contains(number) : false
        case .ranges(let ranges):
            let star = uid ? (selected.uids.last ?? 0) : UInt32(selected.uids.count)
            return ranges.contains { $0.resolved(star: star).contains(number) }
        }
    }

    static func contains(_ haystack: String, _ needle: String) -> Bool {
        if needle.isEmpty { return true }
        // ASCII on both sides (the usual subject or address): a byte loop, ASCII case folded.
        // Foundation's search costs ~20 µs a call here, and SEARCH SUBJECT runs it per message.
        if let answer = asciiContains(haystack.utf8, needle.utf8) { return answer }
        return haystack.range(of: needle, options: [.caseInsensitive, .diacriticInsensitive]) != nil
    }

    /// Case-insensitive substring test when both strings are ASCII; nil otherwise (a non-ASCII
    /// byte may need Unicode case folding or diacritic folding). Reads native strings in place:
    /// SEARCH runs it once per message.
    static func asciiContains(_ haystack: String.UTF8View, _ needle: String.UTF8View) -> Bool? {
        let inPlace = needle.withContiguousStorageIfAvailable { n in
            haystack.withContiguousStorageIfAvailable { h in asciiContains(h, n) }
        }
        if let inPlace, let answer = inPlace { return answer }
        return asciiContains(Array(haystack)[...], Array(needle)[...])
    }

    private static func asciiContains<C: RandomAccessCollection<UInt8>>(_ haystack: C, _ needle: C) -> Bool? where C.Index == Int {
        @inline(__always) func fold(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }
        guard !needle.contains(where: { $0 >= 0x80 }), !haystack.contains(where: { $0 >= 0x80 }) else { return nil }
        guard needle.count <= haystack.count else { return false }
        let h = haystack.startIndex, n = needle.startIndex
        var i = 0
        while i + needle.count <= haystack.count {
            var j = 0
            while j < needle.count, fold(haystack[h + i + j]) == fold(needle[n + j]) { j += 1 }
            if j == needle.count { return true }
            i += 1
        }
        return false
    }

    private mutating func addressMatch(_ record: MessageRecord, _ needle: String, _ pick: (Envelope) -> [EnvelopeAddress]) async throws -> Bool {
        guard let envelope = try await loadSummary(record)?.envelope else { return false }
        for a in pick(envelope) {
            let text = [a.name, a.mailbox.map { m in a.host.map { "\(m)@\($0)" } ?? m }].compactMap { $0 }.joined(separator: " ")
            if Self.contains(text, needle) { return true }
        }
        return false
    }

    /// Whether evaluating `key` reads the stored envelope (address, subject and sent-date keys).
    static func needsSummary(_ key: SearchKey) -> Bool {
        // Iterative walk: the parser caps nesting, but a stack never overflows.
        var stack = [key]
        while let k = stack.popLast() {
            switch k {
            case .from, .to, .cc, .bcc, .subject, .sentBefore, .sentOn, .sentSince, .header: return true
            case .not(let inner): stack.append(inner)
            case .or(let a, let b): stack.append(a); stack.append(b)
            case .and(let keys): stack.append(contentsOf: keys)
            default: break
            }
        }
        return false
    }

    /// Reads the summaries of a batch of messages in one store query; they replace the
    /// previous batch's, so memory stays one batch whatever the mailbox size.
    mutating func prefetch(_ records: [MessageRecord]) async throws {
        prefetched = [:]
        prefetched = try await store.summaries(of: records)
    }

    private mutating func loadSummary(_ record: MessageRecord) async throws -> MessageSummary? {
        if let summary, summary.id == record.id { return summary.value }
        if let value = prefetched[record.id] { return value }
        let value = try await store.summary(messageID: record.id)
        summary = (record.id, value)
        return value
    }

    private mutating func loadBytes(_ record: MessageRecord) async throws -> [UInt8] {
        if let bytes, bytes.id == record.id { return bytes.value }
        let value = try await store.messageBytes(messageID: record.id)
        bytes = (record.id, value)
        return value
    }

    private mutating func headerBytes(_ record: MessageRecord) async throws -> [UInt8] {
        let all = try await loadBytes(record)
        let length = (try await loadSummary(record)?.body.headerLength ?? all.count) + record.prefixLength
        return Array(all.prefix(length))
    }
}

/// The UIDs matching each BODY and TEXT key of one SEARCH, asked of the store's full-text index
/// before the per-message evaluation. A key missing here is evaluated by scanning the message.
struct FullTextAnswers: Sendable {
    var body: [String: Set<UInt32>] = [:]
    var text: [String: Set<UInt32>] = [:]

    /// Distinct BODY/TEXT strings asked of the index per SEARCH; more are scanned.
    static let maxKeys = 32

    /// Asks the store once per distinct BODY and TEXT string of `key` (wherever it sits: inside
    /// NOT, OR and parentheses too). Stops at the first nil: the index cannot answer for this
    /// mailbox, and every key is then scanned.
    static func compute(for key: SearchKey, mailboxID: Int64, store: any MailStore) async throws -> FullTextAnswers {
        var bodies: [String] = []
        var texts: [String] = []
        // Iterative walk: the parser caps nesting, but a stack costs nothing and never overflows.
        var stack = [key]
        while let k = stack.popLast(), bodies.count + texts.count < maxKeys {
            switch k {
            case .body(let s): if !bodies.contains(s) { bodies.append(s) }
            case .text(let s): if !texts.contains(s) { texts.append(s) }
            case .not(let inner): stack.append(inner)
            case .or(let a, let b): stack.append(b); stack.append(a)
            case .and(let keys): stack.append(contentsOf: keys.reversed())
            default: break
            }
        }
        var answers = FullTextAnswers()
        for s in bodies {
            guard let uids = try await store.fullTextCandidates(mailboxID: mailboxID, body: [s], text: []) else { return FullTextAnswers() }
            answers.body[s] = uids
        }
        for s in texts {
            guard let uids = try await store.fullTextCandidates(mailboxID: mailboxID, body: [], text: [s]) else { return FullTextAnswers() }
            answers.text[s] = uids
        }
        return answers
    }
}
