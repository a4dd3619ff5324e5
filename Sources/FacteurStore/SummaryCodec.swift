// SummaryCodec: the stored binary form of a message's parsed structure (`MessageSummary`,
// what IMAP FETCH ENVELOPE / BODYSTRUCTURE need, RFC 9051 §7.5.2), written once per blob at
// delivery and read on every FETCH.
//
// Why not Codable: measured on this machine (release build, a multipart summary of ~1.3 KB),
// JSONEncoder took ~90 µs to encode and ~75 µs to decode, and even a compact binary Codable
// encoder ~34 µs each way, most of it generic-metadata lookups and container allocations that
// Codable cannot avoid. Field-by-field code takes a few µs. The price: a field added to the
// summary types must be added here too (bump `formatVersion`, keep decoding older rows with
// the new field's default); `SummaryCodecTests` counts the stored properties of each type so
// that a forgotten field fails a test instead of silently disappearing.
//
// Layout: one format byte, then the fields in declaration order. Integers are LEB128 varints
// (signed ones zigzag-encoded); a string is its UTF-8 length then its bytes; an optional
// string or array stores 0 for nil, else length + 1; an optional struct a 0/1 tag; an array
// its count then its elements.

import FacteurMIME

enum SummaryCodec {
    static let formatVersion: UInt8 = 1
    /// MIME nesting the decoder accepts; the parser's own cap is far below.
    static let maxDepth = 128

    static func encode(_ summary: MessageSummary) -> [UInt8] {
        var w = Writer()
        w.out.reserveCapacity(256)
        w.out.append(formatVersion)
        w.envelope(summary.envelope)
        w.part(summary.body)
        w.strings(summary.defects)
        return w.out
    }

    static func decode(_ bytes: [UInt8]) throws -> MessageSummary {
        var r = Reader(bytes: bytes)
        guard try r.byte() == formatVersion else { throw StoreError.invalid("summary: unknown format") }
        let envelope = try r.envelope()
        let body = try r.part(depth: 0)
        let defects = try r.strings()
        guard r.position == bytes.count else { throw StoreError.invalid("summary: trailing bytes") }
        return MessageSummary(envelope: envelope, body: body, defects: defects)
    }

    // MARK: Writing

    struct Writer {
        var out: [UInt8] = []

        mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                out.append(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            out.append(UInt8(v))
        }

        mutating func int(_ value: Int) {
            let v = Int64(value)
            varint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
        }

        mutating func string(_ s: String) {
            var s = s
            s.withUTF8 { utf8 in
                varint(UInt64(utf8.count))
                out.append(contentsOf: utf8)
            }
        }

        mutating func optional(_ s: String?) {
            guard let s else { return varint(0) }
            var copy = s
            copy.withUTF8 { utf8 in
                varint(UInt64(utf8.count) + 1)
                out.append(contentsOf: utf8)
            }
        }

        mutating func strings(_ list: [String]) {
            varint(UInt64(list.count))
            for s in list { string(s) }
        }

        mutating func optionalStrings(_ list: [String]?) {
            guard let list else { return varint(0) }
            varint(UInt64(list.count) + 1)
            for s in list { string(s) }
        }

        mutating func address(_ a: EnvelopeAddress) {
            optional(a.name)
            optional(a.adl)
            optional(a.mailbox)
            optional(a.host)
        }

        mutating func addresses(_ list: [EnvelopeAddress]) {
            varint(UInt64(list.count))
            for a in list { address(a) }
        }

        mutating func envelope(_ e: Envelope) {
            optional(e.date)
            optional(e.subject)
            addresses(e.from)
            addresses(e.sender)
            addresses(e.replyTo)
            addresses(e.to)
            addresses(e.cc)
            addresses(e.bcc)
            optional(e.inReplyTo)
            optional(e.messageID)
        }

        mutating func parameters(_ list: [MIMEParameter]) {
            varint(UInt64(list.count))
            for p in list {
                string(p.name)
                string(p.value)
            }
        }

