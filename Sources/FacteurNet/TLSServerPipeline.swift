// The TLS server pipeline every listener uses, for implicit TLS (RFC 8314 §3: SMTPS 465,
// IMAPS 993, POP3S 995, and HTTPS) and for STARTTLS / STLS upgrades (RFC 3207, RFC 2595).
//
// Implicit TLS: a first handler reads the ClientHello (bounded), learns the SNI name and the
// ALPN offer, and only then builds the rest of the pipeline:
//   - ALPN "acme-tls/1" for a host with a pending TLS-ALPN-01 challenge (RFC 8737 §3): the
//     challenge certificate is presented, "acme-tls/1" selected, and the connection closed once
//     the handshake is done; the protocol handlers are never added, so no greeting is sent.
//   - anything else: the provider's current context (re-read per connection, so reloaded
//     certificates apply at once) in front of the protocol's handlers.
// The buffered ClientHello bytes are then replayed into the TLS handler, and the protocol
// handlers see `channelActive` only then, exactly as if TLS had been there from the start.

import Logging
import NIOCore
import NIOSSL
import NIOTLS

public enum TLSServerPipeline {
    /// A client that connects and sends no ClientHello within this time is dropped.
    public static let clientHelloTimeout: TimeAmount = .seconds(15)

    /// Connections still waiting for their ClientHello, over every implicit-TLS listener. The
    /// protocols' own connection limits only count a connection once its handlers are added
    /// (after the ClientHello), so silent connections are bounded here: at most this many in all
    /// and per client address, each for at most `clientHelloTimeout`.
    public static let waitingForClientHello = ConnectionLimiter(maxConnections: 4096, maxPerAddress: 64)

    /// Sets up implicit TLS on a freshly accepted `channel`. Must run on the channel's event loop
    /// (e.g. inside `childChannelInitializer` with `makeCompletedFuture`).
    ///
    /// - Parameters:
    ///   - provider: where the context for this connection comes from (read once, after the ClientHello).
    ///   - challenges: TLS-ALPN-01 certificates; defaults to the provider's.
    ///   - clientHelloTimeout: how long a client may stay silent before it is dropped.
    ///   - addApplicationHandlers: adds the protocol's handlers behind TLS. Called at most once,
    ///     after the ClientHello, and not at all for ACME challenge connections.
    public static func configureSync(
        channel: any Channel, provider: any TLSContextSource, challenges: ACMEChallengeCertificates? = nil,
        clientHelloTimeout: TimeAmount = TLSServerPipeline.clientHelloTimeout,
        waitingLimiter: ConnectionLimiter = TLSServerPipeline.waitingForClientHello,
        addApplicationHandlers: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void
    ) throws {
        let sniffer = TLSClientHelloSniffer(provider: provider, challenges: challenges ?? provider.acmeChallenges,
                                            timeout: clientHelloTimeout, waitingLimiter: waitingLimiter,
                                            addApplicationHandlers: addApplicationHandlers)
        try channel.pipeline.syncOperations.addHandler(sniffer)
    }

    /// The same as `configureSync`, callable from any thread; the future completes once the
    /// first handler is in place.
    public static func configure(
        channel: any Channel, provider: any TLSContextSource, challenges: ACMEChallengeCertificates? = nil,
        addApplicationHandlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void
    ) -> EventLoopFuture<Void> {
        channel.eventLoop.submit {
            try configureSync(channel: channel, provider: provider, challenges: challenges, addApplicationHandlers: addApplicationHandlers)
        }
    }

    /// STARTTLS / STLS: puts TLS in front of the handler at `context` on a live connection. Call it
    /// in the same event-loop tick as the plaintext "ready to start TLS" reply is written.
    public static func startTLS(context: ChannelHandlerContext, provider: any TLSContextSource) throws {
        let pipeline = context.pipeline.syncOperations
        try pipeline.addHandler(NIOSSLServerHandler(context: provider.currentContext), position: .first)
        try pipeline.addHandler(TLSServerHelloObserver(), position: .first)
    }
}

