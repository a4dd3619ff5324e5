// RFC 5322 §2.2 / §3.6 header fields: splitting a header block into fields, unfolding (§2.2.3),
// and case-insensitive lookup. Tolerates bare LF line ends, the obsolete "name WSP :" form (§4.5)
// and an mbox "From " line on top; never fails.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One header field as it stands in the message.
public struct HeaderField: Sendable, Equatable, Hashable {
    /// The field name, case kept (`Subject`, `content-type`).
    public var name: String
    /// The bytes after the colon up to the end of the field's last line, line break excluded.
    /// Folding is kept: this is what DKIM's "simple" canonicalization and re-serialisation need.
    public var rawValue: [UInt8]
    /// Where the whole field (name, colon, value, final line break) stands in the parsed bytes.
    public var range: Range<Int>

    public init(name: String, rawValue: [UInt8], range: Range<Int>) {
        self.name = name
        self.rawValue = rawValue
        self.range = range
    }

    /// The raw value as a String, folding kept. Bytes are read as UTF-8 (RFC 6532), or as windows-1252
    /// when they are not valid UTF-8 (old 8-bit mail).
    public var rawValueString: String { Charset.decodeUTF8OrWindows1252(rawValue) }

    /// The value unfolded (RFC 5322 §2.2.3) with surrounding whitespace removed; encoded words kept.
    /// Bytes are read as `rawValueString` reads them.
    public var value: String { Charset.decodeUTF8OrWindows1252(HeaderField.unfoldAndTrim(rawValue)) }

    /// Whether this field's name is `name`, ignoring ASCII case (RFC 5322 §1.2.2: names are case-insensitive).
    public func hasName(_ name: String) -> Bool { ASCII.equalsIgnoringCase(self.name, name) }

    /// RFC 5322 §2.2.3: unfolding removes every CRLF (or bare LF) that is immediately followed by WSP.
    public static func unfold<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var pendingCR = false
        var afterBreak = false
        for b in bytes {
            if afterBreak {
                afterBreak = false
                if !ASCII.isWSP(b) {
                    // A line break not followed by WSP is not folding: keep it as it was.
                    if pendingCR { out.append(ASCII.cr) }
                    out.append(ASCII.lf)
                }
                pendingCR = false
            }
            if b == ASCII.lf {
                afterBreak = true
                continue
            }
            if pendingCR {
                out.append(ASCII.cr)
                pendingCR = false
            }
            if b == ASCII.cr {
                pendingCR = true
                continue
            }
            out.append(b)
        }
        if afterBreak {
            if pendingCR { out.append(ASCII.cr) }
            out.append(ASCII.lf)
        } else if pendingCR {
            out.append(ASCII.cr)
        }
        return out
    }

    /// Unfolds, then drops leading and trailing whitespace.
    public static func unfoldAndTrim<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        let u = unfold(bytes)
        let t = ASCII.trimmed(u[...])
        return t.count == u.count ? u : Array(t)
    }
}

/// A parsed header block: its fields in order, and where the body starts.
public struct MessageHeader: Sendable, Equatable {
    public var fields: [HeaderField]
    /// Offset of the first body byte: just after the blank line, or where the header had to stop.
    public var bodyOffset: Int
    /// Whether the header ended with the blank line RFC 5322 §2.1 requires (false at end of input,
    /// or when a line that cannot be a field started the body early).
    public var hasSeparator: Bool
    /// What was wrong, in words.
    public var defects: [String]

    public init(fields: [HeaderField], bodyOffset: Int, hasSeparator: Bool, defects: [String] = []) {
        self.fields = fields
        self.bodyOffset = bodyOffset
        self.hasSeparator = hasSeparator
        self.defects = defects
    }

    /// Parses the header block at the start of `bytes` (a whole message or just its header).
    /// Offsets are relative to the first element of `bytes`.
    public init<Bytes: RandomAccessCollection>(parsing bytes: Bytes) where Bytes.Element == UInt8, Bytes.Index == Int {
        self = withContiguousBytes(bytes) { buf in
            var log = DefectLog()
            let scan = RawHeaderScanner.scan(buf, from: 0, end: buf.count, log: &log) { _, _ in false }
            let fields = scan.fields.map { f in
                HeaderField(name: String(lossyUTF8: UnsafeBufferPointer(rebasing: buf[f.nameStart..<f.nameEnd])),
                            rawValue: Array(buf[f.valueStart..<f.valueEnd]), range: f.start..<f.end)
            }
            return MessageHeader(fields: fields, bodyOffset: scan.bodyStart, hasSeparator: scan.hasSeparator,
                                 defects: log.all)
        }
    }

    /// The unfolded, trimmed value of the first field called `name` (any case), or nil.
    public subscript(name: String) -> String? { field(named: name)?.value }

    /// The first field called `name`, ignoring case.
    public func field(named name: String) -> HeaderField? { fields.first { $0.hasName(name) } }

    /// Every field called `name`, ignoring case, in order.
    public func fields(named name: String) -> [HeaderField] { fields.filter { $0.hasName(name) } }
}

/// Defects collected during a parse, capped so hostile input cannot grow the list without bound.
struct DefectLog {
    private(set) var items: [String] = []
    private var dropped = 0

    /// Longest defect text kept: defects quote input, and input can be huge.
    static let maxLength = 200

    mutating func add(_ defect: @autoclosure () -> String) {
        if items.count < MIMELimits.maxDefects - 1 {
            let d = defect()
            items.append(d.count > DefectLog.maxLength ? String(d.prefix(DefectLog.maxLength)) + "…" : d)
        } else {
            dropped += 1
        }
    }

