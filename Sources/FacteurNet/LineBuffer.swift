// FacteurNet: listener plumbing shared by SMTP, IMAP and POP3 — line framing with hard limits,
// TLS contexts (self-signed on first start, per-domain certificates chosen by SNI), connection
// limits and the registry that lets a listener drain its sessions on shutdown.

import NIOCore

/// Splits a byte stream into CRLF-terminated lines without ever rescanning a byte,
/// and without letting a line grow past `maxLineLength`.
///
/// A line ends at LF; a CR just before it is stripped. A bare LF therefore ends a command line
/// too (RFC 5321 §2.3.8 forbids it, but refusing it helps nobody); message data does not go
/// through here.
public struct LineBuffer: Sendable {
    public enum Next: Equatable, Sendable {
        case line([UInt8])
        /// A line went over the limit; its bytes up to the next LF are being thrown away.
        case tooLong
        case needMoreData
    }

    public let maxLineLength: Int
    private var buffer: ByteBuffer
    /// Bytes of `buffer` from its reader index already known to hold no LF.
    private var scanned = 0
    private var discarding = false

    public init(maxLineLength: Int) {
        self.maxLineLength = maxLineLength
        self.buffer = ByteBufferAllocator().buffer(capacity: 1024)
    }

    public var bufferedByteCount: Int { buffer.readableBytes }

    public mutating func append(_ bytes: inout ByteBuffer) {
        buffer.writeBuffer(&bytes)
    }

    /// Takes every buffered byte out (to hand them to a different framing, e.g. DATA).
    public mutating func takeRemaining() -> ByteBuffer {
        let rest = buffer.readSlice(length: buffer.readableBytes) ?? ByteBuffer()
        buffer.clear()
        scanned = 0
        return rest
    }

    public mutating func discardAll() {
        buffer.clear()
        scanned = 0
    }

    public mutating func next() -> Next {
        while true {
            let view = buffer.readableBytesView
            let start = view.startIndex + scanned
            if let lf = view[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let length = lf - view.startIndex
                defer { scanned = 0; buffer.moveReaderIndex(forwardBy: length + 1) }
                if discarding {
                    discarding = false
                    return .tooLong
                }
                var end = lf
                if end > view.startIndex, view[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                if end - view.startIndex > maxLineLength { return .tooLong }
                return .line(Array(view[view.startIndex..<end]))
            }
            scanned = view.count
            if view.count > maxLineLength + 1 {
                // Keep nothing of an over-long line; remember to drop the rest of it.
                discarding = true
                buffer.clear()
                scanned = 0
            }
            if buffer.readerIndex > 64 * 1024 { buffer.discardReadBytes() }
            return .needMoreData
        }
    }
}
