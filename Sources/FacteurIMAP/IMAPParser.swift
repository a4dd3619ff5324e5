// The IMAP command parser (RFC 9051 §9 formal syntax, with RFC 3501's IMAP4rev1 forms and the
// extensions listed in IMAPCommand.swift). It reads one whole command as `IMAPCommandFramer`
// delivers it (literals inline, ending in CRLF) and answers `.command`, `.bad` (bad input: the
// session replies BAD and goes on), or `.incomplete` (the bytes stop before the command does:
// distinct from bad input, so that the parser can also be fed a growing buffer).
//
// Each parse function names the ABNF rule it implements. Nesting is capped
// (`IMAPLimits.maxNestingDepth`), lists are capped (`maxListItems`), numbers never overflow.

import Foundation

public enum IMAPParseResult: Sendable, Equatable {
    case command(IMAPCommand)
    /// Bad input. `tag` is nil when not even the tag could be read (the reply is `* BAD`).
    case bad(tag: String?, message: String)
    case incomplete
}

enum ParseFailure: Error, Equatable {
    case incomplete
    case bad(String)
}

public struct IMAPParser: Sendable {
    public let limits: IMAPLimits

    public init(limits: IMAPLimits = IMAPLimits()) {
        self.limits = limits
    }

    public func parse(_ bytes: [UInt8]) -> IMAPParseResult {
        var cursor = Cursor(bytes: bytes, limits: limits)
        var tag: String?
        do {
            tag = try cursor.tag()
            try cursor.space()
            let kind = try cursor.commandKind()
            try cursor.crlf()
            guard let tag else { return .bad(tag: nil, message: "missing tag") }
            return .command(IMAPCommand(tag: tag, kind))
        } catch ParseFailure.incomplete {
            return .incomplete
        } catch ParseFailure.bad(let message) {
            return .bad(tag: tag, message: message)
        } catch {
            return .bad(tag: tag, message: "syntax error")
        }
    }
}

/// A read position in one command's bytes.
struct Cursor {
    let bytes: [UInt8]
    var index = 0
    var depth = 0
    let limits: IMAPLimits

    init(bytes: [UInt8], limits: IMAPLimits) {
        self.bytes = bytes
        self.limits = limits
    }

    // MARK: Primitives

    func peek() throws -> UInt8 {
        guard index < bytes.count else { throw ParseFailure.incomplete }
        return bytes[index]
    }

    func peek(is b: UInt8) -> Bool { index < bytes.count && bytes[index] == b }

    mutating func expect(_ b: UInt8, _ what: @autoclosure () -> String) throws {
        guard try peek() == b else { throw ParseFailure.bad("expected \(what())") }
        index += 1
    }

    mutating func space() throws { try expect(0x20, "a space") }

    mutating func crlf() throws {
        guard index < bytes.count else { throw ParseFailure.incomplete }
        if bytes[index] == 0x0D {
            index += 1
            guard index < bytes.count else { throw ParseFailure.incomplete }
        }
        guard bytes[index] == 0x0A else { throw ParseFailure.bad("unexpected characters at the end of the command") }
        index += 1
        guard index == bytes.count else { throw ParseFailure.bad("unexpected bytes after the command") }
    }

    mutating func enter() throws {
        depth += 1
        guard depth <= limits.maxNestingDepth else { throw ParseFailure.bad("too deeply nested") }
    }

    mutating func leave() { depth -= 1 }

    /// Reads bytes while `accept` holds; the run must end before the input does.
    mutating func run(_ accept: (UInt8) -> Bool) throws -> ArraySlice<UInt8> {
        let start = index
        while index < bytes.count, accept(bytes[index]) { index += 1 }
        guard index < bytes.count else { throw ParseFailure.incomplete }
        return bytes[start ..< index]
    }

    /// A case-insensitive keyword made of letters, digits, '.', '-', '=' (command names, fetch
    /// attribute names, options). Uppercased.
    mutating func word() throws -> String {
        let slice = try run { b in
            (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || IMAPGrammar.isDigit(b)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "-") || b == UInt8(ascii: "=") || b == UInt8(ascii: "_")
        }
        guard !slice.isEmpty else { throw ParseFailure.bad("expected a keyword") }
        return String(decoding: slice, as: UTF8.self).uppercased()
    }

    /// tag = 1*<any ASTRING-CHAR except "+">
    mutating func tag() throws -> String {
        let slice = try run { IMAPGrammar.isAStringChar($0) && $0 != UInt8(ascii: "+") }
        guard !slice.isEmpty, slice.count <= 64 else { throw ParseFailure.bad("invalid tag") }
        return String(decoding: slice, as: UTF8.self)
    }

    /// atom = 1*ATOM-CHAR
    mutating func atom() throws -> String {
        let slice = try run(IMAPGrammar.isAtomChar)
        guard !slice.isEmpty else { throw ParseFailure.bad("expected an atom") }
        return String(decoding: slice, as: UTF8.self)
    }

