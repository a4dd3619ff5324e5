// The MIME structure parser: one pass over a message's bytes (RFC 5322 header/body, RFC 2045 content
// fields, RFC 2046 §5.1 multipart boundaries, §5.2 message/rfc822, RFC 6532 §3.7 message/global) that
// builds the MessageSummary IMAP's ENVELOPE and BODYSTRUCTURE are encoded from (RFC 3501 §7.4.2).
//
// Every line is looked at once: an enclosing multipart's boundary ends the parts inside it, so nested
// parts never re-scan their bytes. Line counts come from one running count of line feeds.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension MessageSummary {
    /// Parses `bytes` (a whole RFC 5322 message; CRLF line ends, bare LF tolerated) into its summary.
    /// Never fails: what is wrong is in `defects`. Offsets are relative to the first element of `bytes`.
    public init<Bytes: RandomAccessCollection>(parsing bytes: Bytes) where Bytes.Element == UInt8, Bytes.Index == Int {
        self = withContiguousBytes(bytes) { buf in
            var parser = StructureParser(buf)
            return parser.run()
        }
    }
}

/// Boundaries of the multiparts that are open and still expecting parts, innermost last.
struct BoundaryStack {
    struct Entry {
        var boundary: [UInt8]
        var frame: Int
    }
    var entries: [Entry] = []

    /// Whether `buf[lineStart..<lineEnd]` is a delimiter line of an open multipart (RFC 2046 §5.1.1:
    /// "--" boundary, "--" again for the close delimiter, then only transport padding). The innermost
    /// exact match wins; an outer one closes the parts inside it. When no boundary matches exactly, a line
    /// that starts with "--" boundary and has garbage after it still counts, for the longest such boundary:
    /// that is what Dovecot does, and IMAP clients see its structures.
    func match(_ buf: UnsafeBufferPointer<UInt8>, _ lineStart: Int, _ lineEnd: Int) -> (entry: Int, close: Bool)? {
        var ce = lineEnd
        if ce > lineStart, buf[ce - 1] == ASCII.lf { ce -= 1 }
        if ce > lineStart, buf[ce - 1] == ASCII.cr { ce -= 1 }
        let start = lineStart + 2
        guard let base = buf.baseAddress else { return nil }
        var prefixMatch: (entry: Int, close: Bool, length: Int)? = nil
        var k = entries.count - 1
        while k >= 0 {
            let b = entries[k].boundary
            if ce - start >= b.count, b.withUnsafeBufferPointer({ boundary in
                guard let p = boundary.baseAddress else { return false }
                return memcmp(base + start, p, b.count) == 0
            }) {
                var r = start + b.count
                var close = false
                if ce - r >= 2, buf[r] == ASCII.hyphen, buf[r + 1] == ASCII.hyphen {
                    close = true
                    r += 2
                }
                while r < ce, ASCII.isWSP(buf[r]) { r += 1 }
                if r == ce { return (k, close) }
                if b.count > (prefixMatch?.length ?? 0) { prefixMatch = (k, close, b.count) }
            }
            k -= 1
        }
        return prefixMatch.map { ($0.entry, $0.close) }
    }
}

/// The header fields FacteurMIME reads, recognised from their bytes without building a String.
enum KnownField: Int {
    case date, subject, from, sender, replyTo, to, cc, bcc, inReplyTo, messageID
    case contentType, contentTransferEncoding, contentID, contentDescription, contentMD5, contentDisposition
    case contentLanguage, contentLocation

    static let envelopeCount = 10

