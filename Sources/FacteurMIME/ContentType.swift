// MIME header values with parameters: Content-Type (RFC 2045 §5.1), Content-Disposition (RFC 2183),
// Content-Transfer-Encoding (RFC 2045 §6.1), and RFC 2231 parameter value continuations, charsets
// and languages (§3, §4, §4.1). Lenient the way mail readers are: comments anywhere, spaces around "=",
// unquoted values with spaces, missing or doubled semicolons.

/// A parsed Content-Type value.
public struct ContentType: Sendable, Equatable {
    /// Top-level type as written (`text`, `Multipart`); compare with `hasType`.
    public var type: String
    public var subtype: String
    /// RFC 2231-decoded parameters, in the order they first appear.
    public var parameters: [MIMEParameter]

    public init(type: String, subtype: String, parameters: [MIMEParameter] = []) {
        self.type = type
        self.subtype = subtype
        self.parameters = parameters
    }

    /// Parses a Content-Type value (`text/plain; charset="utf-8"`). Nil when there is no `type/subtype`
    /// (RFC 2045 §5.2 then says to assume text/plain; charset=us-ascii).
    public init?(parsing value: String) {
        self.init(parsingBytes: Array(value.utf8))
    }

    public init?<C: Collection>(parsingBytes value: C) where C.Element == UInt8 {
        let b = Array(value)
        var log = DefectLog()
        guard let raw = MIMEValueParser.parseContentType(b, log: &log) else { return nil }
        self.init(type: raw.type, subtype: raw.subtype, parameters: MIMEValueParser.decodeParameters(raw.parameters, log: &log))
    }

    /// `type/subtype` in lowercase.
    public var mimeType: String { ASCII.lowercased(type + "/" + subtype) }

    /// Whether the type is `type` (and the subtype `subtype` when given), ignoring case.
    public func hasType(_ type: String, _ subtype: String? = nil) -> Bool {
        ASCII.equalsIgnoringCase(self.type, type) && (subtype.map { ASCII.equalsIgnoringCase(self.subtype, $0) } ?? true)
    }

    /// The value of parameter `name` (any case), or nil.
    public func parameter(_ name: String) -> String? { parameters.value(named: name) }
}

extension ContentDisposition {
    /// Parses a Content-Disposition value (`attachment; filename="a.pdf"`). Nil when it has no type token.
    public init?(parsing value: String) {
        var log = DefectLog()
        guard let raw = MIMEValueParser.parseDisposition(Array(value.utf8), log: &log) else { return nil }
        self.init(type: raw.type, parameters: MIMEValueParser.decodeParameters(raw.parameters, log: &log))
    }

    /// The value of parameter `name` (any case), or nil.
    public func parameter(_ name: String) -> String? { parameters.value(named: name) }
}

extension Array where Element == MIMEParameter {
    /// The value of the first parameter called `name`, ignoring case (RFC 2045 §5.1: names are case-insensitive).
    public func value(named name: String) -> String? {
        first { ASCII.equalsIgnoringCase($0.name, name) }?.value
    }

    /// Parameters as written (what a `BodyPart` keeps, and IMAP reports) with RFC 2231 continuations
    /// joined and `name*` values decoded (what a reader wants).
    public var rfc2231Decoded: [MIMEParameter] {
        guard contains(where: { $0.name.utf8.contains(ASCII.asterisk) }) else { return self }
        var log = DefectLog()
        return MIMEValueParser.decodeParameters(map { RawParameter(name: [UInt8]($0.name.utf8), value: [UInt8]($0.value.utf8)) },
                                                log: &log)
    }
}

extension ContentDisposition {
    /// The value of parameter `name` (any case), RFC 2231-decoded, or nil.
    public func decodedParameter(_ name: String) -> String? { parameters.rfc2231Decoded.value(named: name) }
}

extension BodyPart {
    /// The value of Content-Type parameter `name` (any case), RFC 2231-decoded, or nil.
    public func parameter(_ name: String) -> String? { parameters.rfc2231Decoded.value(named: name) }

    /// `type/subtype` in lowercase.
    public var mimeType: String { ASCII.lowercased(type + "/" + subtype) }

