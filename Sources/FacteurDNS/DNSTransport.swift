// FacteurDNS: one query/response exchange with one server over NIO — UDP on a fresh socket bound to
// port 0 (a kernel-chosen random source port, RFC 5452 §9.2), or TCP with the 2-octet length prefix
// (RFC 1035 §4.2.2, RFC 7766 §8). A reply is accepted only if it comes from the server's address and
// carries our ID and our question (RFC 5452 §9.1); anything else is dropped and we keep waiting
// until the timeout.

import NIOCore
import NIOPosix

/// How one exchange ended, when it did not produce a message.
enum DNSTransportError: Error, Sendable {
    case timeout
    case closedBeforeAnswer
}

/// A response that matched our query, and whether it arrived truncated (TC).
struct DNSExchangeResult: Sendable {
    var message: DNSMessage?
    var truncated: Bool
}

enum DNSTransport {
    /// Sends `query` over UDP to `server` and waits up to `timeout` for a matching response.
    static func udp(query: DNSMessage, server: SocketAddress, timeout: TimeAmount,
                    group: any EventLoopGroup) async throws -> DNSExchangeResult {
        let loop = group.next()
        let promise = loop.makePromise(of: DNSExchangeResult.self)
        let bytes = try query.encoded()
        let bindHost = server.protocol == .inet6 ? "::" : "0.0.0.0"
        let channel: any Channel
        do {
            channel = try await DatagramBootstrap(group: loop)
                // Room for any datagram, so a server that ignores our EDNS size is read whole, not cut.
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: DNSLimits.maxMessageSize))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            UDPResponseHandler(server: server, query: query, promise: promise))
                    }
                }
                .bind(host: bindHost, port: 0).get()
        } catch {
            promise.fail(error)
            throw error
        }
        let timer = loop.scheduleTask(in: timeout) { promise.fail(DNSTransportError.timeout) }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        let envelope = AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: bytes))
        channel.writeAndFlush(envelope).whenFailure { promise.fail($0) }
        return try await promise.futureResult.get()
    }

    /// Sends `query` over a new TCP connection to `server` and waits up to `timeout` (connection
    /// included) for a matching response.
    static func tcp(query: DNSMessage, server: SocketAddress, timeout: TimeAmount,
                    group: any EventLoopGroup) async throws -> DNSExchangeResult {
        let loop = group.next()
        let promise = loop.makePromise(of: DNSExchangeResult.self)
        let timer = loop.scheduleTask(in: timeout) { promise.fail(DNSTransportError.timeout) }
        defer { timer.cancel() }
        let bytes = try query.encoded()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(
                            TCPResponseHandler(query: query, promise: promise))
                    }
                }
                .connect(to: server).get()
        } catch {
            promise.fail(error)
            throw error
        }
        defer { channel.close(promise: nil) }
        var buffer = channel.allocator.buffer(capacity: bytes.count + 2)
        buffer.writeInteger(UInt16(bytes.count))
        buffer.writeBytes(bytes)
        channel.writeAndFlush(buffer).whenFailure { promise.fail($0) }
        return try await promise.futureResult.get()
    }

    /// What a received message is to our query.
    enum Match {
        /// Ours: QR set, same ID, same question.
        case accepted(DNSExchangeResult)
        /// Not ours (or not a response): dropped.
        case foreign
        /// Our ID and QR, but the bytes do not decode: over UDP it may be forged and is dropped;
        /// over TCP it is the server's answer, and it is broken.
        case malformed(DNSWireError)
    }

    /// Whether `bytes` answer `query`: QR set, same ID, same single question (names compared without
    /// case, so resolvers that echo 0x20-mixed case still match). A truncated reply whose body does
    /// not decode is still accepted on its header alone, since TC sends us to TCP anyway.
    static func match(_ bytes: [UInt8], query: DNSMessage) -> Match {
        guard bytes.count >= 12 else { return .foreign }
        let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        let isResponse = bytes[2] & 0x80 != 0
        let truncated = bytes[2] & 0x02 != 0
        guard isResponse, id == query.header.id else { return .foreign }
        let message: DNSMessage
        do {
            message = try DNSMessage(decoding: bytes)
        } catch {
            return truncated ? .accepted(DNSExchangeResult(message: nil, truncated: true)) : .malformed(error)
        }
        // A FORMERR may come back without the question (RFC 6891 §7); accept an empty question
        // section only together with an error RCODE.
        if message.questions.isEmpty && message.responseCode != .noError {
            return .accepted(DNSExchangeResult(message: message, truncated: truncated))
        }
        guard message.questions == query.questions else { return .foreign }
        return .accepted(DNSExchangeResult(message: message, truncated: truncated))
    }
}

/// Reads datagrams on the query's socket and completes the promise with the first that matches.
private final class UDPResponseHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let server: SocketAddress
    private let query: DNSMessage
    private let promise: EventLoopPromise<DNSExchangeResult>

    init(server: SocketAddress, query: DNSMessage, promise: EventLoopPromise<DNSExchangeResult>) {
        self.server = server
        self.query = query
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        // RFC 5452 §9.1: the source address and port must be the server's.
        guard envelope.remoteAddress == server else { return }
        // RFC 5452 §9.1: anything that is not exactly our answer is dropped; we keep listening.
        guard case .accepted(let result) = DNSTransport.match(Array(envelope.data.readableBytesView), query: query) else {
            return
        }
        promise.succeed(result)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An ICMP port unreachable surfaces here as ECONNREFUSED on some systems: the server is down.
        promise.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DNSTransportError.closedBeforeAnswer)
        context.fireChannelInactive()
    }
}

/// RFC 7766 §8: each message on a TCP connection is preceded by its length as two octets.
private struct LengthPrefixedFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(length) else {
            return .needMoreData
        }
        buffer.moveReaderIndex(forwardBy: 2)
        guard let frame = buffer.readSlice(length: Int(length)) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }
}

/// Completes the promise with the first framed message that matches the query.
private final class TCPResponseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let query: DNSMessage
    private let promise: EventLoopPromise<DNSExchangeResult>

    init(query: DNSMessage, promise: EventLoopPromise<DNSExchangeResult>) {
        self.query = query
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        switch DNSTransport.match(Array(frame.readableBytesView), query: query) {
        case .accepted(var result):
            // Over TCP the whole message arrived; a TC bit here has nothing better to fall back to.
            result.truncated = false
            if result.message == nil {
                promise.fail(DNSWireError.truncated)
            } else {
                promise.succeed(result)
            }
        case .malformed(let error):
            // On our own connection this is the server's answer, not a spoofer's: fail now.
            promise.fail(error)
        case .foreign:
            return
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DNSTransportError.closedBeforeAnswer)
        context.fireChannelInactive()
    }
}