    static func classify<C: Collection>(_ name: C) -> KnownField? where C.Element == UInt8 {
        switch name.count {
        case 2:
            if ASCII.equalsIgnoringCase(name, "to") { return .to }
            if ASCII.equalsIgnoringCase(name, "cc") { return .cc }
        case 3:
            if ASCII.equalsIgnoringCase(name, "bcc") { return .bcc }
        case 4:
            if ASCII.equalsIgnoringCase(name, "date") { return .date }
            if ASCII.equalsIgnoringCase(name, "from") { return .from }
        case 6:
            if ASCII.equalsIgnoringCase(name, "sender") { return .sender }
        case 7:
            if ASCII.equalsIgnoringCase(name, "subject") { return .subject }
        case 8:
            if ASCII.equalsIgnoringCase(name, "reply-to") { return .replyTo }
        case 10:
            if ASCII.equalsIgnoringCase(name, "message-id") { return .messageID }
            if ASCII.equalsIgnoringCase(name, "content-id") { return .contentID }
        case 11:
            if ASCII.equalsIgnoringCase(name, "in-reply-to") { return .inReplyTo }
            if ASCII.equalsIgnoringCase(name, "content-md5") { return .contentMD5 }
        case 12:
            if ASCII.equalsIgnoringCase(name, "content-type") { return .contentType }
        case 16:
            if ASCII.equalsIgnoringCase(name, "content-language") { return .contentLanguage }
            if ASCII.equalsIgnoringCase(name, "content-location") { return .contentLocation }
        case 19:
            if ASCII.equalsIgnoringCase(name, "content-description") { return .contentDescription }
            if ASCII.equalsIgnoringCase(name, "content-disposition") { return .contentDisposition }
        case 25:
            if ASCII.equalsIgnoringCase(name, "content-transfer-encoding") { return .contentTransferEncoding }
        default:
            break
        }
        return nil
    }
}

struct StructureParser {
    enum MultipartState { case preamble, parts, epilogue }
    enum FrameKind { case leaf, message, multipart(MultipartState) }

    /// A part whose end is not known yet.
    struct Frame {
        var part: BodyPart
        var kind: FrameKind
        var depth: Int
        /// Line feeds before the part's body, to count its lines when it ends.
        var bodyLineFeeds: Int
        var isDigest: Bool
    }

    let buf: UnsafeBufferPointer<UInt8>
    let end: Int
    var log = DefectLog()
    var stack: [Frame] = []
    var boundaries = BoundaryStack()
    /// Line feeds before the scan position.
    var lineFeeds = 0
    var partCount = 0
    var envelope = Envelope()
    var root: BodyPart? = nil

    init(_ buf: UnsafeBufferPointer<UInt8>) {
        self.buf = buf
        self.end = buf.count
        stack.reserveCapacity(8)
    }

    mutating func run() -> MessageSummary {
        var p = startPart(at: 0, depth: 0, digestChild: false, messageOf: -1)
        while p < end {
            let lf = findLF(buf, p, end)
            let lineEnd = lf < end ? lf + 1 : end
            if !boundaries.entries.isEmpty, lineEnd - p >= 2, buf[p] == ASCII.hyphen, buf[p + 1] == ASCII.hyphen,
               let m = boundaries.match(buf, p, lineEnd) {
                p = handleDelimiter(m, lineStart: p, lineEnd: lineEnd, terminated: lf < end)
                continue
            }
            if lf < end { lineFeeds += 1 }
            p = lineEnd
        }
        while !stack.isEmpty { closeTop(at: end, lineFeedsBefore: lineFeeds) }
        return MessageSummary(envelope: envelope, body: root ?? BodyPart(), defects: log.all)
    }

    /// A delimiter line of the multipart in `boundaries.entries[m.entry]` starts at `lineStart`.
    private mutating func handleDelimiter(_ m: (entry: Int, close: Bool), lineStart: Int, lineEnd: Int,
                                          terminated: Bool) -> Int {
        let frameIndex = boundaries.entries[m.entry].frame
        // RFC 2046 §5.1.1: the line break before the delimiter belongs to the delimiter, not to the part.
        var partEnd = lineStart
        var feedsBefore = lineFeeds
        if partEnd > 0, buf[partEnd - 1] == ASCII.lf {
            partEnd -= 1
            feedsBefore -= 1
            if partEnd > 0, buf[partEnd - 1] == ASCII.cr { partEnd -= 1 }
        }
        while stack.count - 1 > frameIndex { closeTop(at: partEnd, lineFeedsBefore: feedsBefore) }
        if terminated { lineFeeds += 1 }
        guard case .multipart(let state) = stack[frameIndex].kind, !boundaries.entries.isEmpty else { return lineEnd }
        if m.close {
            if state == .preamble {
                log.add("multipart at offset \(stack[frameIndex].part.headerOffset) is closed before its first part")
            }
            stack[frameIndex].kind = .multipart(.epilogue)
            boundaries.entries.removeLast()
            return lineEnd
        }
        guard partCount < MIMELimits.maxParts else {
            log.add("more than \(MIMELimits.maxParts) body parts; the rest of the multipart at offset \(stack[frameIndex].part.headerOffset) is left unparsed")
            stack[frameIndex].kind = .multipart(.epilogue)
            boundaries.entries.removeLast()
            return lineEnd
        }
        stack[frameIndex].kind = .multipart(.parts)
        return startPart(at: lineEnd, depth: stack[frameIndex].depth + 1, digestChild: stack[frameIndex].isDigest,
                         messageOf: nil)
    }