    /// number = 1*DIGIT (an unsigned 32-bit value)
    mutating func number() throws -> UInt32 {
        let n = try number64()
        guard n <= UInt64(UInt32.max) else { throw ParseFailure.bad("number too large") }
        return UInt32(n)
    }

    /// nz-number = digit-nz *DIGIT
    mutating func nzNumber() throws -> UInt32 {
        let n = try number()
        guard n > 0 else { throw ParseFailure.bad("zero is not allowed here") }
        return n
    }

    /// number64 = 1*DIGIT (up to 2^63-1)
    mutating func number64() throws -> UInt64 {
        let digits = try run(IMAPGrammar.isDigit)
        guard !digits.isEmpty else { throw ParseFailure.bad("expected a number") }
        guard digits.count <= 19 else { throw ParseFailure.bad("number too large") }
        var n: UInt64 = 0
        for d in digits { n = n * 10 + UInt64(d - 0x30) }
        guard n <= UInt64(Int64.max) else { throw ParseFailure.bad("number too large") }
        return n
    }

    // MARK: Strings

    /// quoted = DQUOTE *QUOTED-CHAR DQUOTE
    mutating func quoted() throws -> [UInt8] {
        try expect(UInt8(ascii: "\""), "a quoted string")
        var out: [UInt8] = []
        while true {
            let b = try peek()
            index += 1
            switch b {
            case UInt8(ascii: "\""):
                return out
            case UInt8(ascii: "\\"):
                let escaped = try peek()
                guard escaped == UInt8(ascii: "\"") || escaped == UInt8(ascii: "\\") else {
                    throw ParseFailure.bad("invalid escape in quoted string")
                }
                index += 1
                out.append(escaped)
            default:
                guard IMAPGrammar.isQuotedChar(b) else { throw ParseFailure.bad("invalid character in quoted string") }
                out.append(b)
            }
        }
    }

    /// literal = "{" number64 ["+"] "}" CRLF *CHAR8; literal8 = "~{" … (RFC 3516)
    mutating func literal(allowBinary: Bool = false) throws -> [UInt8] {
        if try peek() == UInt8(ascii: "~") {
            guard allowBinary else { throw ParseFailure.bad("literal8 is not allowed here") }
            index += 1
        }
        try expect(UInt8(ascii: "{"), "a literal")
        let size = try number64()
        if try peek() == UInt8(ascii: "+") { index += 1 }
        try expect(UInt8(ascii: "}"), "}")
        if try peek() == 0x0D { index += 1 }
        try expect(0x0A, "CRLF after literal size")
        guard size <= UInt64(bytes.count - index) else { throw ParseFailure.incomplete }
        let end = index + Int(size)
        defer { index = end }
        let body = Array(bytes[index ..< end])
        if !allowBinary, body.contains(0) { throw ParseFailure.bad("NUL in literal") }
        return body
    }

    /// string = quoted / literal
    mutating func string() throws -> [UInt8] {
        switch try peek() {
        case UInt8(ascii: "\""): return try quoted()
        case UInt8(ascii: "{"): return try literal()
        default: throw ParseFailure.bad("expected a string")
        }
    }

    /// astring = 1*ASTRING-CHAR / string
    mutating func astring() throws -> [UInt8] {
        switch try peek() {
        case UInt8(ascii: "\""), UInt8(ascii: "{"): return try string()
        default:
            let slice = try run(IMAPGrammar.isAStringChar)
            guard !slice.isEmpty else { throw ParseFailure.bad("expected a string") }
            return Array(slice)
        }
    }

    mutating func astringText() throws -> String { String(decoding: try astring(), as: UTF8.self) }

    /// nstring = string / nil
    mutating func nstring() throws -> [UInt8]? {
        if try peek() == UInt8(ascii: "N") || peek() == UInt8(ascii: "n") {
            let w = try word()
            guard w == "NIL" else { throw ParseFailure.bad("expected NIL or a string") }
            return nil
        }
        return try string()
    }

    /// mailbox = "INBOX" / astring
    mutating func mailbox() throws -> MailboxName { MailboxName(try astring()) }

    /// list-mailbox = 1*list-char / string
    mutating func listMailbox() throws -> MailboxName {
        switch try peek() {
        case UInt8(ascii: "\""), UInt8(ascii: "{"): return MailboxName(try string())
        default:
            let slice = try run(IMAPGrammar.isListChar)
            guard !slice.isEmpty else { throw ParseFailure.bad("expected a mailbox pattern") }
            return MailboxName(Array(slice))
        }
    }

    /// A parenthesised, space-separated list: "(" [item *(SP item)] ")".
    mutating func list<T>(allowEmpty: Bool = true, _ item: (inout Cursor) throws -> T) throws -> [T] {
        try expect(UInt8(ascii: "("), "(")
        try enter()
        defer { leave() }
        var items: [T] = []
        if try peek() == UInt8(ascii: ")") {
            guard allowEmpty else { throw ParseFailure.bad("empty list") }
            index += 1
            return items
        }
        while true {
            items.append(try item(&self))
            guard items.count <= limits.maxListItems else { throw ParseFailure.bad("list too long") }
            let b = try peek()
            index += 1
            if b == UInt8(ascii: ")") { return items }
            guard b == 0x20 else { throw ParseFailure.bad("expected a space or )") }
        }
    }

