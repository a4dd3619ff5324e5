// The NIO adapter of the POP3 server: frames bytes into lines, feeds the session, and carries
// out its actions (responses, STLS, SASL steps, maildrop locking, RETR/TOP streaming, the UPDATE
// expunge). It is the only POP3 code that knows about channels.
//
// Back-pressure: while an effect runs or too much input is buffered it withholds `read()`, so
// pipelined commands (RFC 2449 PIPELINING) wait their turn without growing memory; while the
// socket is backed up no further command is taken, so answers cannot pile up either. Pipelined
// answers go out in one flush. RETR of a small message is answered in the same event-loop tick
// when the backend has the bytes at hand (see StorePOP3Backend); RETR of a file blob streams in
// chunks: the next chunk is read only once the previous one has been written to the socket, so a
// 50 MB message is never held whole.

import FacteurIdentity
import FacteurNet
import FacteurStore
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

public struct POP3ServerLimits: Sendable {
    /// Longest line: commands are at most 255 octets (RFC 2449 §4), SASL responses may be longer.
    public var maxLineLength = 8192
    /// RFC 1939 §3: the autologout timer is at least 10 minutes once logged in.
    public var idleTimeout: TimeAmount = .minutes(10)
    /// Before login a silent client is dropped sooner.
    public var idleTimeoutBeforeLogin: TimeAmount = .minutes(2)
    /// Input buffered while a command is being processed before reads are withheld.
    public var maxBufferedInput = 64 * 1024
    /// Bytes read from a blob file per chunk while streaming RETR.
    public var streamChunkSize = 256 * 1024
    /// Responses to pipelined commands are flushed together, at the latest once this many bytes
    /// wait (a TLS handler in front buffers unflushed writes where writability cannot see them).
    public var maxUnflushedOutput = 64 * 1024
    /// Let USER/PASS, PLAIN and LOGIN through without TLS for loopback clients (development on
    /// one machine). Everyone else must use STLS or POP3S first.
    public var allowPlaintextOnLoopback = true
    public init() {}
}

