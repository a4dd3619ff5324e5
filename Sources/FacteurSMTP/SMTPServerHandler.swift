// The NIO adapter of the SMTP server: frames bytes into command lines and message data, feeds
// the session, and carries out its actions (replies, STARTTLS, recipient checks, delivery).
// It is the only SMTP code that knows about channels. Back-pressure: while an effect runs or too
// much input is buffered, it withholds `read()`, so a client cannot make it buffer without bound.

import FacteurIdentity
import FacteurNet
import Foundation
import FacteurStore
import Logging
import NIOCore
import NIOSSL
import NIOTLS

public struct SMTPServerLimits: Sendable {
    /// RFC 5321 §4.5.3.1.4 says 512 for commands; AUTH lines may be up to 12288 (RFC 4954 §4).
    public var maxCommandLength = 12_288
    /// Longest message line accepted (RFC 5322 §2.1.1 says 998; real mail is sloppier).
    public var maxDataLineLength = 64 * 1024
    /// Messages larger than this go to a spool file while they arrive.
    public var memorySpoolLimit = 1024 * 1024
    /// Idle time allowed between client bytes (RFC 5321 §4.5.3.2: at least 5 minutes).
    public var idleTimeout: TimeAmount = .minutes(5)
    /// Input buffered while a command is being processed before reads are withheld.
    public var maxBufferedInput = 256 * 1024
    public init() {}
}

struct AuthStep: Sendable {
    var exchange: AuthExchange
    var outcome: AuthOutcome
}