    // MARK: Flags (RFC 9051 §9 `flag`, `flag-list`)

    /// flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" / flag-keyword / flag-extension
    mutating func flag() throws -> Flag {
        if try peek() == UInt8(ascii: "\\") {
            index += 1
            return Flag("\\" + (try atom()))
        }
        return Flag(try atom())
    }

    mutating func flagList() throws -> [Flag] { try list { try $0.flag() } }

    // MARK: Sequence sets (RFC 9051 §9 `sequence-set`; RFC 5182 `$`)

    mutating func sequenceNumber() throws -> SequenceNumber {
        if try peek() == UInt8(ascii: "*") {
            index += 1
            return .last
        }
        return .number(try nzNumber())
    }

    mutating func sequenceSet() throws -> SequenceSet {
        if try peek() == UInt8(ascii: "$") {
            index += 1
            return .saved
        }
        var ranges: [SequenceRange] = []
        while true {
            let first = try sequenceNumber()
            if try peek() == UInt8(ascii: ":") {
                index += 1
                ranges.append(SequenceRange(first, try sequenceNumber()))
            } else {
                ranges.append(SequenceRange(first))
            }
            guard ranges.count <= limits.maxListItems else { throw ParseFailure.bad("sequence set too long") }
            guard try peek() == UInt8(ascii: ",") else { return .ranges(ranges) }
            index += 1
        }
    }

    /// seq-match-data = "(" known-sequence-set SP known-uid-set ")" (RFC 7162 §3.2.5).
    mutating func sequenceMatch() throws -> (sequences: SequenceSet, uids: SequenceSet) {
        try expect(UInt8(ascii: "("), "(")
        let sequences = try sequenceSet()
        try space()
        let uids = try sequenceSet()
        try expect(UInt8(ascii: ")"), ")")
        if case .saved = sequences { throw ParseFailure.bad("$ is not allowed in QRESYNC") }
        if case .saved = uids { throw ParseFailure.bad("$ is not allowed in QRESYNC") }
        return (sequences, uids)
    }

    // MARK: Dates (RFC 9051 §9 `date`, `date-time`)

    mutating func month() throws -> Int {
        let word = String(decoding: try run { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) }, as: UTF8.self)
        guard let m = IMAPDate.monthNames.firstIndex(where: { $0.caseInsensitiveCompare(word) == .orderedSame }) else {
            throw ParseFailure.bad("invalid month")
        }
        return m + 1
    }

    mutating func digits(_ min: Int, _ max: Int) throws -> Int {
        let d = try run(IMAPGrammar.isDigit)
        guard d.count >= min, d.count <= max else { throw ParseFailure.bad("invalid date") }
        return d.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }

    /// date = date-text / DQUOTE date-text DQUOTE; date-text = date-day "-" date-month "-" date-year
    mutating func date() throws -> IMAPDate {
        let quotedForm = peek(is: UInt8(ascii: "\""))
        if quotedForm { index += 1 }
        let day = try digits(1, 2)
        try expect(UInt8(ascii: "-"), "-")
        let month = try month()
        try expect(UInt8(ascii: "-"), "-")
        let year = try digits(4, 4)
        if quotedForm { try expect(UInt8(ascii: "\""), "\"") }
        guard day >= 1, day <= 31 else { throw ParseFailure.bad("invalid day") }
        return IMAPDate(year: year, month: month, day: day)
    }

    /// date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
    mutating func dateTime() throws -> Date {
        try expect(UInt8(ascii: "\""), "a date-time")
        if peek(is: 0x20) { index += 1 }
        let day = try digits(1, 2)
        try expect(UInt8(ascii: "-"), "-")
        let month = try month()
        try expect(UInt8(ascii: "-"), "-")
        let year = try digits(4, 4)
        try space()
        let hour = try digits(2, 2)
        try expect(UInt8(ascii: ":"), ":")
        let minute = try digits(2, 2)
        try expect(UInt8(ascii: ":"), ":")
        let second = try digits(2, 2)
        try space()
        let sign = try peek()
        guard sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") else { throw ParseFailure.bad("invalid zone") }
        index += 1
        let zone = try digits(4, 4)
        try expect(UInt8(ascii: "\""), "\"")
        guard day >= 1, day <= 31, hour <= 23, minute <= 59, second <= 60, zone % 100 < 60 else {
            throw ParseFailure.bad("invalid date-time")
        }
        let offset = (zone / 100 * 3600 + zone % 100 * 60) * (sign == UInt8(ascii: "-") ? -1 : 1)
        let days = IMAPDate(year: year, month: month, day: day).dayNumber
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }
}