    /// Whether this part is message/rfc822 or message/global (RFC 6532 §3.7): an encapsulated message.
    public var isEncapsulatedMessage: Bool {
        ASCII.equalsIgnoringCase(type, "message")
            && (ASCII.equalsIgnoringCase(subtype, "rfc822") || ASCII.equalsIgnoringCase(subtype, "global"))
    }

    /// The attachment's file name: Content-Disposition `filename`, else Content-Type `name` (RFC 2183 §2.3),
    /// with RFC 2047 encoded words decoded (not standard in parameters, but what mailers write).
    public var fileName: String? {
        guard let raw = disposition?.decodedParameter("filename") ?? parameter("name") else { return nil }
        return EncodedWords.decode(raw)
    }
}

/// One parameter as written, before RFC 2231 assembly.
struct RawParameter {
    var name: [UInt8]
    var value: [UInt8]
}

struct RawContentType {
    var type: String
    var subtype: String
    var parameters: [RawParameter]
}

enum MIMEValueParser {
    // MARK: Content-Type / Content-Disposition / Content-Transfer-Encoding

    /// type "/" subtype *(";" parameter), RFC 2045 §5.1, with CFWS allowed around every token.
    static func parseContentType(_ b: [UInt8], log: inout DefectLog) -> RawContentType? {
        var i = 0
        skipCFWS(b, &i)
        let type = token(b, &i)
        skipCFWS(b, &i)
        guard !type.isEmpty, i < b.count, b[i] == ASCII.slash else {
            log.add("Content-Type has no type/subtype")
            return nil
        }
        i += 1
        skipCFWS(b, &i)
        let subtype = token(b, &i)
        guard !subtype.isEmpty else {
            log.add("Content-Type has no subtype")
            return nil
        }
        let params = parameters(b, from: i, log: &log)
        return RawContentType(type: String(decoding: type, as: UTF8.self), subtype: String(decoding: subtype, as: UTF8.self),
                              parameters: params)
    }

    /// disposition-type *(";" disposition-parm), RFC 2183 §2.
    static func parseDisposition(_ b: [UInt8], log: inout DefectLog) -> (type: String, parameters: [RawParameter])? {
        var i = 0
        skipCFWS(b, &i)
        let type = token(b, &i)
        guard !type.isEmpty else {
            log.add("Content-Disposition has no type")
            return nil
        }
        return (String(decoding: type, as: UTF8.self), parameters(b, from: i, log: &log))
    }

    /// The mechanism token of Content-Transfer-Encoding (RFC 2045 §6.1), or nil when there is none.
    static func parseTransferEncoding(_ b: [UInt8], log: inout DefectLog) -> String? {
        var i = 0
        skipCFWS(b, &i)
        let t = token(b, &i)
        guard !t.isEmpty else { return nil }
        skipCFWS(b, &i)
        if i < b.count {
            // `8 bit` is not a mechanism: treat the field as invalid, so the default (7bit) applies, rather
            // than report a token that is neither the field's value nor the default.
            log.add("Content-Transfer-Encoding has extra text after \"\(String(decoding: t, as: UTF8.self))\"")
            return nil
        }
        return String(decoding: t, as: UTF8.self)
    }

    /// Content-Language (RFC 3282): a comma-separated list of language tags.
    static func parseLanguageList(_ b: [UInt8]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < b.count, out.count < MIMELimits.maxParameters {
            skipCFWS(b, &i)
            let t = token(b, &i)
            if t.isEmpty {
                if i < b.count { i += 1 }  // a comma, or a stray byte
            } else {
                out.append(String(decoding: t, as: UTF8.self))
            }
        }
        return out
    }

    // MARK: Lexical pieces

    static func token(_ b: [UInt8], _ i: inout Int) -> ArraySlice<UInt8> {
        let s = i
        while i < b.count, ASCII.isTokenChar(b[i]) { i += 1 }
        return b[s..<i]
    }

    /// Skips whitespace and RFC 5322 comments (nested, with quoted-pairs). An unclosed comment runs to the end.
    static func skipCFWS(_ b: [UInt8], _ i: inout Int) {
        while i < b.count {
            let c = b[i]
            if ASCII.isWhitespace(c) {
                i += 1
            } else if c == ASCII.openParen {
                skipComment(b, &i)
            } else {
                return
            }
        }
    }

