// Message data framing for DATA (RFC 5321 §4.1.1.4, §4.5.2) and BDAT (RFC 3030).
//
// Policy, deliberate and documented in the README:
// - Only <CR><LF>.<CR><LF> ends DATA. A "." line that follows a bare LF or bare CR never does,
//   so <LF>.<CR><LF> and <LF>.<LF> cannot end a message early (the SMTP smuggling class of bug).
// - Bare LF and bare CR are normalised to CRLF: the store holds CRLF only.
// - A leading "." is removed from every line (dot-unstuffing).
// - NUL bytes and lines longer than the limit are noted; the session refuses such a message
//   after reading it whole, so the conversation stays in step.
// - Bytes past the maximum size are counted, not kept: memory is bounded by the spool.

import NIOCore

struct MessageDataDecoder {
    enum State {
        /// At the start of a line; `afterCRLF` says whether the previous line ended with a real CRLF.
        case lineStart(afterCRLF: Bool)
        /// Saw a "." at the start of a line.
        case dot(afterCRLF: Bool)
        /// Saw "." then CR at the start of a line.
        case dotCR(afterCRLF: Bool)
        case inLine
        /// Saw a CR inside a line.
        case carriageReturn
    }

    /// DATA is dot-stuffed and ends with <CRLF>.<CRLF>; BDAT is neither.
    let dotStuffed: Bool
    let maxLineLength: Int
    private(set) var state: State = .lineStart(afterCRLF: true)
    private(set) var containsNUL = false
    private(set) var lineTooLong = false
    private var lineLength = 0

    init(dotStuffed: Bool, maxLineLength: Int) {
        self.dotStuffed = dotStuffed
        self.maxLineLength = maxLineLength
    }

    /// Consumes bytes from `input` into `spool`. For DATA, returns true once the terminating
    /// line was read (the bytes after it stay in `input`). For BDAT, consumes at most `limit` bytes.
    mutating func decode(_ input: inout ByteBuffer, limit: Int = .max, into spool: MessageSpool) -> Bool {
        var finished = false
        let consumed = input.withUnsafeReadableBytes { raw -> Int in
            let count = Swift.min(raw.count, limit)
            var index = 0
            var runStart = -1  // start of a run of plain bytes to copy in one go
            func flushRun(_ end: Int) {
                if runStart >= 0, end > runStart {
                    spool.append(UnsafeRawBufferPointer(rebasing: raw[runStart..<end]))
                }
                runStart = -1
            }
            while index < count {
                let byte = raw[index]
                switch state {
                case .inLine:
                    if byte == 13 { flushRun(index); state = .carriageReturn; index += 1; continue }
                    if byte == 10 { flushRun(index); spool.appendCRLF(); endLine(); state = .lineStart(afterCRLF: false); index += 1; continue }
                    if byte == 0 { containsNUL = true }
                    if runStart < 0 { runStart = index }
                    lineLength += 1
                    index += 1
                case .carriageReturn:
                    spool.appendCRLF()
                    endLine()
                    if byte == 10 { state = .lineStart(afterCRLF: true); index += 1 } else { state = .lineStart(afterCRLF: false) }
                case .lineStart(let afterCRLF):
                    if dotStuffed, byte == UInt8(ascii: ".") { state = .dot(afterCRLF: afterCRLF); index += 1; continue }
                    state = .inLine
                case .dot(let afterCRLF):
                    if byte == 13 { state = .dotCR(afterCRLF: afterCRLF); index += 1; continue }
                    // The leading dot is dropped; whatever follows is ordinary line content.
                    state = .inLine
                case .dotCR(let afterCRLF):
                    if byte == 10, afterCRLF {
                        index += 1
                        finished = true
                        return index
                    }
                    // "." then a bare CR (or a "." line after a bare LF): an empty line, not the end.
                    spool.appendCRLF()
                    endLine()
                    if byte == 10 { state = .lineStart(afterCRLF: false); index += 1 } else { state = .lineStart(afterCRLF: false) }
                }
            }
            flushRun(count)
            return count
        }
        input.moveReaderIndex(forwardBy: consumed)
        return finished
    }

    /// BDAT LAST: a CR left hanging at the very end becomes a line end.
    mutating func finishChunks(into spool: MessageSpool) {
        if case .carriageReturn = state { spool.appendCRLF(); state = .lineStart(afterCRLF: true) }
    }

    private mutating func endLine() {
        if lineLength > maxLineLength { lineTooLong = true }
        lineLength = 0
    }
}
