// COMPRESS=DEFLATE (RFC 4978): once the server has said "OK DEFLATE active", everything in both
// directions is a raw DEFLATE stream (RFC 1951, no zlib header), placed between TLS and IMAP.
// The server flushes (Z_SYNC_FLUSH) whenever the connection is flushed, so a response never
// waits in the compressor (§4: "the server MUST flush ... after each response").
// While a connection IDLEs, both zlib states are set aside (`releaseWhileIdle`): the deflater is
// ended after its flush and made anew on the next write (the client's inflater only sees more
// raw blocks), and the inflater's window (what the client has sent, at most 32 KiB, usually a
// few dozen bytes) is kept as a dictionary for a new inflater. About 75 KiB less per idle
// connection.

import CCompressZlib
import CompressNIO
import NIOCore

/// A raw inflater (RFC 1951) on zlib whose state can be dropped between blocks and rebuilt from
/// its window (zlib's inflateGetDictionary / inflateSetDictionary, which raw streams allow at
/// any time).
final class RawInflater {
    private var stream: UnsafeMutablePointer<z_stream>?
    private var savedWindow: [UInt8] = []

    enum Failure: Error { case initialization, corrupt }

    init() throws { try start() }

    deinit { end() }

    var isReleased: Bool { stream == nil }

    private func start() throws {
        let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        s.initialize(to: z_stream())
        // A 32 KiB window: the client chooses its own, up to the maximum (RFC 4978 §4).
        guard CCompressZlib_inflateInit2(s, -15) == Z_OK else {
            s.deinitialize(count: 1)
            s.deallocate()
            throw Failure.initialization
        }
        if !savedWindow.isEmpty {
            let rc = savedWindow.withUnsafeBufferPointer { inflateSetDictionary(s, $0.baseAddress, UInt32($0.count)) }
            guard rc == Z_OK else {
                inflateEnd(s)
                s.deinitialize(count: 1)
                s.deallocate()
                throw Failure.initialization
            }
        }
        savedWindow = []
        stream = s
    }

    private func end() {
        guard let s = stream else { return }
        inflateEnd(s)
        s.deinitialize(count: 1)
        s.deallocate()
        stream = nil
    }

    /// Inflates from `input` into `output`'s writable space; moves both indices. Throws on a
    /// corrupt stream. Returns whether it made progress.
    func inflate(from input: inout ByteBuffer, to output: inout ByteBuffer) throws -> Bool {
        if stream == nil { try start() }
        guard let s = stream else { throw Failure.initialization }
        let inCount = input.readableBytes
        let outCount = output.writableBytes
        guard inCount > 0, outCount > 0 else { return false }
        var consumed = 0
        var produced = 0
        var rc: Int32 = Z_OK
        input.withUnsafeMutableReadableBytes { inBytes in
            output.withUnsafeMutableWritableBytes { outBytes in
                s.pointee.next_in = inBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
                s.pointee.avail_in = UInt32(inBytes.count)
                s.pointee.next_out = outBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
                s.pointee.avail_out = UInt32(outBytes.count)
                rc = CCompressZlib.inflate(s, Z_NO_FLUSH)
                consumed = inBytes.count - Int(s.pointee.avail_in)
                produced = outBytes.count - Int(s.pointee.avail_out)
                // zlib must not keep pointers into buffers it does not own.
                s.pointee.next_in = nil
                s.pointee.avail_in = 0
                s.pointee.next_out = nil
                s.pointee.avail_out = 0
            }
        }
        input.moveReaderIndex(forwardBy: consumed)
        output.moveWriterIndex(forwardBy: produced)
        switch rc {
        case Z_OK, Z_BUF_ERROR, Z_STREAM_END: return consumed > 0 || produced > 0
        // The client may not end the stream (RFC 4978 §3: compression lasts until the connection ends).
        default: throw Failure.corrupt
        }
    }

    /// Sets the zlib state aside, keeping only the window, when the stream sits exactly between
    /// two blocks with no pending bits (zlib's data_type is then 128: after the client's sync
    /// flush, the usual case). Returns whether it did.
    @discardableResult
    func release() -> Bool {
        guard let s = stream, s.pointee.data_type == 128 else { return false }
        var length: UInt32 = 0
        guard inflateGetDictionary(s, nil, &length) == Z_OK else { return false }
        var window = [UInt8](repeating: 0, count: Int(length))
        let rc = window.withUnsafeMutableBufferPointer { inflateGetDictionary(s, $0.baseAddress, &length) }
        guard rc == Z_OK else { return false }
        end()
        savedWindow = Array(window.prefix(Int(length)))
        return true
    }
}