    /// Skips one comment starting at `i` (which is "("), returning its text without the outer parentheses.
    @discardableResult
    static func skipComment(_ b: [UInt8], _ i: inout Int) -> ArraySlice<UInt8> {
        let start = i + 1
        var depth = 0
        while i < b.count {
            let c = b[i]
            if c == ASCII.backslash {
                i += 2
                continue
            }
            if c == ASCII.openParen {
                depth += 1
            } else if c == ASCII.closeParen {
                depth -= 1
                if depth == 0 {
                    i += 1
                    return b[start..<(i - 1)]
                }
            }
            i += 1
        }
        i = b.count
        return b[min(start, b.count)..<b.count]
    }

    /// A quoted-string starting at `i` (which is the opening quote): its content with quoted-pairs undone.
    /// An unclosed quote runs to the end of the value.
    static func quotedString(_ b: [UInt8], _ i: inout Int) -> [UInt8] {
        var out: [UInt8] = []
        i += 1
        while i < b.count {
            let c = b[i]
            if c == ASCII.dquote {
                i += 1
                return out
            }
            if c == ASCII.backslash, i + 1 < b.count {
                out.append(b[i + 1])
                i += 2
                continue
            }
            if c != ASCII.cr && c != ASCII.lf { out.append(c) }
            i += 1
        }
        return out
    }

    // MARK: Parameters

    /// *(";" attribute "=" value), RFC 2045 §5.1, tolerant: "; ;", "name = value", unquoted values with
    /// spaces, comments after values; a parameter without "=" is skipped.
    static func parameters(_ b: [UInt8], from start: Int, log: inout DefectLog) -> [RawParameter] {
        var out: [RawParameter] = []
        var overflow = false
        var i = start
        let n = b.count
        while i < n {
            skipCFWS(b, &i)
            guard i < n else { break }
            if b[i] == ASCII.semicolon {
                i += 1
                continue
            }
            let nameStart = i
            while i < n, ASCII.isTokenChar(b[i]) || b[i] == ASCII.asterisk { i += 1 }
            let name = Array(b[nameStart..<i])
            skipCFWS(b, &i)
            guard !name.isEmpty, i < n, b[i] == ASCII.equals else {
                log.add("MIME parameter \"\(String(decoding: b[nameStart..<i], as: UTF8.self))\" has no value")
                while i < n, b[i] != ASCII.semicolon { i += 1 }  // resynchronise at the next ";"
                continue
            }
            i += 1
            skipCFWS(b, &i)
            var value: [UInt8]
            if i < n, b[i] == ASCII.dquote {
                value = quotedString(b, &i)
                // Anything but CFWS before the next ";" is garbage: keep it, as readers do (name="a"b).
                skipCFWS(b, &i)
                if i < n, b[i] != ASCII.semicolon {
                    let s = i
                    while i < n, b[i] != ASCII.semicolon { i += 1 }
                    value += ASCII.trimmed(b[s..<i])
                    log.add("text after a quoted MIME parameter value")
                }
            } else {
                value = unquotedValue(b, &i, log: &log)
            }
            if out.count < MIMELimits.maxParameters {
                out.append(RawParameter(name: name, value: value))
            } else if !overflow {
                overflow = true
                log.add("more than \(MIMELimits.maxParameters) MIME parameters; the rest are ignored")
            }
        }
        return out
    }

    /// An unquoted value runs to the next ";". Whitespace-separated chunks are joined with one space
    /// (`name=My File.pdf`, as readers do); a chunk opening with "(" is a comment and is dropped (RFC 2045
    /// allows comments there). A chunk that is itself `attribute=…` means a ";" is missing (RFC 2046
    /// §5.2.3.7's own example): the value ends before it and the broken parameter is dropped, as Dovecot does.
    private static func unquotedValue(_ b: [UInt8], _ i: inout Int, log: inout DefectLog) -> [UInt8] {
        var out: [UInt8] = []
        let n = b.count
        var needSpace = false
        while i < n, b[i] != ASCII.semicolon {
            if needSpace, startsParameter(b, at: i) {
                log.add("MIME parameter value followed by another parameter without \";\"")
                while i < n, b[i] != ASCII.semicolon { i += 1 }
                break
            }
            let c = b[i]
            if ASCII.isWhitespace(c) {
                needSpace = !out.isEmpty
                i += 1
                continue
            }
            if c == ASCII.openParen {
                skipComment(b, &i)
                continue
            }
            let s = i
            while i < n, b[i] != ASCII.semicolon, !ASCII.isWhitespace(b[i]) { i += 1 }
            if needSpace { out.append(ASCII.space) }
            out += b[s..<i]
            needSpace = false
        }
        return out
    }