    /// Ends the innermost open part at `partEnd` and hands it to its parent.
    ///
    /// When the line break before a delimiter is also the end of the part's header (its blank line, or the
    /// last field's line end when the blank line is missing), the delimiter gets it (RFC 2046 §5.1.1):
    /// the header shrinks to end there and the body is empty, as Dovecot reports it.
    private mutating func closeTop(at partEnd: Int, lineFeedsBefore: Int) {
        var f = stack.removeLast()
        let start = f.part.headerOffset
        if start >= partEnd {
            // Nothing of this part lies before the end: an empty part right at a delimiter.
            f.part.headerLength = 0
            f.part.bodyOffset = start
            f.part.bodyLength = 0
            f.part.lines = 0
        } else {
            let bodyStart = min(f.part.bodyOffset, partEnd)
            if bodyStart < partEnd {
                // Line feeds inside the body, plus a last line that has none (RFC 3501 counts it).
                f.part.lines = max(0, lineFeedsBefore - f.bodyLineFeeds) + (buf[partEnd - 1] != ASCII.lf ? 1 : 0)
            } else {
                f.part.lines = 0
            }
            f.part.headerLength = bodyStart - start
            f.part.bodyOffset = bodyStart
            f.part.bodyLength = partEnd - bodyStart
        }
        // An empty last child that starts on the delimiter line closing this part too (the line break
        // before it being this part's end) is moved back, so that children stay inside their parent.
        if let last = f.part.children.indices.last, f.part.children[last].headerOffset > partEnd {
            StructureParser.moveEmptyParts(&f.part.children[last], to: max(partEnd, f.part.bodyOffset))
        }
        if case .multipart(let state) = f.kind {
            switch state {
            case .preamble:
                log.add("multipart at offset \(f.part.headerOffset): no boundary delimiter found")
                boundaries.entries.removeLast()
            case .parts:
                log.add("multipart at offset \(f.part.headerOffset): close delimiter missing")
                boundaries.entries.removeLast()
            case .epilogue:
                break
            }
        }
        guard let parent = stack.indices.last else {
            root = f.part
            return
        }
        if case .message = stack[parent].kind {
            stack[parent].part.children = [f.part]
        } else {
            stack[parent].part.children.append(f.part)
        }
    }

