// Renders one message's FETCH items (RFC 9051 §7.5.2) from its stored record, MIME summary and
// bytes: BODY[section]<partial> with HEADER, HEADER.FIELDS (NOT), MIME, TEXT and part numbers
// (RFC 9051 §6.4.5), BINARY (RFC 3516), ENVELOPE, BODYSTRUCTURE. Pure: no store, no I/O.

import FacteurMIME
import FacteurStore
import Foundation

struct IMAPFetchRenderer {
    /// What the runner must load for these attributes.
    static func needsSummary(_ attributes: [FetchAttribute]) -> Bool {
        attributes.contains {
            switch $0 {
            case .envelope, .bodyStructure, .bodySection, .binary, .binarySize, .rfc822Header, .rfc822Text: return true
            default: return false
            }
        }
    }

    static func needsBytes(_ attributes: [FetchAttribute]) -> Bool {
        attributes.contains {
            switch $0 {
            case .bodySection, .binary, .binarySize, .rfc822, .rfc822Header, .rfc822Text: return true
            default: return false
            }
        }
    }

    /// Whether the bytes these attributes read all lie in the message's top-level header
    /// (BODY[HEADER], HEADER.FIELDS, HEADER.FIELDS.NOT, RFC822.HEADER): then the store reads the
    /// header alone, not the body after it.
    static func needsOnlyHeader(_ attributes: [FetchAttribute]) -> Bool {
        attributes.allSatisfy {
            switch $0 {
            case .rfc822Header:
                return true
            case .bodySection(let spec, _, _):
                guard spec.part.isEmpty, let text = spec.text else { return false }
                switch text {
                case .header, .headerFields, .headerFieldsNot: return true
                case .text, .mime: return false
                }
            case .binary, .binarySize, .rfc822, .rfc822Text:
                return false
            default:
                return true
            }
        }
    }

    /// Whether fetching these sets \Seen (RFC 9051 §6.4.5: BODY[…] and RFC822 without PEEK).
    static func setsSeen(_ attributes: [FetchAttribute]) -> Bool {
        attributes.contains {
            switch $0 {
            case .bodySection(_, _, let peek), .binary(_, _, let peek): return !peek
            case .rfc822, .rfc822Text: return true
            default: return false
            }
        }
    }

    static func flagList(_ flags: MessageFlags, keywords: [String]) -> [String] {
        var out: [String] = []
        if flags.contains(.answered) { out.append("\\Answered") }
        if flags.contains(.flagged) { out.append("\\Flagged") }
        if flags.contains(.deleted) { out.append("\\Deleted") }
        if flags.contains(.seen) { out.append("\\Seen") }
        if flags.contains(.draft) { out.append("\\Draft") }
        return out + keywords
    }