    /// `token "="` at `i`: the start of a parameter.
    private static func startsParameter(_ b: [UInt8], at start: Int) -> Bool {
        var i = start
        while i < b.count, ASCII.isTokenChar(b[i]) || b[i] == ASCII.asterisk { i += 1 }
        return i > start && i < b.count && b[i] == ASCII.equals
    }

    /// Parameters as written, for a `BodyPart`: RFC 9051 §7.5.2 reports "attribute/value pairs" of the
    /// field without RFC 2231 decoding (clients decode `name*` themselves, keeping its charset and
    /// language). RFC 2231 §3 continuations (`name*0*`, `name*1*`, …) are one value cut in pieces, so
    /// they are joined in section order, still encoded, under `name*` (`name` when no section is
    /// extended), as Dovecot does. Repeated names are dropped (the first wins, as in `decodeParameters`).
    static func writtenParameters(_ raw: [RawParameter]) -> [MIMEParameter] {
        struct Pending { var slot: Int; var extended: Bool; var sections: [(Int, [UInt8])] }
        var out: [MIMEParameter] = []
        var seen = Set<String>()
        var continued: [String: Pending] = [:]
        for p in raw {
            if let section = continuationSection(p.name) {
                let key = ASCII.lowercased(section.base)
                if var pending = continued[key] {
                    guard pending.sections.count < MIMELimits.maxParameters,
                          !pending.sections.contains(where: { $0.0 == section.index }) else { continue }
                    pending.extended = pending.extended || section.extended
                    pending.sections.append((section.index, p.value))
                    continued[key] = pending
                } else if seen.insert(key).inserted {
                    continued[key] = Pending(slot: out.count, extended: section.extended, sections: [(section.index, p.value)])
                    out.append(MIMEParameter(name: section.base, value: ""))
                }
                continue
            }
            let name = String(decoding: p.name, as: UTF8.self)
            var key = ASCII.lowercased(name)
            if key.hasSuffix("*") { key.removeLast() }
            guard seen.insert(key).inserted else { continue }
            out.append(MIMEParameter(name: name, value: Charset.decodeUTF8OrWindows1252(p.value)))
        }
        for (_, pending) in continued {
            let joined = pending.sections.sorted { $0.0 < $1.0 }.flatMap(\.1)
            out[pending.slot].value = Charset.decodeUTF8OrWindows1252(joined)
            if pending.extended { out[pending.slot].name += "*" }
        }
        return out
    }