/// Inflates what the client sends. A small input may inflate to a lot: beyond `maxExpansion`
/// bytes from one read the connection is closed (a decompression bomb must not fill memory).
final class DeflateDecompressionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let decompressor: RawInflater?
    private let maxExpansion: Int
    private var failed = false

    init(maxExpansion: Int) {
        decompressor = try? RawInflater()
        self.maxExpansion = maxExpansion
    }

    /// Drops the inflater's state while the connection idles (see RawInflater.release).
    func releaseWhileIdle() {
        decompressor?.release()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        guard let decompressor else { return fail(context: context) }
        var input = unwrapInboundIn(data)
        var produced = 0
        while true {
            var output = context.channel.allocator.buffer(capacity: 16 * 1024)
            let progressed: Bool
            do {
                progressed = try decompressor.inflate(from: &input, to: &output)
            } catch {
                return fail(context: context)
            }
            produced += output.readableBytes
            guard produced <= maxExpansion else { return fail(context: context) }
            let filled = output.writableBytes == 0
            if output.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(output)) }
            // More output may be pending when the buffer filled up; never spin without progress.
            if !progressed || (!filled && input.readableBytes == 0) { break }
        }
    }

    private func fail(context: ChannelHandlerContext) {
        failed = true
        context.close(promise: nil)
    }
}

/// Deflates what the server writes: writes are gathered and compressed with a sync flush when
/// the channel is flushed, so every response reaches the client whole.
final class DeflateCompressionHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var compressor: ZlibCompressor?
    private var pending: [(ByteBuffer, EventLoopPromise<Void>?)] = []

    /// A 4 KiB window and memory level 5 keep the deflate state near 24 KiB per connection
    /// instead of zlib's default ~260 KiB: IMAP responses are small and repetitive, and 10,000
    /// idle compressed connections must fit in memory (the client's inflate is unaffected).
    private static func makeCompressor() -> ZlibCompressor? {
        try? ZlibCompressor(algorithm: .deflate, configuration: ZlibConfiguration(windowSize: 12, compressionLevel: 6, memoryLevel: 5))
    }

    init() {
        compressor = Self.makeCompressor()
    }

    /// Ends the deflater while the connection idles; the next flush starts a new one. Every
    /// write so far was sync-flushed, so the stream stands on a byte boundary between blocks and
    /// the client's inflater just reads on (a new raw deflater writes no header).
    func releaseWhileIdle() {
        if pending.isEmpty { compressor = nil }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        pending.append((unwrapOutboundIn(data), promise))
    }

    func flush(context: ChannelHandlerContext) {
        guard !pending.isEmpty else { return context.flush() }
        let writes = pending
        pending = []
        if compressor == nil { compressor = Self.makeCompressor() }
        guard let compressor else {
            for (_, promise) in writes { promise?.fail(ChannelError.ioOnClosedChannel) }
            context.close(promise: nil)
            return
        }
        var input = context.channel.allocator.buffer(capacity: writes.reduce(0) { $0 + $1.0.readableBytes })
        for (buffer, _) in writes { var copy = buffer; input.writeBuffer(&copy) }
        let done = context.eventLoop.makePromise(of: Void.self)
        for (_, promise) in writes { if let promise { done.futureResult.cascade(to: promise) } }
        var chunks: [ByteBuffer] = []
        do {
            while true {
                var output = context.channel.allocator.buffer(capacity: max(1024, input.readableBytes + input.readableBytes / 8 + 64))
                let before = input.readableBytes
                do {
                    try compressor.deflate(from: &input, to: &output, flush: .sync)
                } catch let error as CompressNIOError where error == .bufferOverflow {
                    // Out of room, or (Z_BUF_ERROR) nothing left to do: the progress check decides.
                }
                let progressed = output.readableBytes > 0 || input.readableBytes < before
                if output.readableBytes > 0 { chunks.append(output) }
                // Done when everything is consumed and the flush fitted; never spin without progress.
                if !progressed || (input.readableBytes == 0 && output.writableBytes > 0) { break }
            }
        } catch {
            done.fail(error)
            context.close(promise: nil)
            return
        }
        for (index, chunk) in chunks.enumerated() {
            context.write(wrapOutboundOut(chunk), promise: index == chunks.count - 1 ? done : nil)
        }
        if chunks.isEmpty { done.succeed(()) }
        context.flush()
    }
}