        mutating func part(_ p: BodyPart) {
            string(p.type)
            string(p.subtype)
            parameters(p.parameters)
            optional(p.id)
            optional(p.description)
            string(p.encoding)
            optional(p.md5)
            if let d = p.disposition {
                out.append(1)
                string(d.type)
                parameters(d.parameters)
            } else {
                out.append(0)
            }
            optionalStrings(p.language)
            optional(p.location)
            int(p.headerOffset)
            int(p.headerLength)
            int(p.bodyOffset)
            int(p.bodyLength)
            int(p.lines)
            varint(UInt64(p.children.count))
            for child in p.children { part(child) }
            if let e = p.encapsulatedEnvelope {
                out.append(1)
                envelope(e)
            } else {
                out.append(0)
            }
        }
    }

    // MARK: Reading (stored data is ours, but a corrupt row must fail cleanly)

    struct Reader {
        let bytes: [UInt8]
        var position = 0

        static func corrupt(_ why: String) -> StoreError { .invalid("summary: \(why)") }

        mutating func byte() throws -> UInt8 {
            guard position < bytes.count else { throw Self.corrupt("truncated") }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func varint() throws -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                let b = try byte()
                guard shift < 64 else { throw Self.corrupt("varint too long") }
                result |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return result }
                shift += 7
            }
        }

        mutating func int() throws -> Int {
            let z = try varint()
            return Int(truncatingIfNeeded: Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1))))
        }

        /// A count of items that each take at least one byte: never more than what remains.
        mutating func count(_ raw: UInt64) throws -> Int {
            guard raw <= UInt64(bytes.count - position) else { throw Self.corrupt("bad length") }
            return Int(raw)
        }

        mutating func text(_ length: Int) -> String {
            defer { position += length }
            return String(decoding: bytes[position ..< position + length], as: UTF8.self)
        }

        mutating func string() throws -> String { text(try count(try varint())) }

        mutating func optional() throws -> String? {
            let n = try varint()
            return n == 0 ? nil : text(try count(n - 1))
        }

        mutating func strings() throws -> [String] {
            let n = try count(try varint())
            var list: [String] = []
            list.reserveCapacity(n)
            for _ in 0 ..< n { list.append(try string()) }
            return list
        }

        mutating func optionalStrings() throws -> [String]? {
            let n = try varint()
            guard n > 0 else { return nil }
            let c = try count(n - 1)
            var list: [String] = []
            list.reserveCapacity(c)
            for _ in 0 ..< c { list.append(try string()) }
            return list
        }

        mutating func flag() throws -> Bool {
            switch try byte() {
            case 0: return false
            case 1: return true
            default: throw Self.corrupt("bad tag")
            }
        }

        mutating func addresses() throws -> [EnvelopeAddress] {
            let n = try count(try varint())
            var list: [EnvelopeAddress] = []
            list.reserveCapacity(n)
            for _ in 0 ..< n {
                list.append(EnvelopeAddress(name: try optional(), adl: try optional(), mailbox: try optional(), host: try optional()))
            }
            return list
        }

        mutating func envelope() throws -> Envelope {
            Envelope(date: try optional(), subject: try optional(), from: try addresses(), sender: try addresses(),
                     replyTo: try addresses(), to: try addresses(), cc: try addresses(), bcc: try addresses(),
                     inReplyTo: try optional(), messageID: try optional())
        }

        mutating func parameters() throws -> [MIMEParameter] {
            let n = try count(try varint())
            var list: [MIMEParameter] = []
            list.reserveCapacity(n)
            for _ in 0 ..< n { list.append(MIMEParameter(name: try string(), value: try string())) }
            return list
        }

        mutating func part(depth: Int) throws -> BodyPart {
            guard depth < SummaryCodec.maxDepth else { throw Self.corrupt("nested too deep") }
            var p = BodyPart(type: try string(), subtype: try string(), parameters: try parameters(), id: try optional(),
                             description: try optional(), encoding: try string(), md5: try optional())
            if try flag() { p.disposition = ContentDisposition(type: try string(), parameters: try parameters()) }
            p.language = try optionalStrings()
            p.location = try optional()
            p.headerOffset = try int()
            p.headerLength = try int()
            p.bodyOffset = try int()
            p.bodyLength = try int()
            p.lines = try int()
            let n = try count(try varint())
            p.children.reserveCapacity(n)
            for _ in 0 ..< n { p.children.append(try part(depth: depth + 1)) }
            if try flag() { p.encapsulatedEnvelope = try envelope() }
            return p
        }
    }
}