    /// Reads the header of the part that starts at `start`, opens its frame, and returns where scanning
    /// goes on. `messageOf` is set for the root of a message: -1 for the top level, else the frame index of
    /// the message/rfc822 part that encapsulates it.
    private mutating func startPart(at start: Int, depth: Int, digestChild: Bool, messageOf: Int?) -> Int {
        partCount += 1
        let active = boundaries
        let buf = self.buf
        let scan = RawHeaderScanner.scan(buf, from: start, end: end, log: &log) { active.match(buf, $0, $1) != nil }
        lineFeeds += scan.lineFeeds
        // A header cut short by a delimiter line is fixed up when the part ends (see closeTop).
        let bodyStart = scan.bodyStart
        var part = BodyPart(headerOffset: start, headerLength: bodyStart - start, bodyOffset: bodyStart)
        var envelopeValues = [[UInt8]?](repeating: nil, count: messageOf == nil ? 0 : KnownField.envelopeCount)
        let boundary = applyFields(scan.fields, to: &part, digestChild: digestChild, envelopeValues: &envelopeValues)
        if let messageOf {
            let env = Envelope(values: envelopeValues)
            if messageOf < 0 { envelope = env } else { stack[messageOf].part.encapsulatedEnvelope = env }
        }

        var kind = FrameKind.leaf
        var isDigest = false
        if part.isMultipart {
            if scan.stoppedAtBoundary {
                // Its header was cut short by an enclosing delimiter: no body, so no parts (as Dovecot).
                log.add("multipart at offset \(start) has no body")
            } else if depth >= MIMELimits.maxNestingDepth {
                log.add("multipart at offset \(start) is nested deeper than \(MIMELimits.maxNestingDepth) levels; kept as a leaf")
            } else if let boundary, !boundary.isEmpty {
                kind = .multipart(.preamble)
                boundaries.entries.append(BoundaryStack.Entry(boundary: boundary, frame: stack.count))
                isDigest = ASCII.equalsIgnoringCase(part.subtype, "digest")
            } else {
                log.add("multipart at offset \(start) has no boundary parameter")
            }
        } else if part.isEncapsulatedMessage {
            if depth >= MIMELimits.maxNestingDepth {
                log.add("message at offset \(start) is nested deeper than \(MIMELimits.maxNestingDepth) levels; not parsed")
            } else if partCount >= MIMELimits.maxParts {
                log.add("more than \(MIMELimits.maxParts) body parts; message at offset \(start) not parsed")
            } else {
                kind = .message
                let enc = ASCII.lowercased(part.encoding)
                if enc != "7bit" && enc != "8bit" && enc != "binary" {
                    log.add("message/\(part.subtype) at offset \(start) has transfer encoding \(part.encoding) (RFC 2046 §5.2.1 allows 7bit, 8bit, binary)")
                }
            }
        }
        stack.append(Frame(part: part, kind: kind, depth: depth, bodyLineFeeds: lineFeeds, isDigest: isDigest))
        if case .message = kind {
            return startPart(at: bodyStart, depth: depth + 1, digestChild: false, messageOf: stack.count - 1)
        }
        return scan.bodyStart
    }

    /// Moves an empty part (and its empty descendants) to `offset`.
    private static func moveEmptyParts(_ p: inout BodyPart, to offset: Int) {
        p.headerOffset = offset
        p.headerLength = 0
        p.bodyOffset = offset
        p.bodyLength = 0
        p.lines = 0
        for i in p.children.indices { moveEmptyParts(&p.children[i], to: offset) }
    }

    /// The value of a field, unfolded and trimmed.
    private func value(_ f: RawHeaderField) -> [UInt8] {
        HeaderField.unfoldAndTrim(UnsafeBufferPointer(rebasing: buf[f.valueStart..<f.valueEnd]))
    }

