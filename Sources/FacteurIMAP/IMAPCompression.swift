// COMPRESS=DEFLATE (RFC 4978): once the server has said "OK DEFLATE active", everything in both
// directions is a raw DEFLATE stream (RFC 1951, no zlib header), placed between TLS and IMAP.
// The server flushes (Z_SYNC_FLUSH) whenever the connection is flushed, so a response never
// waits in the compressor (§4: "the server MUST flush ... after each response").

import CompressNIO
import NIOCore

/// Inflates what the client sends. A small input may inflate to a lot: beyond `maxExpansion`
/// bytes from one read the connection is closed (a decompression bomb must not fill memory).
final class DeflateDecompressionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let decompressor: ZlibDecompressor?
    private let maxExpansion: Int
    private var failed = false

    init(maxExpansion: Int) {
        decompressor = try? ZlibDecompressor(algorithm: .deflate, windowSize: 15)
        self.maxExpansion = maxExpansion
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        guard let decompressor else { return fail(context: context) }
        var input = unwrapInboundIn(data)
        var produced = 0
        while true {
            var output = context.channel.allocator.buffer(capacity: 16 * 1024)
            let before = input.readableBytes
            do {
                try decompressor.inflate(from: &input, to: &output)
            } catch let error as CompressNIOError where error == .bufferOverflow || error == .inputBufferOverflow {
                // Out of output room, or all input used: the progress check decides.
            } catch {
                return fail(context: context)
            }
            produced += output.readableBytes
            guard produced <= maxExpansion else { return fail(context: context) }
            let progressed = output.readableBytes > 0 || input.readableBytes < before
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

    private let compressor: ZlibCompressor?
    private var pending: [(ByteBuffer, EventLoopPromise<Void>?)] = []

    /// A 4 KiB window and memory level 5 keep the deflate state near 24 KiB per connection
    /// instead of zlib's default ~260 KiB: IMAP responses are small and repetitive, and 10,000
    /// idle compressed connections must fit in memory (the client's inflate is unaffected).
    init() {
        compressor = try? ZlibCompressor(algorithm: .deflate,
                                         configuration: ZlibConfiguration(windowSize: 12, compressionLevel: 6, memoryLevel: 5))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        pending.append((unwrapOutboundIn(data), promise))
    }

    func flush(context: ChannelHandlerContext) {
        guard !pending.isEmpty else { return context.flush() }
        let writes = pending
        pending = []
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