    /// The defects, with a last entry counting those left out.
    var all: [String] {
        dropped == 0 ? items : items + ["\(dropped) more defects not recorded"]
    }
}

/// Calls `body` with the bytes as one contiguous buffer, copying only when the collection has no such storage.
@inline(__always)
func withContiguousBytes<Bytes: RandomAccessCollection, R>(_ bytes: Bytes, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R
where Bytes.Element == UInt8 {
    if let r = bytes.withContiguousStorageIfAvailable(body) { return r }
    return Array(bytes).withUnsafeBufferPointer(body)
}

/// Index of the first LF in `buf[from..<end]`, or `end`. memchr is vectorised; a byte loop is not.
@inline(__always)
func findLF(_ buf: UnsafeBufferPointer<UInt8>, _ from: Int, _ end: Int) -> Int {
    guard from < end, let base = buf.baseAddress else { return end }
    guard let hit = memchr(base + from, Int32(ASCII.lf), end - from) else { return end }
    return base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
}

/// Where one field stands, as offsets into the scanned buffer.
struct RawHeaderField {
    var start: Int       // first byte of the name
    var nameStart: Int
    var nameEnd: Int
    var valueStart: Int  // just after the colon
    var valueEnd: Int    // end of the last line's content, line break excluded
    var end: Int         // after the last line's line break
}

struct RawHeaderScan {
    var fields: [RawHeaderField]
    var bodyStart: Int
    var hasSeparator: Bool
    /// Line feeds consumed, blank line included, so the caller can keep a running line count.
    var lineFeeds: Int
    /// The header was cut short by a boundary line, which starts at `bodyStart`.
    var stoppedAtBoundary = false
}

enum RawHeaderScanner {
    /// Splits the header block in `buf[from..<end]` into fields.
    /// `isBoundary(lineStart, lineEnd)` is asked about lines starting with "--": a MIME boundary of an
    /// enclosing multipart ends the header (and the part) even without a blank line (RFC 2046 §5.1.1).
    static func scan(_ buf: UnsafeBufferPointer<UInt8>, from start: Int, end: Int, log: inout DefectLog,
                     isBoundary: (Int, Int) -> Bool) -> RawHeaderScan {
        var fields: [RawHeaderField] = []
        fields.reserveCapacity(16)
        var p = start
        var lineFeeds = 0
        var droppingFields = false
        while p < end {
            let c = buf[p]
            // The blank line: CRLF, or a bare LF.
            if c == ASCII.lf {
                return RawHeaderScan(fields: fields, bodyStart: p + 1, hasSeparator: true, lineFeeds: lineFeeds + 1)
            }
            if c == ASCII.cr, p + 1 < end, buf[p + 1] == ASCII.lf {
                return RawHeaderScan(fields: fields, bodyStart: p + 2, hasSeparator: true, lineFeeds: lineFeeds + 1)
            }
            let lf = findLF(buf, p, end)
            let lineEnd = lf < end ? lf + 1 : end
            var contentEnd = lf
            if contentEnd > p, buf[contentEnd - 1] == ASCII.cr { contentEnd -= 1 }

            if ASCII.isWSP(c) {
                // RFC 5322 §2.2.3: a line starting with WSP continues the previous field.
                if droppingFields {
                    // The field it continues was over the limit and is not kept.
                } else if !fields.isEmpty {
                    fields[fields.count - 1].valueEnd = contentEnd
                    fields[fields.count - 1].end = lineEnd
                } else {
                    log.add("header starts with a continuation line at offset \(p); line ignored")
                }
            } else if c == ASCII.hyphen, p + 1 < end, buf[p + 1] == ASCII.hyphen, isBoundary(p, lineEnd) {
                log.add("header at offset \(start) ends at a boundary without a blank line")
                return RawHeaderScan(fields: fields, bodyStart: p, hasSeparator: false, lineFeeds: lineFeeds,
                                     stoppedAtBoundary: true)
            } else {
                var q = p
                while q < contentEnd, ASCII.isFieldNameChar(buf[q]) { q += 1 }
                let nameEnd = q
                while q < contentEnd, ASCII.isWSP(buf[q]) { q += 1 }  // obs-optional: WSP before the colon
                if nameEnd > p, q < contentEnd, buf[q] == ASCII.colon {
                    if fields.count < MIMELimits.maxHeaderFields {
                        fields.append(RawHeaderField(start: p, nameStart: p, nameEnd: nameEnd, valueStart: q + 1,
                                                     valueEnd: contentEnd, end: lineEnd))
                        droppingFields = false
                    } else {
                        if !droppingFields { log.add("more than \(MIMELimits.maxHeaderFields) header fields; the rest are not kept") }
                        droppingFields = true
                    }
                } else if p == start, isMboxFromLine(buf, p, contentEnd) {
                    // An mbox "From " separator left on top of the message: part of no field.
                    log.add("mbox From_ line at the top of the header")
                } else {
                    log.add("line without a colon at offset \(p) ends the header (no blank line before the body)")
                    return RawHeaderScan(fields: fields, bodyStart: p, hasSeparator: false, lineFeeds: lineFeeds)
                }
            }
            if lf < end { lineFeeds += 1 }
            p = lineEnd
        }
        return RawHeaderScan(fields: fields, bodyStart: end, hasSeparator: false, lineFeeds: lineFeeds)
    }

    private static func isMboxFromLine(_ buf: UnsafeBufferPointer<UInt8>, _ p: Int, _ end: Int) -> Bool {
        end - p >= 5 && buf[p] == 0x46 && buf[p + 1] == 0x72 && buf[p + 2] == 0x6F && buf[p + 3] == 0x6D
            && buf[p + 4] == ASCII.space
    }
}
