// The cipher suite an MX host chose, for the delivery log: swift-nio-ssl does not expose it, so a
// pass-through handler in front of the TLS handler reads it from the server's ServerHello, which
// travels in clear in the first handshake record (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3).

import FacteurNet
import NIOConcurrencyHelpers
import NIOCore

final class ServerHelloCipherObserver: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    /// A ServerHello is a few hundred octets; past this the record is not one.
    static let maxBytes = 16 * 1024
    private let result: NIOLockedValueBox<UInt16?>
    private var seen: [UInt8] = []
    private var done = false

    init(result: NIOLockedValueBox<UInt16?>) { self.result = result }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !done {
            let buffer = unwrapInboundIn(data)
            seen += buffer.readableBytesView.prefix(Self.maxBytes - seen.count)
            switch TLSServerHello.cipherSuite(in: seen) {
            case .none:
                if seen.count >= Self.maxBytes { done = true; seen = [] }
            case .some(let suite):
                done = true
                seen = []
                if let suite { result.withLockedValue { $0 = suite } }
            }
        }
        context.fireChannelRead(data)
    }
}