    /// Fills the part's content fields (RFC 2045 §5–§8, RFC 2183, RFC 3282, RFC 2557) and, when asked, the
    /// envelope fields' first values. Returns the multipart boundary, as bytes, when there is one.
    private mutating func applyFields(_ fields: [RawHeaderField], to part: inout BodyPart, digestChild: Bool,
                                      envelopeValues: inout [[UInt8]?]) -> [UInt8]? {
        var sawType = false
        var boundary: [UInt8]? = nil
        for f in fields {
            guard let known = KnownField.classify(UnsafeBufferPointer(rebasing: buf[f.nameStart..<f.nameEnd])) else { continue }
            if known.rawValue < KnownField.envelopeCount {
                if !envelopeValues.isEmpty, envelopeValues[known.rawValue] == nil { envelopeValues[known.rawValue] = value(f) }
                continue
            }
            switch known {
            case .contentType:
                guard !sawType else {
                    log.add("second Content-Type field at offset \(f.start) ignored")
                    continue
                }
                sawType = true
                let v = value(f)
                if let ct = MIMEValueParser.parseContentType(v, log: &log) {
                    part.type = ct.type
                    part.subtype = ct.subtype
                    part.parameters = MIMEValueParser.writtenParameters(ct.parameters)
                    if let raw = ct.parameters.first(where: { ASCII.equalsIgnoringCase($0.name, "boundary") }) {
                        boundary = raw.value
                    } else if let decoded = MIMEValueParser.decodeParameters(ct.parameters, log: &log).value(named: "boundary") {
                        boundary = Array(decoded.utf8)  // given RFC 2231-style (boundary*0=…)
                    }
                } else {
                    // RFC 2045 §5.2: an invalid Content-Type means text/plain; charset=us-ascii.
                    sawType = false
                }
            case .contentTransferEncoding:
                if let e = MIMEValueParser.parseTransferEncoding(value(f), log: &log) {
                    part.encoding = e
                } else {
                    log.add("empty Content-Transfer-Encoding at offset \(f.start); 7bit assumed")
                }
            case .contentID:
                part.id = string(value(f))
            case .contentDescription:
                part.description = string(value(f))
            case .contentMD5:
                part.md5 = string(value(f))
            case .contentDisposition:
                if part.disposition == nil, let d = MIMEValueParser.parseDisposition(value(f), log: &log) {
                    part.disposition = ContentDisposition(type: d.type,
                                                          parameters: MIMEValueParser.writtenParameters(d.parameters))
                }
            case .contentLanguage:
                let l = MIMEValueParser.parseLanguageList(value(f))
                part.language = l.isEmpty ? nil : l
            case .contentLocation:
                part.location = string(value(f))
            default:
                break
            }
        }
        if !sawType {
            if digestChild {
                // RFC 2046 §5.1.5: in a digest, the default part type is message/rfc822.
                part.type = "message"
                part.subtype = "rfc822"
            } else {
                part.parameters = [MIMEParameter(name: "charset", value: "us-ascii")]
            }
        } else if ASCII.equalsIgnoringCase(part.type, "text"),
                  !part.parameters.contains(where: { ASCII.equalsIgnoringCase($0.name, "charset") }) {
            // RFC 2046 §4.1.2: text without a charset is US-ASCII, whatever other parameters it has
            // (name=, format=). Written out after the others, as Dovecot does.
            part.parameters.append(MIMEParameter(name: "charset", value: "us-ascii"))
        }
        return boundary
    }

    private func string(_ bytes: [UInt8]) -> String { Charset.decodeUTF8OrWindows1252(bytes) }
}

extension Envelope {
    /// IMAP's ENVELOPE (RFC 3501 §7.4.2) of a header: the first Date, Subject, From, Sender, Reply-To, To,
    /// Cc, Bcc, In-Reply-To and Message-ID fields, unfolded, encoded words kept. As the RFC requires,
    /// a missing or empty Sender or Reply-To takes the value of From.
    public init(header: MessageHeader) {
        var values = [[UInt8]?](repeating: nil, count: KnownField.envelopeCount)
        for f in header.fields {
            guard let k = KnownField.classify(f.name.utf8), k.rawValue < KnownField.envelopeCount,
                  values[k.rawValue] == nil else { continue }
            values[k.rawValue] = HeaderField.unfoldAndTrim(f.rawValue)
        }
        self.init(values: values)
    }

    init(values: [[UInt8]?]) {
        func text(_ k: KnownField) -> String? {
            values[k.rawValue].map { Charset.decodeUTF8OrWindows1252($0) }
        }
        func addresses(_ k: KnownField) -> [EnvelopeAddress] {
            guard let v = values[k.rawValue], !v.isEmpty else { return [] }
            return AddressList(parsingBytes: v).envelopeAddresses
        }
        let from = addresses(.from)
        var sender = addresses(.sender)
        var replyTo = addresses(.replyTo)
        if sender.isEmpty { sender = from }
        if replyTo.isEmpty { replyTo = from }
        self.init(date: text(.date), subject: text(.subject), from: from, sender: sender, replyTo: replyTo,
                  to: addresses(.to), cc: addresses(.cc), bcc: addresses(.bcc), inReplyTo: text(.inReplyTo),
                  messageID: text(.messageID))
    }
}
