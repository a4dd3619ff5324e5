import Foundation
import NIOCore
import NIOPosix
@testable import FacteurDNS

/// One datagram or TCP message the fake server sends back.
enum FakeReply: Sendable {
    /// From the server's own address and port.
    case fromServer([UInt8])
    /// From another port on the same host: an off-path spoofer's guess (RFC 5452 §9.1).
    case fromOtherPort([UInt8])
}

/// A DNS server on loopback (UDP and TCP on one port) whose replies the test scripts.
final class FakeDNSServer: @unchecked Sendable {
    typealias Responder = @Sendable (_ query: DNSMessage, _ overTCP: Bool) -> [FakeReply]

    private let lock = NSLock()
    private var received: [(message: DNSMessage, overTCP: Bool)] = []
    private let respond: Responder
    private var channels: [any Channel] = []
    private(set) var address: SocketAddress!
    fileprivate var spoofer: (any Channel)!

    private init(respond: @escaping Responder) {
        self.respond = respond
    }

    var queries: [(message: DNSMessage, overTCP: Bool)] { lock.withLock { received } }

    fileprivate func handle(_ query: DNSMessage, overTCP: Bool) -> [FakeReply] {
        lock.withLock { received.append((query, overTCP)) }
        return respond(query, overTCP)
    }

    /// The UDP port is picked by the system and TCP must take the same number, which another
    /// program on the machine may hold: a few fresh tries instead of a flaky failure.
    static func start(_ respond: @escaping Responder) async throws -> FakeDNSServer {
        var attempt = 0
        while true {
            do {
                return try await startOnce(respond)
            } catch let error as IOError where error.errnoCode == EADDRINUSE && attempt < 10 {
                attempt += 1
            }
        }
    }

    private static func startOnce(_ respond: @escaping Responder) async throws -> FakeDNSServer {
        let server = FakeDNSServer(respond: respond)
        let group = MultiThreadedEventLoopGroup.singleton
        let udp = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FakeUDPHandler(server: server))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = udp.localAddress!.port!
        let tcp: any Channel
        do {
            tcp = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(TestLengthPrefixDecoder()))
                        try channel.pipeline.syncOperations.addHandler(FakeTCPHandler(server: server))
                    }
                }
                .bind(host: "127.0.0.1", port: port).get()
        } catch {
            try? await udp.close()
            throw error
        }
        let spoofer = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        server.address = udp.localAddress
        server.spoofer = spoofer
        server.channels = [udp, tcp, spoofer]
        return server
    }

    func stop() async {
        for channel in channels {
            try? await channel.close()
        }
    }

    /// A response to `query` with the given sections and bits.
    static func reply(to query: DNSMessage, rcode: DNSResponseCode = .noError, answers: [DNSResourceRecord] = [],
                      authority: [DNSResourceRecord] = [], truncated: Bool = false, authenticData: Bool = false,
                      id: UInt16? = nil, question: DNSQuestion? = nil, edns: Bool = true) -> [UInt8] {
        let header = DNSHeader(id: id ?? query.header.id, isResponse: true, truncated: truncated,
                               recursionDesired: true, recursionAvailable: true, authenticData: authenticData,
                               rcodeLow: UInt8(rcode.rawValue & 0x0F))
        let message = DNSMessage(header: header, questions: question.map { [$0] } ?? query.questions,
                                 answers: answers, authority: authority,
                                 edns: edns && query.edns != nil ? EDNSOptions() : nil)
        return try! message.encoded()
    }
}

private final class FakeUDPHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    let server: FakeDNSServer
    init(server: FakeDNSServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        guard let query = try? DNSMessage(decoding: Array(envelope.data.readableBytesView)) else { return }
        for reply in server.handle(query, overTCP: false) {
            switch reply {
            case .fromServer(let bytes):
                context.writeAndFlush(Self.wrapOutboundOut(AddressedEnvelope(
                    remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: bytes))), promise: nil)
            case .fromOtherPort(let bytes):
                server.spoofer.writeAndFlush(AddressedEnvelope(
                    remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            }
        }
    }
}

private final class FakeTCPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let server: FakeDNSServer
    init(server: FakeDNSServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        guard let query = try? DNSMessage(decoding: Array(frame.readableBytesView)) else { return }
        for case .fromServer(let bytes) in server.handle(query, overTCP: true) {
            var buffer = context.channel.allocator.buffer(capacity: bytes.count + 2)
            buffer.writeInteger(UInt16(bytes.count))
            buffer.writeBytes(bytes)
            context.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
        }
    }
}

struct TestLengthPrefixDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}