    /// `* msn FETCH (…)` for one message. `uid` is added when the command was UID FETCH.
    static func render(msn: Int, record: MessageRecord, summary: MessageSummary?, bytes: [UInt8]?,
                       attributes: [FetchAttribute], includeUID: Bool, includeModSeq: Bool, utf8: Bool) -> [UInt8] {
        var w = IMAPResponseWriter(utf8Accepted: utf8, capacity: 256)
        w.raw("* \(msn) FETCH (")
        var first = true
        func item(_ name: String) {
            if !first { w.space() }
            first = false
            w.raw(name)
        }
        var attributes = attributes
        if includeUID, !attributes.contains(.uid) { attributes.insert(.uid, at: 0) }
        if includeModSeq, !attributes.contains(.modSeq) { attributes.append(.modSeq) }
        let prefix = record.prefixLength
        for attribute in attributes {
            switch attribute {
            case .uid:
                item("UID \(record.uid)")
            case .flags:
                item("FLAGS (\(flagList(record.flags, keywords: record.keywords).joined(separator: " ")))")
            case .internalDate:
                item("INTERNALDATE " + IMAPDateFormat.dateTime(record.internalDate))
            case .rfc822Size:
                item("RFC822.SIZE \(record.size)")
            case .modSeq:
                item("MODSEQ (\(record.modSeq))")
            case .emailID:
                item("EMAILID (\(IMAPObjectID.email(record)))")
            case .threadID:
                // RFC 8474 §5.2: NIL where the server does not track threads.
                item("THREADID NIL")
            case .envelope:
                item("ENVELOPE ")
                w.envelope(summary?.envelope ?? Envelope())
            case .bodyStructure(let extensible):
                item(extensible ? "BODYSTRUCTURE " : "BODY ")
                w.bodyStructure(summary?.body ?? BodyPart(), extensible: extensible)
            case .rfc822:
                item("RFC822 ")
                w.literal(bytes ?? [])
            case .rfc822Header:
                item("RFC822.HEADER ")
                w.literal(section(SectionSpec(text: .header), summary: summary, bytes: bytes ?? [], prefix: prefix) ?? [])
            case .rfc822Text:
                item("RFC822.TEXT ")
                w.literal(section(SectionSpec(text: .text), summary: summary, bytes: bytes ?? [], prefix: prefix) ?? [])
            case .bodySection(let spec, let partial, _):
                item("BODY[\(sectionText(spec))]")
                let content = section(spec, summary: summary, bytes: bytes ?? [], prefix: prefix)
                writePartial(&w, content, partial)
            case .binary(let part, let partial, _):
                item("BINARY[\(part.map(String.init).joined(separator: "."))]")
                writePartial(&w, binary(part, summary: summary, bytes: bytes ?? [], prefix: prefix), partial, binary: true)
            case .binarySize(let part):
                item("BINARY.SIZE[\(part.map(String.init).joined(separator: "."))] ")
                w.number(binary(part, summary: summary, bytes: bytes ?? [], prefix: prefix)?.count ?? 0)
            }
        }
        w.raw(")\r\n")
        return w.bytes
    }

    static func writePartial(_ w: inout IMAPResponseWriter, _ content: [UInt8]?, _ partial: Partial?, binary: Bool = false) {
        guard let content else {
            w.raw(" NIL")
            return
        }
        var slice = content[...]
        if let partial {
            // RFC 9051 §6.4.5: "<origin>" in the response; past the end is empty.
            w.raw("<\(partial.offset)>")
            let start = min(Int(partial.offset), content.count)
            let end = min(start + Int(partial.length), content.count)
            slice = content[start ..< end]
        }
        w.space()
        if binary, slice.contains(0) {
            w.raw("~")
        }
        w.literal(slice)
    }

    static func sectionText(_ spec: SectionSpec) -> String {
        var parts = spec.part.map(String.init)
        switch spec.text {
        case nil: break
        case .header: parts.append("HEADER")
        case .text: parts.append("TEXT")
        case .mime: parts.append("MIME")
        case .headerFields(let names): parts.append("HEADER.FIELDS (\(names.map(quoteIfNeeded).joined(separator: " ")))")
        case .headerFieldsNot(let names): parts.append("HEADER.FIELDS.NOT (\(names.map(quoteIfNeeded).joined(separator: " ")))")
        }
        return parts.joined(separator: ".")
    }

    static func quoteIfNeeded(_ name: String) -> String {
        let bytes = Array(name.utf8)
        if !bytes.isEmpty, bytes.allSatisfy(IMAPGrammar.isAStringChar) { return name.uppercased() }
        var w = IMAPResponseWriter()
        w.string(bytes)
        return String(decoding: w.bytes, as: UTF8.self)
    }

    // MARK: Sections

    /// Byte range of a part's header and body in the served bytes (prefix + blob).
    struct Located {
        var part: BodyPart
        var isRoot: Bool
    }

    /// Walks part numbers (RFC 9051 §6.4.5): in a multipart, n is the n-th child; in a
    /// non-multipart message, 1 is its body; a message/rfc822 part's numbers go into the
    /// encapsulated message.
    static func locate(_ path: [Int], in root: BodyPart) -> Located? {
        var current = root
        var isRoot = true
        for n in path {
            var container = current
            if !isRoot, isMessage(current) {
                guard let inner = current.children.first else { return nil }
                container = inner
            } else if !isRoot, !current.isMultipart {
                return nil
            }
            if container.isMultipart {
                guard n >= 1, n <= container.children.count else { return nil }
                current = container.children[n - 1]
            } else {
                guard n == 1 else { return nil }
                current = container
            }
            isRoot = false
        }
        return Located(part: current, isRoot: isRoot)
    }