public final class POP3ServerHandler: ChannelDuplexHandler, DrainableSession, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let configuration: POP3SessionConfiguration
    private let limits: POP3ServerLimits
    private let backend: any POP3Backend
    private let authenticator: Authenticator
    private let sslContext: (any TLSContextSource)?
    private let limiter: ConnectionLimiter?
    private let registry: ConnectionRegistry?
    private let logger: Logger

    // Event-loop state: touched only on the channel's event loop.
    private var session: POP3Session?
    private var context: ChannelHandlerContext?
    private var lines: LineBuffer
    private var exchange: AuthExchange?
    /// The maildrop this connection has locked; released when the connection ends.
    private var lockedMaildrop: Maildrop?
    private var expungeInFlight = false
    private var encoder: POP3MultilineEncoder?
    private var waitingForEffect = false
    private var readPending = false
    private var closing = false
    private var clientAddress = "unknown"
    private var acquiredLimit = false
    private var lastActivity = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    /// Bytes written since the last flush (see `processInput`).
    private var unflushedBytes = 0

    public init(configuration: POP3SessionConfiguration, limits: POP3ServerLimits, backend: any POP3Backend,
                authenticator: Authenticator, sslContext: (any TLSContextSource)?, limiter: ConnectionLimiter?,
                registry: ConnectionRegistry?, logger: Logger) {
        self.configuration = configuration
        self.limits = limits
        self.backend = backend
        self.authenticator = authenticator
        self.sslContext = sslContext
        self.limiter = limiter
        self.registry = registry
        self.logger = logger
        self.lines = LineBuffer(maxLineLength: limits.maxLineLength)
    }

    // MARK: Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func channelActive(context: ChannelHandlerContext) {
        clientAddress = context.remoteAddress?.ipAddress ?? "unknown"
        var sessionConfiguration = configuration
        sessionConfiguration.tlsAvailable = configuration.tlsAvailable && sslContext != nil && !configuration.implicitTLS
        session = POP3Session(configuration: sessionConfiguration,
                              plaintextAllowedInClear: limits.allowPlaintextOnLoopback && ClientAddress.isLoopback(clientAddress))

        if let limiter {
            switch limiter.acquire(address: clientAddress) {
            case .accepted:
                acquiredLimit = true
            case .tooManyGlobally, .tooManyFromAddress:
                refuse(.err(.sysTemp, "Too many connections, try again later"), context: context)
                return
            }
        }
        if let registry, !registry.register(self) {
            refuse(.err(.sysTemp, "Server shutting down, try again later"), context: context)
            return
        }
        scheduleIdleCheck(context: context)
        apply { $0.start() }
        flushOutput(context: context)
        context.fireChannelActive()
    }

    private func refuse(_ response: POP3Response, context: ChannelHandlerContext) {
        closing = true
        write(response)
        closeAfterFlush(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        closing = true
        idleCheck?.cancel()
        encoder = nil
        // A dropped connection never enters UPDATE (RFC 1939 §6): nothing is deleted. An expunge
        // already running (QUIT was received) releases the lock itself when it finishes.
        if !expungeInFlight, let maildrop = lockedMaildrop {
            lockedMaildrop = nil
            backend.closeMaildrop(maildrop)
        }
        if acquiredLimit { limiter?.release(address: clientAddress); acquiredLimit = false }
        registry?.unregister(self)
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var buffer = unwrapInboundIn(data)
        lastActivity = .now()
        lines.append(&buffer)
        processInput(context: context)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput(context: context)
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, !waitingForEffect, !closing {
            processInput(context: context)
            flushOutput(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    public func read(context: ChannelHandlerContext) {
        if waitingForEffect || closing || lines.bufferedByteCount > limits.maxBufferedInput {
            readPending = true
            return
        }
        context.read()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent {
            apply { $0.tlsEstablished() }
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let sslError = error as? NIOSSLError, case .uncleanShutdown = sslError {
            // Clients often drop TCP after QUIT without close_notify; nothing to report.
        } else {
            logger.debug("pop3 connection error", metadata: ["client": "\(clientAddress)", "error": "\(error)"])
        }
        closing = true
        context.close(promise: nil)
    }

    // MARK: Draining (called from any thread)

    // `context` is set in handlerAdded, before the session registers for draining (the registry's
    // lock orders the two); it is only used on its event loop.
    public func drain() {
        guard let loop = context?.eventLoop else { return }
        loop.execute {
            guard let context = self.context, !self.closing else { return }
            self.apply { $0.drain() }
            self.flushOutput(context: context)
        }
    }

    public func forceClose() {
        guard let loop = context?.eventLoop else { return }
        loop.execute {
            self.closing = true
            self.context?.close(promise: nil)
        }
    }

    // MARK: Input

    private func processInput(context: ChannelHandlerContext) {
        defer { resumeReadingIfPossible(context: context) }
        while !waitingForEffect, !closing {
            // Pipelined commands are answered together, but never more than `maxUnflushedOutput`
            // ahead of a flush, and never while the socket is backed up: a client that pipelines
            // RETRs without reading the answers stalls itself, not the server's memory.
            // `channelWritabilityChanged` resumes.
            if unflushedBytes >= limits.maxUnflushedOutput { flushOutput(context: context) }
            guard context.channel.isWritable else {
                flushOutput(context: context)
                return
            }
            switch lines.next() {
            case .line(let line):
                apply { $0.receive(line: line) }
            case .tooLong:
                apply { $0.lineTooLong() }
            case .needMoreData:
                return
            }
        }
    }

    private func apply(_ event: (inout POP3Session) -> [POP3Action]) {
        guard session != nil, let context else { return }
        // Mutated in place: a copy would share the maildrop's storage and copy it on write.
        let actions = event(&session!)
        run(actions, context: context)
    }

    // MARK: Actions

    private func run(_ actions: [POP3Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .reply(let response):
                write(response)
            case .startTLS:
                startTLS(context: context)
            case .authenticate(let step):
                authenticate(step, context: context)
            case .openMaildrop(let account):
                let backend = self.backend
                perform(context: context, { await backend.openMaildrop(account: account) }) { handler, opening in
                    if case .opened(let maildrop) = opening {
                        guard !handler.closing else { backend.closeMaildrop(maildrop); return }
                        handler.lockedMaildrop = maildrop
                        handler.logger.info("pop3 login", metadata: ["client": "\(handler.clientAddress)", "account": "\(account)",
                                                                      "messages": "\(maildrop.messages.count)"])
                    }
                    guard !handler.closing else { return }
                    handler.apply { $0.maildropOpened(opening) }
                }
            case .retrieve(let message, let topLines, let okText):
                retrieve(message, topLines: topLines, okText: okText, context: context)
            case .expunge(let maildrop, let uids):
                expungeInFlight = true
                let backend = self.backend
                perform(context: context, { await backend.expunge(maildrop, uids: uids) }) { handler, succeeded in
                    handler.expungeInFlight = false
                    if let locked = handler.lockedMaildrop {
                        handler.lockedMaildrop = nil
                        backend.closeMaildrop(locked)
                    }
                    handler.logger.info("pop3 update", metadata: ["client": "\(handler.clientAddress)", "deleted": "\(uids.count)",
                                                                   "ok": "\(succeeded)"])
                    guard !handler.closing else { return }
                    handler.apply { $0.expunged(succeeded) }
                }
            case .close:
                closing = true
                closeAfterFlush(context: context)
            }
        }
    }

    private func authenticate(_ step: POP3AuthStep, context: ChannelHandlerContext) {
        switch step {
        case .start(let mechanism, let initialResponse):
            guard let started = authenticator.begin(mechanism: mechanism, client: clientAddress, finalDataAsChallenge: true) else {
                apply { $0.authProgressed(.failure(SASLFailure(.malformed))) }
                return
            }
            exchange = started
            respond(initialResponse, context: context)
        case .respond(let bytes):
            respond(bytes, context: context)
        case .cancel:
            let outcome = exchange?.cancel() ?? .failure(SASLFailure(.cancelled))
            exchange = nil
            apply { $0.authProgressed(outcome) }
        case .malformed:
            let outcome = exchange?.reject() ?? .failure(SASLFailure(.malformed))
            exchange = nil
            apply { $0.authProgressed(outcome) }
        }
    }

    private func respond(_ response: [UInt8]?, context: ChannelHandlerContext) {
        guard let current = exchange else {
            apply { $0.authProgressed(.failure(SASLFailure(.malformed))) }
            return
        }
        let backend = self.backend
        perform(context: context, { () -> (AuthExchange, AuthOutcome) in
            var exchange = current
            let outcome = await exchange.respond(response)
            if case .success(let success) = outcome, let upgraded = success.upgradedCredentials {
                await backend.storeUpgradedCredentials(address: success.authcid, upgraded)
            }
            return (exchange, outcome)
        }) { handler, result in
            let (exchange, outcome) = result
            if case .challenge = outcome { handler.exchange = exchange } else { handler.exchange = nil }
            if case .failure(let failure) = outcome {
                handler.logger.notice("pop3 authentication failed", metadata: ["client": "\(handler.clientAddress)",
                                                                              "reason": "\(failure)"])
            }
            handler.apply { $0.authProgressed(outcome) }
        }
    }

    // MARK: RETR / TOP

    private func retrieve(_ message: MaildropMessage, topLines: Int?, okText: String, context: ChannelHandlerContext) {
        waitingForEffect = true
        // True while still inside this call: a backend that had the bytes at hand completes the
        // future at once, and then the input loop that called us simply goes on to the next
        // pipelined command (no recursion, no flush per response).
        var synchronous = true
        backend.content(of: message, on: context.eventLoop).assumeIsolated().whenComplete { result in
            let resumeInput = !synchronous
            guard !self.closing else { return }
            guard case .success(let content) = result else {
                self.write(.err(.sysTemp, "Message \(message.id) cannot be read now"))
                self.finishRetrieval(context: context, resumeInput: resumeInput)
                return
            }
            var encoder = POP3MultilineEncoder(topLines: topLines)
            // Status line, stuffed message and terminator in one buffer, one write.
            var out = context.channel.allocator.buffer(capacity: min(content.size, self.limits.streamChunkSize) + okText.utf8.count + 16)
            POP3Response.ok(okText).write(into: &out)
            encoder.encode(content.prefix, into: &out)
            switch content.body {
            case .inline(let bytes):
                encoder.encode(bytes, into: &out)
                encoder.finish(into: &out)
                self.send(out, context: context)
                self.finishRetrieval(context: context, resumeInput: resumeInput)
            case .file(let reader):
                self.encoder = encoder
                self.writeChunk(out, thenStream: reader, context: context)
            }
        }
        synchronous = false
        // The read is in flight: let the responses written so far go out meanwhile.
        if waitingForEffect { flushOutput(context: context) }
    }

    /// Writes `buffer`, and once the socket has taken it reads and sends the next chunk.
    private func writeChunk(_ buffer: ByteBuffer, thenStream reader: BlobFileReader, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { result in
            guard !self.closing, case .success = result else { return }
            self.lastActivity = .now()
            let chunkSize = self.limits.streamChunkSize
            NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { try reader.read(maxLength: chunkSize) }
                .assumeIsolated().whenComplete { read in
                    guard !self.closing, var encoder = self.encoder else { return }
                    switch read {
                    case .failure(let error):
                        // The "+OK" has gone out: there is no way to report an error mid-response.
                        self.logger.error("pop3 retr: blob read failed", metadata: ["error": "\(error)"])
                        self.closing = true
                        context.close(promise: nil)
                    case .success(let bytes):
                        var out = context.channel.allocator.buffer(capacity: bytes.count + bytes.count / 64 + 8)
                        if bytes.isEmpty || encoder.isDone {
                            encoder.finish(into: &out)
                            self.encoder = nil
                            self.send(out, context: context)
                            self.finishRetrieval(context: context, resumeInput: true)
                            return
                        }
                        encoder.encode(bytes, into: &out)
                        self.encoder = encoder
                        self.writeChunk(out, thenStream: reader, context: context)
                    }
                }
        }
    }

    /// `resumeInput` false: the retrieval completed inside `retrieve`, whose caller (the input
    /// loop) carries on by itself.
    private func finishRetrieval(context: ChannelHandlerContext, resumeInput: Bool) {
        waitingForEffect = false
        apply { $0.retrieved() }
        guard resumeInput else { return }
        processInput(context: context)
        flushOutput(context: context)
    }

    // MARK: Plumbing

    /// Runs `work` off the event loop, then `resume` back on it; input waits meanwhile.
    private func perform<T: Sendable>(context: ChannelHandlerContext, _ work: @escaping @Sendable () async -> T,
                                      resume: @escaping (POP3ServerHandler, T) -> Void) {
        waitingForEffect = true
        flushOutput(context: context)
        let promise = context.eventLoop.makePromise(of: T.self)
        promise.completeWithTask { await work() }
        promise.futureResult.assumeIsolated().whenSuccess { value in
            self.waitingForEffect = false
            resume(self, value)
            guard !self.closing else { return }
            // Commands pipelined behind this one may already be waiting.
            self.processInput(context: context)
            self.flushOutput(context: context)
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
        flushOutput(context: context)
        // Anything the client sent after STLS in the clear is thrown away, never executed.
        lines.discardAll()
        do {
            try TLSServerPipeline.startTLS(context: context, provider: sslContext)
        } catch {
            logger.error("could not start TLS", metadata: ["error": "\(error)"])
            closing = true
            context.close(promise: nil)
        }
    }

    private func write(_ response: POP3Response) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: 64)
        response.write(into: &buffer)
        send(buffer, context: context)
    }

    /// Every response goes out through here, so the bytes written since the last flush are known.
    private func send(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        unflushedBytes += buffer.readableBytes
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func flushOutput(context: ChannelHandlerContext) {
        unflushedBytes = 0
        context.flush()
    }

    private func closeAfterFlush(context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext) {
        let timeout = (session?.isAuthenticated ?? false) ? limits.idleTimeout : limits.idleTimeoutBeforeLogin
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: lastActivity + timeout) {
            guard !self.closing else { return }
            let current = (self.session?.isAuthenticated ?? false) ? self.limits.idleTimeout : self.limits.idleTimeoutBeforeLogin
            // A running effect (other than a stalled RETR, which updates lastActivity per chunk) is not idleness.
            let streaming = self.encoder != nil
            let busy = self.waitingForEffect && !streaming
            if busy || NIODeadline.now() - self.lastActivity < current {
                self.scheduleIdleCheck(context: context)
                return
            }
            if streaming {
                // The client stopped reading in the middle of a RETR: nothing sensible can be said.
                self.closing = true
                context.close(promise: nil)
                return
            }
            self.apply { $0.timedOut() }
            self.flushOutput(context: context)
        }
    }
}
