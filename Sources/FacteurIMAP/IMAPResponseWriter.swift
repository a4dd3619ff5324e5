// Writes IMAP responses (RFC 9051 §7, §9 `response`): atoms, numbers, strings (quoted when
// they can be, a literal otherwise), NIL, lists, and the ENVELOPE and BODYSTRUCTURE of a stored
// message (RFC 9051 §7.5.2) from FacteurMIME's `MessageSummary`.

import FacteurMIME
import Foundation

public struct IMAPResponseWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// UTF8=ACCEPT (RFC 6855 §3) is enabled: UTF-8 may go into quoted strings.
    public var utf8Accepted: Bool

    public init(utf8Accepted: Bool = false, capacity: Int = 128) {
        self.utf8Accepted = utf8Accepted
        bytes.reserveCapacity(capacity)
    }

    public mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }
    public mutating func raw(_ data: [UInt8]) { bytes.append(contentsOf: data) }
    public mutating func raw<C: Collection>(_ data: C) where C.Element == UInt8 { bytes.append(contentsOf: data) }
    public mutating func space() { bytes.append(0x20) }
    public mutating func crlf() { bytes.append(contentsOf: [0x0D, 0x0A]) }
    public mutating func number<N: BinaryInteger>(_ n: N) { raw(String(n)) }
    public mutating func nilValue() { raw("NIL") }

    /// A string: quoted when every byte is allowed in a quoted string and it is short, a literal
    /// otherwise (RFC 9051 §4.3).
    public mutating func string<C: Collection>(_ value: C) where C.Element == UInt8 {
        if value.count <= 1024, value.allSatisfy({ b in
            b != 0x0D && b != 0x0A && b != 0x00 && (b < 0x80 || utf8Accepted)
        }) {
            bytes.append(UInt8(ascii: "\""))
            for b in value {
                if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { bytes.append(UInt8(ascii: "\\")) }
                bytes.append(b)
            }
            bytes.append(UInt8(ascii: "\""))
        } else {
            literal(value)
        }
    }

    public mutating func string(_ value: String) { string(Array(value.utf8)) }

    public mutating func literal<C: Collection>(_ value: C) where C.Element == UInt8 {
        raw("{\(value.count)}\r\n")
        bytes.append(contentsOf: value)
    }

    /// nstring = string / nil
    public mutating func nstring(_ value: String?) {
        if let value { string(value) } else { nilValue() }
    }

    /// astring as the server writes it (mailbox names in LIST, STATUS): an atom when possible.
    public mutating func astring(_ value: [UInt8]) {
        if !value.isEmpty, value.count <= 1024, value.allSatisfy(IMAPGrammar.isAStringChar) {
            bytes.append(contentsOf: value)
        } else {
            string(value)
        }
    }

    public mutating func list<S: Sequence>(_ items: S, _ write: (inout IMAPResponseWriter, S.Element) -> Void) {
        bytes.append(UInt8(ascii: "("))
        var first = true
        for item in items {
            if !first { space() }
            first = false
            write(&self, item)
        }
        bytes.append(UInt8(ascii: ")"))
    }

    public mutating func flags(_ flags: [Flag]) {
        list(flags) { w, f in w.raw(f.text) }
    }

    // MARK: ENVELOPE (RFC 9051 §7.5.2)

    /// envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to
    ///            SP env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"
    public mutating func envelope(_ e: Envelope) {
        raw("(")
        nstring(e.date); space()
        nstring(e.subject); space()
        addresses(e.from); space()
        addresses(e.sender); space()
        addresses(e.replyTo); space()
        addresses(e.to); space()
        addresses(e.cc); space()
        addresses(e.bcc); space()
        nstring(e.inReplyTo); space()
        nstring(e.messageID)
        raw(")")
    }

    /// "(" 1*address ")" / nil
    mutating func addresses(_ list: [EnvelopeAddress]) {
        guard !list.isEmpty else { return nilValue() }
        raw("(")
        for a in list {
            // address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
            raw("(")
            nstring(a.name); space()
            nstring(a.adl); space()
            nstring(a.mailbox); space()
            nstring(a.host)
            raw(")")
        }
        raw(")")
    }

    // MARK: BODYSTRUCTURE / BODY (RFC 9051 §7.5.2 `body`, RFC 3501 §7.4.2)

    /// `extensible`: BODYSTRUCTURE (with extension data) rather than BODY.
    public mutating func bodyStructure(_ part: BodyPart, extensible: Bool, depth: Int = 0) {
        // The stored structure's depth is bounded by FacteurMIME's limits; this guards anyway.
        guard depth < 100 else { return raw("(\"text\" \"plain\" NIL NIL NIL \"7BIT\" 0 0)") }
        if part.isMultipart {
            // body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
            raw("(")
            if part.children.isEmpty {
                // A multipart without parts cannot be written (1*body): like Dovecot, write one
                // empty text/plain part, with extension data like every other part of the answer.
                raw("(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0")
                if extensible { raw(" NIL NIL NIL NIL") }
                raw(")")
            }
            for child in part.children { bodyStructure(child, extensible: extensible, depth: depth + 1) }
            space()
            string(part.subtype)
            if extensible {
                // body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]]
                space(); parameters(part.parameters)
                space(); disposition(part.disposition)
                space(); language(part.language)
                space(); nstring(part.location)
            }
            raw(")")
            return
        }
        // body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]
        raw("(")
        string(part.type); space()
        string(part.subtype); space()
        parameters(part.parameters); space()
        nstring(part.id); space()
        nstring(part.description); space()
        string(part.encoding); space()
        number(part.bodyLength)
        let type = part.type.lowercased(), subtype = part.subtype.lowercased()
        if type == "message", subtype == "rfc822" || subtype == "global", let inner = part.children.first {
            // body-type-msg = media-message SP body-fields SP envelope SP body SP body-fld-lines
            space(); envelope(part.encapsulatedEnvelope ?? Envelope())
            space(); bodyStructure(inner, extensible: extensible, depth: depth + 1)
            space(); number(part.lines)
        } else if type == "text" {
            space(); number(part.lines)
        }
        if extensible {
            // body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]]
            space(); nstring(part.md5)
            space(); disposition(part.disposition)
            space(); language(part.language)
            space(); nstring(part.location)
        }
        raw(")")
    }

    /// body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
    mutating func parameters(_ parameters: [MIMEParameter]) {
        guard !parameters.isEmpty else { return nilValue() }
        list(parameters) { w, p in
            w.string(p.name); w.space(); w.string(p.value)
        }
    }

    /// body-fld-dsp = "(" string SP body-fld-param ")" / nil
    mutating func disposition(_ d: ContentDisposition?) {
        guard let d else { return nilValue() }
        raw("(")
        string(d.type); space()
        parameters(d.parameters)
        raw(")")
    }

    /// body-fld-lang = nstring / "(" string *(SP string) ")"
    mutating func language(_ languages: [String]?) {
        guard let languages, !languages.isEmpty else { return nilValue() }
        if languages.count == 1 { return string(languages[0]) }
        list(languages) { w, l in w.string(l) }
    }
}

extension IMAPDate {
    /// `d-Mon-yyyy`
    public var text: String {
        "\(day)-\(IMAPDate.monthNames[max(0, min(11, month - 1))])-\(year)"
    }
}

enum IMAPDateFormat {
    /// date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE, in UTC.
    static func dateTime(_ date: Date) -> String {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        var days = seconds / 86_400
        var rest = seconds % 86_400
        if rest < 0 { rest += 86_400; days -= 1 }
        let (y, m, d) = civil(days)
        let day = d < 10 ? " \(d)" : "\(d)"
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\"\(day)-\(IMAPDate.monthNames[m - 1])-\(y) \(two(rest / 3600)):\(two(rest % 3600 / 60)):\(two(rest % 60)) +0000\""
    }

    /// Howard Hinnant's civil_from_days.
    static func civil(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    static func day(of date: Date) -> Int {
        Int((date.timeIntervalSince1970 / 86_400).rounded(.down))
    }
}
