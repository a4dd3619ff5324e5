// The cipher suite an MX host chose, for the delivery log: swift-nio-ssl does not expose it, so a
// pass-through handler in front of the TLS handler reads it from the server's ServerHello, which
// travels in clear in the first handshake record (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3).

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
            switch Self.cipherSuite(inServerHello: seen) {
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

    /// nil: more bytes needed; .some(nil): not a ServerHello; .some(suite): the suite chosen.
    static func cipherSuite(inServerHello bytes: [UInt8]) -> UInt16?? {
        // TLSPlaintext: type(1) = 22 handshake, legacy_record_version(2), length(2).
        guard bytes.count >= 5 else { return nil }
        guard bytes[0] == 22 else { return .some(nil) }
        // Handshake: msg_type(1) = 2 server_hello, length(3).
        guard bytes.count >= 9 else { return nil }
        guard bytes[5] == 2 else { return .some(nil) }
        // legacy_version(2), random(32), legacy_session_id<0..32>, cipher_suite(2).
        var index = 9 + 2 + 32
        guard bytes.count > index else { return nil }
        let sessionIDLength = Int(bytes[index])
        guard sessionIDLength <= 32 else { return .some(nil) }
        index += 1 + sessionIDLength
        guard bytes.count >= index + 2 else { return nil }
        return .some(UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1]))
    }

    /// IANA names of the suites a modern server picks; others as hex.
    static func name(_ suite: UInt16) -> String {
        switch suite {
        case 0x1301: return "TLS_AES_128_GCM_SHA256"
        case 0x1302: return "TLS_AES_256_GCM_SHA384"
        case 0x1303: return "TLS_CHACHA20_POLY1305_SHA256"
        case 0xC02B: return "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        case 0xC02C: return "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        case 0xC02F: return "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        case 0xC030: return "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        case 0xCCA8: return "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        case 0xCCA9: return "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        case 0x009C: return "TLS_RSA_WITH_AES_128_GCM_SHA256"
        case 0x009D: return "TLS_RSA_WITH_AES_256_GCM_SHA384"
        default:
            let hex = String(suite, radix: 16, uppercase: true)
            return "0x" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        }
    }
}
