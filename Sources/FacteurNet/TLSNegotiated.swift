// What TLS a connection ended up with — version and cipher suite — for trace headers and logs
// (RFC 8314 §4.3 recommends recording it in Received:). NIOSSL reports the version but not the
// cipher, so a small outbound observer placed under the TLS handler reads the cipher_suite the
// server chose from its own ServerHello (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3), which travels in
// the clear, then removes itself.

import NIOCore
import NIOSSL
import NIOTLS

/// The negotiated protocol version and cipher suite of a TLS connection.
public struct TLSConnectionInfo: Sendable, Equatable, CustomStringConvertible {
    /// `TLSv1.3`, `TLSv1.2`, … (OpenSSL's spelling, which mail operators grep for).
    public var version: String
    /// The IANA name of the cipher suite, e.g. `TLS_AES_128_GCM_SHA256`.
    public var cipher: String

    public init(version: String, cipher: String) {
        self.version = version
        self.cipher = cipher
    }

    /// `TLSv1.3 with cipher TLS_AES_128_GCM_SHA256`, the RFC 8314 §4.3 wording.
    public var description: String { "\(version) with cipher \(cipher)" }

    public static func versionName(_ version: TLSVersion?) -> String {
        switch version {
        case .tlsv13: return "TLSv1.3"
        case .tlsv12: return "TLSv1.2"
        case .tlsv11: return "TLSv1.1"
        case .tlsv1: return "TLSv1"
        case .none: return "TLS"
        }
    }

    /// IANA names of the suites our policy can negotiate, and of those a remote server may pick;
    /// anything else is shown by number.
    public static func cipherName(_ code: UInt16) -> String {
        switch code {
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
            let hex = String(code, radix: 16, uppercase: true)
            return "0x" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        }
    }
}

/// Fired inbound (before `TLSUserEvent.handshakeCompleted`) once the server's ServerHello has
/// been written: the cipher suite it chose.
public struct TLSCipherSelectedEvent: Sendable, Equatable {
    public var cipherSuite: UInt16
    public var name: String { TLSConnectionInfo.cipherName(cipherSuite) }
}

/// Sits between the socket and NIOSSLHandler and watches the first outbound handshake bytes.
final class TLSServerHelloObserver: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// record header (5) + handshake header (4) + version (2) + random (32) + session id (1 + ≤32) + suite (2)
    private static let enough = 5 + 4 + 2 + 32 + 1 + 32 + 2
    private var seen: [UInt8] = []
    private var done = false
    private var removed = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !done else { return context.write(data, promise: promise) }
        let buffer = unwrapOutboundIn(data)
        let wanted = Self.enough - seen.count
        if let bytes = buffer.getBytes(at: buffer.readerIndex, length: min(wanted, buffer.readableBytes)) {
            seen.append(contentsOf: bytes)
        }
        // Pass the bytes on first: the handler may leave the pipeline while inspecting.
        context.write(data, promise: promise)
        inspect(context: context)
    }

    private func inspect(context: ChannelHandlerContext) {
        switch TLSServerHello.cipherSuite(in: seen) {
        case .some(.some(let suite)):
            context.fireUserInboundEventTriggered(TLSCipherSelectedEvent(cipherSuite: suite))
            finish(context: context)
        case .some(.none):
            finish(context: context)   // not a ServerHello (an alert): nothing to report
        case .none:
            if seen.count >= Self.enough { finish(context: context) }
        }
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
        // Leave only here: removing the handler inside `write` would drop the flush of a
        // writeAndFlush that is still on its way through this context.
        if done, !removed {
            removed = true
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func finish(context: ChannelHandlerContext) {
        done = true
        seen = []
    }
}

/// The cipher suite in a ServerHello, which travels in clear in the first handshake record
/// (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3): swift-nio-ssl does not expose the negotiated suite, so
/// the server (our own ServerHello) and the SMTP client (the MX host's) both read it there.
public enum TLSServerHello {
    /// nil: more bytes needed; .some(nil): not a ServerHello (an alert, say); .some(suite): the suite chosen.
    public static func cipherSuite(in bytes: [UInt8]) -> UInt16?? {
        // TLSPlaintext: type(1) = 22 handshake, legacy_record_version(2), length(2).
        guard bytes.count >= 5 else { return nil }
        guard bytes[0] == 22 else { return .some(nil) }
        // Handshake: msg_type(1) = 2 server_hello, length(3).
        guard bytes.count >= 9 else { return nil }
        guard bytes[5] == 2 else { return .some(nil) }
        // legacy_version(2), random(32), legacy_session_id<0..32>, cipher_suite(2).
        let sessionIDAt = 9 + 2 + 32
        guard bytes.count > sessionIDAt else { return nil }
        let sessionIDLength = Int(bytes[sessionIDAt])
        guard sessionIDLength <= 32 else { return .some(nil) }
        let suiteAt = sessionIDAt + 1 + sessionIDLength
        guard bytes.count >= suiteAt + 2 else { return nil }
        return .some(UInt16(bytes[suiteAt]) << 8 | UInt16(bytes[suiteAt + 1]))
    }
}

/// Collects the version and cipher for a protocol handler: feed it every inbound user event,
/// read `info` after `TLSUserEvent.handshakeCompleted`.
public struct TLSConnectionInfoCollector: Sendable {
    private var cipher: String?
    public private(set) var info: TLSConnectionInfo?

    public init() {}

    /// Call from `userInboundEventTriggered`; returns the connection's TLS facts once the
    /// handshake has completed (nil for other events).
    public mutating func observe(_ event: Any, context: ChannelHandlerContext) -> TLSConnectionInfo? {
        if let selected = event as? TLSCipherSelectedEvent {
            cipher = selected.name
            return nil
        }
        guard let tls = event as? TLSUserEvent, case .handshakeCompleted = tls else { return nil }
        let version = (try? context.pipeline.syncOperations.nioSSL_tlsVersion()) ?? nil
        let negotiated = TLSConnectionInfo(version: TLSConnectionInfo.versionName(version), cipher: cipher ?? "unknown")
        info = negotiated
        return negotiated
    }
}