public final class SMTPServerHandler: ChannelDuplexHandler, DrainableSession, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum Framing {
        case commands
        /// A SASL exchange waits for the client's next response line (RFC 4954 §4).
        case authResponse
        case data
        case chunk(remaining: Int, last: Bool)
    }

    private let configuration: SMTPSessionConfiguration
    private let limits: SMTPServerLimits
    private let backend: any SMTPBackend
    private let authenticator: Authenticator?
    private var exchange: AuthExchange?
    private let sslContext: (any TLSContextSource)?
    private let spoolDirectory: String
    private let limiter: ConnectionLimiter?
    private let registry: ConnectionRegistry?
    private let logger: Logger

    // Event-loop state: touched only on the channel's event loop.
    private var session: SMTPSession?
    private var context: ChannelHandlerContext?
    private var lines: LineBuffer
    private var framing = Framing.commands
    private var decoder: MessageDataDecoder?
    private var spool: MessageSpool?
    private var waitingForEffect = false
    private var readPending = false
    private var closing = false
    private var clientAddress = "unknown"
    private var acquiredLimit = false
    private var lastActivity = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    private var tlsInfo = TLSConnectionInfoCollector()

    public init(configuration: SMTPSessionConfiguration, limits: SMTPServerLimits, backend: any SMTPBackend,
                sslContext: (any TLSContextSource)?, spoolDirectory: String, limiter: ConnectionLimiter?,
                registry: ConnectionRegistry?, logger: Logger, authenticator: Authenticator? = nil) {
        self.authenticator = authenticator
        self.configuration = configuration
        self.limits = limits
        self.backend = backend
        self.sslContext = sslContext
        self.spoolDirectory = spoolDirectory
        self.limiter = limiter
        self.registry = registry
        self.logger = logger
        self.lines = LineBuffer(maxLineLength: limits.maxCommandLength)
    }

    // MARK: Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func channelActive(context: ChannelHandlerContext) {
        clientAddress = context.remoteAddress?.ipAddress ?? "unknown"
        var sessionConfiguration = configuration
        sessionConfiguration.tlsAvailable = configuration.tlsAvailable && sslContext != nil
        // Passwords in the clear without TLS: loopback clients only, and only when allowed.
        sessionConfiguration.allowPlaintextAuthWithoutTLS = configuration.allowPlaintextAuthWithoutTLS
            && ClientAddress.isLoopback(context.remoteAddress)
        session = SMTPSession(configuration: sessionConfiguration, clientAddress: clientAddress)

        if let limiter {
            switch limiter.acquire(address: clientAddress) {
            case .accepted:
                acquiredLimit = true
            case .tooManyGlobally, .tooManyFromAddress:
                closing = true
                writeReply(SMTPReply(421, "4.7.0", "\(configuration.hostname) Too many connections, try again later"))
                closeAfterFlush(context: context)
                context.fireChannelActive()
                return
            }
        }
        if let registry, !registry.register(self) {
            closing = true
            writeReply(.shuttingDown)
            closeAfterFlush(context: context)
            context.fireChannelActive()
            return
        }
        scheduleIdleCheck(context: context)
        run(session!.start(), context: context)
        context.flush()
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        closing = true
        spool?.discard()
        spool = nil
        idleCheck?.cancel()
        if acquiredLimit { limiter?.release(address: clientAddress); acquiredLimit = false }
        registry?.unregister(self)
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var buffer = unwrapInboundIn(data)
        lastActivity = .now()
        switch framing {
        case .data, .chunk:
            if !waitingForEffect {
                consumeMessageData(&buffer, context: context)
            }
        case .commands, .authResponse:
            break
        }
        if buffer.readableBytes > 0 { lines.append(&buffer) }
        processInput(context: context)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    public func read(context: ChannelHandlerContext) {
        if waitingForEffect || closing || lines.bufferedByteCount > limits.maxBufferedInput {
            readPending = true
            return
        }
        context.read()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let negotiated = tlsInfo.observe(event, context: context), let session {
            var updated = session
            let actions = updated.tlsEstablished(description: negotiated.description)
            self.session = updated
            run(actions, context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let sslError = error as? NIOSSLError, case .uncleanShutdown = sslError {
            // Clients often drop TCP after QUIT without close_notify; nothing to report.
        } else {
            logger.debug("smtp connection error", metadata: ["client": "\(clientAddress)", "error": "\(error)"])
        }
        closing = true
        context.close(promise: nil)
    }

    // MARK: Draining (called from any thread)

    // `context` is set in handlerAdded, before the session registers for draining (the registry's
    // lock orders the two), so reading it here is safe; it is only used on its event loop.
    public func drain() {
        guard let loop = context?.eventLoop else { return }
        loop.execute {
            guard let context = self.context, let session = self.session, !self.closing else { return }
            var updated = session
            let actions = updated.drain()
            self.session = updated
            self.run(actions, context: context)
            context.flush()
        }
    }

    public func forceClose() {
        guard let loop = context?.eventLoop else { return }
        loop.execute {
            guard let context = self.context, !self.closing else { return }
            self.closing = true
            // RFC 5321 §3.8: say why, even in the middle of a message, before closing.
            self.writeReply(.shuttingDown)
            self.closeAfterFlush(context: context)
            // A peer that reads nothing (or a TLS handshake that never ends) must not hold us up.
            loop.assumeIsolated().scheduleTask(in: .seconds(2)) { self.context?.close(promise: nil) }
        }
    }

    // MARK: Input processing

    private func processInput(context: ChannelHandlerContext) {
        defer { resumeReadingIfPossible(context: context) }
        while !waitingForEffect, !closing {
            switch framing {
            case .data, .chunk:
                guard lines.bufferedByteCount > 0 else { return }
                var rest = lines.takeRemaining()
                consumeMessageData(&rest, context: context)
                if rest.readableBytes > 0 { lines.append(&rest) }
                if case .commands = framing { continue }
                return
            case .authResponse:
                switch lines.next() {
                case .line(let line): continueAuthentication(line, context: context)
                case .tooLong:
                    exchange = nil
                    framing = .commands
                    apply { $0.authenticationFinished(.failure(SMTPReply(500, "5.5.6", "Authentication exchange line too long"))) }
                case .needMoreData: return
                }
            case .commands:
                switch lines.next() {
                case .line(let line):
                    let parsed = SMTPCommandParser.parse(line)
                    apply { $0.receive(parsed) }
                case .tooLong:
                    apply { $0.commandLineTooLong() }
                case .needMoreData:
                    return
                }
            }
        }
    }

    /// Feeds message bytes to the decoder; switches back to commands when the data or chunk is complete.
    private func consumeMessageData(_ buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        guard var decoder, let spool else { return }
        switch framing {
        case .data:
            let finished = decoder.decode(&buffer, into: spool)
            self.decoder = decoder
            if finished {
                framing = .commands
                let message = ReceivedMessage(size: spool.size, exceededMaximumSize: spool.exceededMaximumSize,
                                              containsNUL: decoder.containsNUL, lineTooLong: decoder.lineTooLong)
                apply { $0.messageReceived(message) }
            }
        case .chunk(let remaining, let last):
            let before = buffer.readableBytes
            _ = decoder.decode(&buffer, limit: remaining, into: spool)
            let left = remaining - (before - buffer.readableBytes)
            if left > 0 {
                self.decoder = decoder
                framing = .chunk(remaining: left, last: last)
                return
            }
            if last { decoder.finishChunks(into: spool) }
            self.decoder = decoder
            framing = .commands
            let message = ReceivedMessage(size: spool.size, exceededMaximumSize: spool.exceededMaximumSize,
                                          containsNUL: decoder.containsNUL, lineTooLong: decoder.lineTooLong)
            apply { $0.chunkReceived(message) }
        case .commands, .authResponse:
            return
        }
    }

    private func apply(_ event: (inout SMTPSession) -> [SMTPAction]) {
        guard var session, let context else { return }
        let actions = event(&session)
        self.session = session
        run(actions, context: context)
        // A transaction that ended without a delivery (refused, reset) leaves no spooled bytes behind.
        if let current = self.session, !current.isInsideMessage, spool != nil {
            spool?.discard()
            spool = nil
            decoder = nil
        }
    }

    // MARK: Actions

    private func run(_ actions: [SMTPAction], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .reply(let reply):
                writeReply(reply)
            case .startTLS:
                startTLS(context: context)
            case .checkRecipient(let mailbox, let declaredSize):
                let backend = self.backend
                let account = session?.authenticatedAccount
                perform(context: context, { await backend.checkRecipient(mailbox, declaredSize: declaredSize, account: account) }) { handler, verdict in
                    handler.apply { $0.recipientChecked(verdict) }
                }
            case .receiveData:
                beginMessage(dotStuffed: true)
                framing = .data
            case .receiveChunk(let size, let last):
                if spool == nil { beginMessage(dotStuffed: false) }
                framing = .chunk(remaining: size, last: last)
                if size == 0 {
                    var empty = ByteBuffer()
                    consumeMessageData(&empty, context: context)
                }
            case .deliver(let transaction):
                let digest = spool?.finishDigest()
                let message = spool?.finish()
                spool = nil
                decoder = nil
                guard let message else {
                    apply { $0.deliveryFinished(.storageFailure, transactionID: transaction.id) }
                    continue
                }
                let backend = self.backend
                perform(context: context, { await backend.deliver(transaction, message: message, digest: digest) }) { handler, verdict in
                    handler.apply { $0.deliveryFinished(verdict, transactionID: transaction.id) }
                }
            case .authenticate(let mechanism, let initialResponse):
                guard let authenticator, let started = authenticator.begin(mechanism: mechanism, client: clientAddress) else {
                    apply { $0.authenticationFinished(.failure(SMTPReply(504, "5.5.4", "Unrecognized authentication type"))) }
                    continue
                }
                exchange = started
                authenticate(with: initialResponse, context: context)
            case .checkSender(let sender, let account):
                let backend = self.backend
                perform(context: context, { await backend.checkSender(sender, account: account) }) { handler, verdict in
                    handler.apply { $0.senderChecked(verdict) }
                }
            case .close:
                closing = true
                closeAfterFlush(context: context)
            }
        }
    }

    // MARK: SASL (RFC 4954)

    /// Sends one client response (nil: none) to the exchange, off the event loop.
    private func authenticate(with response: [UInt8]?, context: ChannelHandlerContext) {
        guard let started = exchange else { return }
        perform(context: context, { () async -> AuthStep in
            var current = started
            let outcome = await current.respond(response)
            return AuthStep(exchange: current, outcome: outcome)
        }) { handler, step in
            handler.exchange = step.exchange
            handler.handle(step.outcome, context: context)
        }
    }

    private func continueAuthentication(_ line: [UInt8], context: ChannelHandlerContext) {
        framing = .commands
        guard var current = exchange else { return }
        if line == Array("*".utf8) {
            let outcome = current.cancel()
            exchange = current
            return handle(outcome, context: context)
        }
        guard let decoded = Data(base64Encoded: Data(line)) else {
            let outcome = current.reject()
            exchange = current
            return handle(outcome, context: context)
        }
        exchange = current
        authenticate(with: Array(decoded), context: context)
    }

    private func handle(_ outcome: AuthOutcome, context: ChannelHandlerContext) {
        switch outcome {
        case .challenge(let bytes):
            writeReply(SMTPReply(334, nil, Data(bytes).base64EncodedString()))
            framing = .authResponse
        case .success(let success):
            exchange = nil
            if let upgraded = success.upgradedCredentials {
                let backend = self.backend
                let account = success.authcid
                Task { await backend.saveUpgradedCredentials(account: account, upgraded) }
            }
            logger.info("authenticated", metadata: ["client": "\(clientAddress)", "account": "\(success.authcid)", "mechanism": "\(success.mechanism.rawValue)"])
            apply { $0.authenticationFinished(.success(account: success.authcid)) }
        case .failure(let failure):
            exchange = nil
            logger.notice("authentication failed", metadata: ["client": "\(clientAddress)", "reason": "\(failure.reason)"])
            apply { $0.authenticationFinished(.failure(Self.reply(for: failure))) }
        }
    }

    static func reply(for failure: SASLFailure) -> SMTPReply {
        switch failure.reason {
        case .malformed: return SMTPReply(501, "5.5.2", "Malformed authentication response")
        case .cancelled: return SMTPReply(501, "5.0.0", "Authentication cancelled")
        case .temporarilyUnavailable, .tooManyFailures: return SMTPReply(454, "4.7.0", "Temporary authentication failure, try again later")
        default: return SMTPReply(535, "5.7.8", "Authentication credentials invalid")
        }
    }

    private func beginMessage(dotStuffed: Bool) {
        spool?.discard()
        spool = MessageSpool(maxSize: configuration.maxMessageSize, memoryLimit: limits.memorySpoolLimit, directory: spoolDirectory)
        spool?.digest = backend.makeMessageDigest(authenticated: session?.authenticatedAccount != nil)
        decoder = MessageDataDecoder(dotStuffed: dotStuffed, maxLineLength: limits.maxDataLineLength)
    }

    /// Runs `work` off the event loop, then `resume` back on it; input waits meanwhile.
    private func perform<T: Sendable>(context: ChannelHandlerContext, _ work: @escaping @Sendable () async -> T,
                                      resume: @escaping (SMTPServerHandler, T) -> Void) {
        waitingForEffect = true
        context.flush()
        let promise = context.eventLoop.makePromise(of: T.self)
        promise.completeWithTask { await work() }
        promise.futureResult.assumeIsolated().whenSuccess { value in
            self.waitingForEffect = false
            guard !self.closing else { return }
            resume(self, value)
            // Message data pipelined behind the command may already be waiting.
            self.processInput(context: context)
            context.flush()
        }
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        if readPending, !waitingForEffect, !closing, lines.bufferedByteCount <= limits.maxBufferedInput {
            readPending = false
            context.read()
        }
    }

    private func startTLS(context: ChannelHandlerContext) {
        guard let sslContext else { return }
        context.flush()
        // Anything the client sent after STARTTLS in the clear is thrown away, never executed.
        lines.discardAll()
        do {
            try TLSServerPipeline.startTLS(context: context, provider: sslContext)
        } catch {
            logger.error("could not start TLS", metadata: ["error": "\(error)"])
            closing = true
            context.close(promise: nil)
        }
    }

    private func writeReply(_ reply: SMTPReply) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: 64)
        buffer.writeBytes(reply.encoded)
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func closeAfterFlush(context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext) {
        let timeout = limits.idleTimeout
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: lastActivity + timeout) {
            guard !self.closing else { return }
            if self.waitingForEffect || NIODeadline.now() - self.lastActivity < timeout {
                self.scheduleIdleCheck(context: context)
                return
            }
            self.apply { $0.timedOut() }
            context.flush()
        }
    }
}