    /// `base*N` or `base*N*` (RFC 2231 §3, §4.1): the base name, the section number, whether extended.
    private static func continuationSection(_ name: [UInt8]) -> (base: String, index: Int, extended: Bool)? {
        guard let star = name.firstIndex(of: ASCII.asterisk), star > 0 else { return nil }
        var digits = name[(star + 1)...]
        let extended = digits.last == ASCII.asterisk
        if extended { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let index = Int(String(decoding: digits, as: UTF8.self)) else { return nil }
        return (String(decoding: name[..<star], as: UTF8.self), index, extended)
    }

    // MARK: RFC 2231

    /// Assembles RFC 2231 parameters: `name*0`, `name*1*`, … continuations (§3) are joined in section
    /// order; `name*` and extended sections are percent-decoded, and the first one's `charset'language'`
    /// prefix (§4) gives the charset of the whole value. A plain `name` is ignored when `name*…` exists.
    static func decodeParameters(_ raw: [RawParameter], log: inout DefectLog) -> [MIMEParameter] {
        // Fast path: no "*" in any name, so nothing to assemble.
        if !raw.contains(where: { $0.name.contains(ASCII.asterisk) }) {
            var out: [MIMEParameter] = []
            out.reserveCapacity(raw.count)
            for p in raw {
                let name = String(decoding: p.name, as: UTF8.self)
                if out.contains(where: { ASCII.equalsIgnoringCase($0.name, name) }) {
                    log.add("MIME parameter \"\(name)\" given twice; the first is kept")
                    continue
                }
                out.append(MIMEParameter(name: name, value: Charset.decodeUTF8OrWindows1252(p.value)))
            }
            return out
        }

        struct Section { var index: Int; var extended: Bool; var value: [UInt8] }
        struct Assembly { var name: String; var key: String; var plain: [UInt8]?; var sections: [Section] }
        var order: [Assembly] = []

        for p in raw {
            var base = p.name[...]
            var section: Int? = nil
            var extended = false
            if base.last == ASCII.asterisk {
                extended = true
                base = base.dropLast()
            }
            if let star = base.firstIndex(of: ASCII.asterisk) {
                let digits = base[(star + 1)...]
                if !digits.isEmpty, digits.count <= 4, digits.allSatisfy(ASCII.isDigit),
                   let v = Int(String(decoding: digits, as: UTF8.self)), v <= MIMELimits.maxParameterSection,
                   digits.count == 1 || digits.first != 0x30 {
                    section = v
                    base = base[..<star]
                } else {
                    log.add("bad RFC 2231 section in parameter \"\(String(decoding: p.name, as: UTF8.self))\"")
                    continue
                }
            } else if extended {
                section = nil  // name*=charset'lang'value: a single extended value
            }
            let name = String(decoding: base, as: UTF8.self)
            let key = ASCII.lowercased(name)
            var idx = order.firstIndex { $0.key == key }
            if idx == nil {
                order.append(Assembly(name: name, key: key, plain: nil, sections: []))
                idx = order.count - 1
            }
            guard let k = idx else { continue }
            if !extended && section == nil {
                if order[k].plain == nil { order[k].plain = p.value }
                continue
            }
            let s = section ?? 0
            if order[k].sections.contains(where: { $0.index == s }) {
                log.add("RFC 2231 section \(s) of \"\(name)\" given twice")
                continue
            }
            order[k].sections.append(Section(index: s, extended: extended, value: p.value))
        }

        var out: [MIMEParameter] = []
        for a in order {
            if a.sections.isEmpty {
                out.append(MIMEParameter(name: a.name, value: Charset.decodeUTF8OrWindows1252(a.plain ?? [])))
                continue
            }
            let sections = a.sections.sorted { $0.index < $1.index }
            var bytes: [UInt8] = []
            var charset = ""
            var expected = 0
            for (n, s) in sections.enumerated() {
                guard s.index == expected else {
                    log.add("RFC 2231 sections of \"\(a.name)\" skip from \(expected - 1) to \(s.index); the rest are ignored")
                    break
                }
                expected += 1
                var v = s.value[...]
                if s.extended && n == 0 {
                    // charset'language'value; both may be empty. Without the two quotes, take it all as value.
                    if let q1 = v.firstIndex(of: ASCII.apostrophe),
                       let q2 = v[(q1 + 1)...].firstIndex(of: ASCII.apostrophe) {
                        charset = String(decoding: v[..<q1], as: UTF8.self)
                        v = v[(q2 + 1)...]
                    } else {
                        log.add("RFC 2231 value of \"\(a.name)\" has no charset'language' prefix")
                    }
                }
                bytes += s.extended ? percentDecode(v) : Array(v)
            }
            let value: String
            if !charset.isEmpty, let s = Charset.decode(bytes, charset: charset) {
                value = s
            } else {
                if !charset.isEmpty { log.add("unknown charset \"\(charset)\" in RFC 2231 parameter \"\(a.name)\"") }
                value = Charset.decodeUTF8OrWindows1252(bytes)
            }
            out.append(MIMEParameter(name: a.name, value: value))
        }
        return out
    }

    /// RFC 2231 §4 "%XX" escapes; a "%" not followed by two hex digits is kept.
    static func percentDecode(_ v: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(v.count)
        var i = v.startIndex
        while i < v.endIndex {
            let c = v[i]
            if c == ASCII.percent, i + 2 < v.endIndex, let hi = ASCII.hexValue(v[i + 1]), let lo = ASCII.hexValue(v[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(c)
                i += 1
            }
        }
        return out
    }
}