/// Holds back `channelActive` and the first bytes until the ClientHello is known.
final class TLSClientHelloSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let provider: any TLSContextSource
    private let challenges: ACMEChallengeCertificates?
    private var addApplicationHandlers: ((ChannelPipeline.SynchronousOperations) throws -> Void)?
    private var buffered: ByteBuffer?
    private let timeoutAmount: TimeAmount
    private var timeout: Scheduled<Void>?
    private var decided = false
    /// The client address counted in `waitingLimiter`, until released.
    private var countedAddress: String?

    private let waitingLimiter: ConnectionLimiter

    init(provider: any TLSContextSource, challenges: ACMEChallengeCertificates?, timeout: TimeAmount,
         waitingLimiter: ConnectionLimiter,
         addApplicationHandlers: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void) {
        self.provider = provider
        self.waitingLimiter = waitingLimiter
        self.challenges = challenges
        self.timeoutAmount = timeout
        self.addApplicationHandlers = addApplicationHandlers
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        // Not forwarded yet: the protocol handlers are added (and told) once TLS is in place.
        start(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        decided = true
        buffered = nil
        releaseCount()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        releaseCount()
    }

    /// Counts the connection among those waiting for a ClientHello (closing it when too many
    /// are) and starts the clock.
    private func start(context: ChannelHandlerContext) {
        guard timeout == nil, countedAddress == nil, !decided else { return }
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard waitingLimiter.acquire(address: address) == .accepted else {
            decided = true
            context.close(promise: nil)
            return
        }
        countedAddress = address
        armTimeout(context: context)
    }

    private func releaseCount() {
        if let address = countedAddress {
            countedAddress = nil
            waitingLimiter.release(address: address)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else { return context.fireChannelRead(data) }
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        let bytes = buffered!.readableBytesView
        // Bounded: never hold more than one ClientHello's worth of bytes.
        let window = Array(bytes.prefix(TLSClientHelloParser.maxBufferedBytes))
        switch TLSClientHelloParser.parse(window) {
        case .needMoreData where bytes.count < TLSClientHelloParser.maxBufferedBytes:
            return
        case .clientHello(let info):
            decide(context: context, hello: info)
        case .needMoreData, .notTLS, .malformed:
            // Let the TLS library refuse it with a proper alert.
            decide(context: context, hello: nil)
        }
    }

    private func armTimeout(context: ChannelHandlerContext) {
        guard timeout == nil, !decided else { return }
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: timeoutAmount) {
            context.close(promise: nil)
        }
    }

    private func decide(context: ChannelHandlerContext, hello: TLSClientHelloInfo?) {
        decided = true
        timeout?.cancel()
        timeout = nil
        releaseCount()
        let pipeline = context.pipeline.syncOperations
        do {
            if let hello, hello.applicationProtocols.contains(ACMEChallengeCertificates.alpnProtocol),
               let name = hello.serverName, let challenge = challenges?.context(for: name) {
                // RFC 8737 §3: challenge certificate, acme-tls/1, then nothing but closing.
                try pipeline.addHandler(ACMEChallengeResponder(), position: .after(self))
                try pipeline.addHandler(NIOSSLServerHandler(context: challenge), position: .after(self))
            } else {
                let application = addApplicationHandlers
                addApplicationHandlers = nil
                try application?(pipeline)
                try pipeline.addHandler(NIOSSLServerHandler(context: provider.currentContext), position: .after(self))
                try pipeline.addHandler(TLSServerHelloObserver(), position: .after(self))
            }
        } catch {
            context.close(promise: nil)
            return
        }
        // The next handlers now see the connection start, then the client's first bytes.
        context.fireChannelActive()
        if let bytes = buffered {
            buffered = nil
            context.fireChannelRead(wrapInboundOut(bytes))
            context.fireChannelReadComplete()
        }
        pipeline.removeHandler(context: context, promise: nil)
    }
}

/// Ends a TLS-ALPN-01 validation connection once its handshake has completed (RFC 8737 §3: no
/// application data is exchanged). Whatever the peer sends is dropped.
final class ACMEChallengeResponder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
