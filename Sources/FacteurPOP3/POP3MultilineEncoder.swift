// Multi-line responses of RETR and TOP (RFC 1939 §3): every line that begins with "." gets one
// more "." in front ("byte-stuffing"), and the response ends with CRLF "." CRLF. It works on
// chunks of any size and keeps its state across them, so a 50 MB message streams through it.
// TOP (RFC 1939 §7) stops after the header, the blank line and the first `n` body lines.

import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct POP3MultilineEncoder: Sendable {
    private var atLineStart = true
    /// Bytes of the current line seen so far, and its last byte (to recognise an empty line, CRLF).
    private var lineLength = 0
    private var lastByte: UInt8 = 0
    private var inHeader = true
    /// Body lines still to send for TOP; nil for RETR (everything).
    private var bodyLinesLeft: Int?
    public private(set) var isDone = false

    /// - Parameter topLines: nil for RETR; the `n` of `TOP msg n` otherwise.
    public init(topLines: Int? = nil) {
        self.bodyLinesLeft = topLines
    }

    /// Appends the stuffed form of `chunk` to `out`. Once TOP has sent all it should, the rest
    /// is ignored (`isDone`).
    public mutating func encode(_ chunk: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        guard let base = chunk.baseAddress, chunk.count > 0 else { return }
        if bodyLinesLeft == nil {
            stuffAll(base, count: chunk.count, into: &out)
            return
        }
        let count = chunk.count
        var index = 0
        while index < count, !isDone {
            if atLineStart {
                if !inHeader, let left = bodyLinesLeft, left <= 0 {
                    isDone = true
                    return
                }
                if chunk[index] == UInt8(ascii: ".") { out.writeInteger(UInt8(ascii: ".")) }
            }
            // Copy up to and including the next LF in one write.
            let rest = UnsafeRawBufferPointer(start: base + index, count: count - index)
            let end: Int
            let foundLF: Bool
            if let lf = rest.firstIndex(of: UInt8(ascii: "\n")) {
                end = index + lf + 1
                foundLF = true
            } else {
                end = count
                foundLF = false
            }
            out.writeBytes(UnsafeRawBufferPointer(start: base + index, count: end - index))
            if foundLF {
                let before = end - index - 1  // bytes of this segment before the LF
                let previous = before > 0 ? chunk[end - 2] : lastByte
                let contentLength = lineLength + before - (previous == UInt8(ascii: "\r") ? 1 : 0)
                if inHeader {
                    if contentLength == 0 { inHeader = false }
                } else if let left = bodyLinesLeft {
                    bodyLinesLeft = left - 1
                }
                atLineStart = true
                lineLength = 0
                lastByte = 0
            } else {
                lineLength += end - index
                lastByte = chunk[end - 1]
                atLineStart = false
            }
            index = end
        }
    }

    /// RETR: no line counting, only stuffing. `memchr` finds each LF and the bytes between two
    /// lines that need a "." are copied in one write, so a message without such lines (almost
    /// all mail) is one copy into `out`.
    private mutating func stuffAll(_ base: UnsafeRawPointer, count: Int, into out: inout ByteBuffer) {
        let dot = UInt8(ascii: ".")
        out.reserveCapacity(minimumWritableBytes: count + 16)
        var runStart = 0
        if atLineStart, base.load(as: UInt8.self) == dot { out.writeInteger(dot) }
        var searchFrom = 0
        while searchFrom < count, let found = memchr(base + searchFrom, Int32(UInt8(ascii: "\n")), count - searchFrom) {
            let lineStart = UnsafeRawPointer(found) - base + 1
            if lineStart < count, base.load(fromByteOffset: lineStart, as: UInt8.self) == dot {
                out.writeBytes(UnsafeRawBufferPointer(start: base + runStart, count: lineStart - runStart))
                out.writeInteger(dot)
                runStart = lineStart
            }
            searchFrom = lineStart
        }
        out.writeBytes(UnsafeRawBufferPointer(start: base + runStart, count: count - runStart))
        // The next chunk starts a line (and may need a ".") only if this one ended with LF.
        atLineStart = base.load(fromByteOffset: count - 1, as: UInt8.self) == UInt8(ascii: "\n")
    }

    public mutating func encode(_ bytes: [UInt8], into out: inout ByteBuffer) {
        bytes.withUnsafeBytes { encode($0, into: &out) }
    }

    /// Ends the response: CRLF if the last line was unterminated, then "." CRLF.
    public mutating func finish(into out: inout ByteBuffer) {
        if !atLineStart { out.writeStaticString("\r\n") }
        out.writeStaticString(".\r\n")
        atLineStart = true
        isDone = true
    }
}
