// The public HTTP and HTTPS listener (NIOHTTP1): one request per connection, answered by
// PublicWebRouter. It faces the whole Internet, so every connection is bounded: request head
// size, no request bodies, a deadline for the whole exchange, connection limits.

import FacteurNet
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

public struct PublicWebLimits: Sendable {
    /// Request line plus headers, in bytes.
    public var maxRequestHeadBytes = 8 * 1024
    /// From accept to the response written: slow clients are cut off.
    public var connectionDeadline: TimeAmount = .seconds(15)
    public var maxConnections = 1_000
    public var maxConnectionsPerAddress = 20
    public init() {}
}

public final class PublicWebListener: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var limits: PublicWebLimits
        public init(host: String, port: Int, limits: PublicWebLimits = .init()) {
            self.host = host; self.port = port; self.limits = limits
        }
    }

    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    public var localAddress: SocketAddress? { channel.localAddress }

    /// - Parameter tlsContext: nil for plain HTTP; for HTTPS, FacteurNet's shared TLS pipeline
    ///   asks it for the current context at each connection (renewed certificates apply at once)
    ///   and answers TLS-ALPN-01 challenges from its challenge table.
    public static func bind(configuration: Configuration, router: PublicWebRouter,
                            tlsContext: (any TLSContextSource)?,
                            group: any EventLoopGroup, logger: Logger) async throws -> PublicWebListener {
        let limits = configuration.limits
        let limiter = ConnectionLimiter(maxConnections: limits.maxConnections, maxPerAddress: limits.maxConnectionsPerAddress)
        let secure = tlsContext != nil
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let address = channel.remoteAddress?.ipAddress ?? "?"
                    guard limiter.acquire(address: address) == .accepted else {
                        throw PublicWebError.tooManyConnections
                    }
                    channel.closeFuture.whenComplete { _ in limiter.release(address: address) }
                    let addHTTP = { (sync: ChannelPipeline.SynchronousOperations) throws in
                        try sync.addHandler(RequestHeadLimiter(maxBytes: limits.maxRequestHeadBytes))
                        try sync.addHandler(HTTPResponseEncoder())
                        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                        try sync.addHandler(PublicWebHandler(router: router, secure: secure, deadline: limits.connectionDeadline,
                                                             logger: logger))
                    }
                    if let tlsContext {
                        // RFC 8461 §3.3: HTTPS; the pipeline is FacteurNet's, shared by every implicit-TLS listener.
                        try TLSServerPipeline.configureSync(channel: channel, provider: tlsContext, addApplicationHandlers: addHTTP)
                    } else {
                        try addHTTP(channel.pipeline.syncOperations)
                    }
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        return PublicWebListener(channel: channel)
    }

    public func shutdown() async {
        try? await channel.close()
    }
}

enum PublicWebError: Error {
    case tooManyConnections
}

/// Counts the bytes of the request head before the HTTP parser sees them: a request bigger than
/// the limit gets a 431 and the connection closes. Since a connection carries one request and
/// bodies are refused, every byte counted belongs to the head.
final class RequestHeadLimiter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let maxBytes: Int
    private var seen = 0
    private var refused = false
    private var responded = false

    init(maxBytes: Int) { self.maxBytes = maxBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let buffer = unwrapInboundIn(data)
        seen += buffer.readableBytes
        if seen > maxBytes {
            refused = true
            if !responded {
                let text = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(string: text))).whenComplete { _ in
                    channel.close(promise: nil)
                }
            } else {
                context.close(promise: nil)
            }
            return
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        responded = true
        context.write(data, promise: promise)
    }
}

final class PublicWebHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: PublicWebRouter
    private let secure: Bool
    private let deadline: TimeAmount
    private let logger: Logger
    private var answered = false
    private var timer: Scheduled<Void>?

    init(router: PublicWebRouter, secure: Bool, deadline: TimeAmount, logger: Logger) {
        self.router = router; self.secure = secure; self.deadline = deadline; self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: deadline) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        answered = true
        let response: PublicWebResponse
        // A body would only be read to be thrown away: refuse it (neither resource takes one).
        let length = head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
        if length > 0 || head.headers.contains(name: "transfer-encoding") {
            response = .text(413, "Content Too Large", "request bodies are not accepted\n")
        } else if head.headers[canonicalForm: "host"].count > 1 {
            response = .text(400, "Bad Request", "one Host header\n")
        } else {
            response = router.respond(method: head.method.rawValue, path: head.uri, host: head.headers.first(name: "host"),
                                      secure: secure)
        }
        logger.debug("public web request", metadata: [
            "method": "\(head.method.rawValue)", "path": "\(head.uri.prefix(200))", "status": "\(response.status)",
        ])
        send(response, head: head.method == .HEAD, context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !answered, error is HTTPParserError {
            answered = true
            send(.text(400, "Bad Request", "bad request\n"), head: false, context: context)
            return
        }
        context.close(promise: nil)
    }

    private func send(_ response: PublicWebResponse, head: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: "\(response.body.utf8.count)")
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Cache-Control", value: "no-store")
        let status = HTTPResponseStatus(statusCode: response.status, reasonPhrase: response.reason)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !head {
            let body = context.channel.allocator.buffer(string: response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