    static func isMessage(_ part: BodyPart) -> Bool {
        part.type.lowercased() == "message" && (part.subtype.lowercased() == "rfc822" || part.subtype.lowercased() == "global")
    }

    static func slice(_ bytes: [UInt8], _ offset: Int, _ length: Int) -> [UInt8] {
        let start = max(0, min(offset, bytes.count))
        let end = max(start, min(start + max(0, length), bytes.count))
        return Array(bytes[start ..< end])
    }

    /// The bytes of BODY[spec]; nil when the section does not exist.
    static func section(_ spec: SectionSpec, summary: MessageSummary?, bytes: [UInt8], prefix: Int) -> [UInt8]? {
        guard let summary else { return spec.part.isEmpty && spec.text == nil ? bytes : nil }
        guard let located = locate(spec.part, in: summary.body) else { return nil }
        let part = located.part
        switch spec.text {
        case nil:
            if located.isRoot { return bytes }
            return slice(bytes, prefix + part.bodyOffset, part.bodyLength)
        case .mime:
            return slice(bytes, prefix + part.headerOffset, part.headerLength)
        case .header, .headerFields, .headerFieldsNot, .text:
            // Of the message itself, or of an encapsulated message.
            var header: [UInt8]
            var body: [UInt8]
            if located.isRoot {
                header = slice(bytes, 0, prefix + part.headerLength)
                body = slice(bytes, prefix + part.bodyOffset, part.bodyLength)
            } else {
                guard isMessage(part), let inner = part.children.first else { return nil }
                header = slice(bytes, prefix + inner.headerOffset, inner.headerLength)
                body = slice(bytes, prefix + inner.bodyOffset, inner.bodyLength)
            }
            switch spec.text {
            case .text: return body
            case .headerFields(let names): header = filterHeader(header, names: names, keep: true)
            case .headerFieldsNot(let names): header = filterHeader(header, names: names, keep: false)
            default: break
            }
            return header
        }
    }

    /// BINARY[part]: the part's body with its transfer encoding undone (RFC 3516 §4.2).
    static func binary(_ path: [Int], summary: MessageSummary?, bytes: [UInt8], prefix: Int) -> [UInt8]? {
        guard let summary else { return nil }
        if path.isEmpty { return bytes }
        guard let located = locate(path, in: summary.body), !located.part.isMultipart else { return nil }
        let raw = slice(bytes, prefix + located.part.bodyOffset, located.part.bodyLength)
        return TransferDecoding.decode(raw, encoding: located.part.encoding)
    }

    /// Keeps (or drops) the header fields named; the blank line that ends a header stays
    /// (RFC 9051 §6.4.5: the result includes the delimiting blank line).
    static func filterHeader(_ header: [UInt8], names: [String], keep: Bool) -> [UInt8] {
        let wanted = Set(names.map { $0.lowercased() })
        var out: [UInt8] = []
        var i = 0
        var including = false
        while i < header.count {
            var end = i
            while end < header.count, header[end] != 0x0A { end += 1 }
            let lineEnd = min(end + 1, header.count)
            let lineBytes = header[i ..< lineEnd]
            let isBlank = lineBytes.allSatisfy { $0 == 0x0D || $0 == 0x0A }
            if isBlank { break }
            if header[i] == 0x20 || header[i] == 0x09 {
                if including { out.append(contentsOf: lineBytes) }
            } else {
                let colon = lineBytes.firstIndex(of: UInt8(ascii: ":")) ?? lineEnd
                let name = String(decoding: header[i ..< colon], as: UTF8.self).trimmingCharacters(in: .whitespaces).lowercased()
                including = wanted.contains(name) == keep
                if including { out.append(contentsOf: lineBytes) }
            }
            i = lineEnd
        }
        out.append(contentsOf: [0x0D, 0x0A])
        return out
    }
}
