// The NIO adapter of the IMAP server: frames bytes into commands (literals, continuation
// requests), feeds the parser and the session, runs each command's store work off the event loop
// and writes its responses, puts TLS in front on STARTTLS (RFC 9051 §6.2.1), pushes changes
// during IDLE (RFC 2177), and times idle clients out (RFC 9051 §5.4). The only IMAP code that
// knows about channels. Back-pressure: while a command runs, or too much input is buffered, it
// withholds `read()`; responses are awaited as they are written, so a large FETCH streams.

import FacteurIdentity
import FacteurNet
import Foundation
import FacteurStore
import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Writes a command's responses to the channel. Responses are gathered; once `flushThreshold`
/// bytes are pending they are written, and the write returns once the socket has taken them,
/// which paces a long FETCH to the client's reading speed. What is left when the command ends
/// (`takePending`, for most commands everything) goes back to the event loop with the command's
/// result and is written there: one TLS record and one syscall per command, and no extra trip
/// between threads to write it and wait.
final class ChannelOutput: IMAPOutput, @unchecked Sendable {
    let channel: any Channel
    /// Guards `pending` (the command task writes; nothing else does, but Sendable asks for it).
    private let lock = NSLock()
    private var pending: [UInt8] = []

    static let flushThreshold = 64 * 1024

    init(channel: any Channel) {
        self.channel = channel
    }

    func write(_ bytes: [UInt8]) async {
        guard !bytes.isEmpty else { return }
        let full: [UInt8]? = lock.withLock {
            if pending.isEmpty, bytes.count >= Self.flushThreshold { return bytes }
            pending.append(contentsOf: bytes)
            guard pending.count >= Self.flushThreshold else { return nil }
            defer { pending = [] }
            return pending
        }
        if let full { try? await channel.writeAndFlush(channel.allocator.buffer(bytes: full)) }
    }

    /// What is pending, for the event loop to write; the command's work ends with it.
    func takePending() -> [UInt8] {
        lock.withLock {
            defer { pending = [] }
            return pending
        }
    }
}

public final class IMAPServerHandler: ChannelDuplexHandler, DrainableSession, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let configuration: IMAPSessionConfiguration
    private let allowPlaintextOnLoopback: Bool
    private let runner: IMAPCommandRunner
    private let sslContext: (any TLSContextSource)?
    private let limiter: ConnectionLimiter?
    private let registry: ConnectionRegistry?
    private let logger: Logger

    // Event-loop state: touched only on the channel's event loop (or by the one command task,
    // which owns `session` while `waitingForEffect` is set).
    private var session: IMAPSession?
    private var context: ChannelHandlerContext?
    private var framer: IMAPCommandFramer
    private let parser: IMAPParser
    private var mode = IMAPNext.command
    private var idleTag = "*"
    private var waitingForEffect = false
    private var readPending = false
    private var closing = false
    private var drainRequested = false
    private var clientAddress = "unknown"
    private var acquiredLimit = false
    private var lastActivity = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    /// The COMPRESS handlers once active (RFC 4978), so IDLE can set their zlib state aside.
    private var compression: (inflate: DeflateDecompressionHandler, deflate: DeflateCompressionHandler)?

    public init(configuration: IMAPSessionConfiguration, allowPlaintextOnLoopback: Bool, runner: IMAPCommandRunner,
                sslContext: (any TLSContextSource)?, limiter: ConnectionLimiter?, registry: ConnectionRegistry?, logger: Logger) {
        self.configuration = configuration
        self.allowPlaintextOnLoopback = allowPlaintextOnLoopback
        self.runner = runner
        self.sslContext = sslContext
        self.limiter = limiter
        self.registry = registry
        self.logger = logger
        self.framer = IMAPCommandFramer(limits: configuration.limits)
        self.parser = IMAPParser(limits: configuration.limits)
    }

    // MARK: Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func channelActive(context: ChannelHandlerContext) {
        clientAddress = context.remoteAddress?.ipAddress ?? "unknown"
        if let limiter {
            switch limiter.acquire(address: clientAddress) {
            case .accepted:
                acquiredLimit = true
            case .tooManyGlobally, .tooManyFromAddress:
                refuse(context: context, "* BYE [UNAVAILABLE] Too many connections, try again later")
                return
            }
        }
        if let registry, !registry.register(self) {
            refuse(context: context, "* BYE [UNAVAILABLE] Server shutting down")
            return
        }
        var sessionConfiguration = configuration
        sessionConfiguration.tlsAvailable = configuration.tlsAvailable && sslContext != nil && !configuration.implicitTLS
        sessionConfiguration.allowPlaintextAuthentication = configuration.allowPlaintextAuthentication
            || (allowPlaintextOnLoopback && ClientAddress.isLoopback(clientAddress))
        let session = IMAPSession(configuration: sessionConfiguration, clientAddress: clientAddress)
        self.session = session

        // Other sessions' changes flow into this connection's inbox once it watches an
        // account; IDLE is woken by them.
        session.changeInbox.attach(to: runner.store)

        scheduleIdleCheck(context: context)
        write(session.greeting(), context: context)
        context.flush()
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        closing = true
        idleCheck?.cancel()
        session?.changeInbox.onChange(nil)
        session?.changeInbox.detach()
        if acquiredLimit { limiter?.release(address: clientAddress); acquiredLimit = false }
        registry?.unregister(self)
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let buffer = unwrapInboundIn(data)
        lastActivity = .now()
        framer.append(buffer.readableBytesView)
        processInput(context: context)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    public func read(context: ChannelHandlerContext) {
        if waitingForEffect || closing || framer.bufferedByteCount > configuration.limits.maxBufferedInput {
            readPending = true
            return
        }
        context.read()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent {
            session?.didStartTLS()
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let sslError = error as? NIOSSLError, case .uncleanShutdown = sslError {
            // Clients often drop TCP after LOGOUT without close_notify.
        } else {
            logger.debug("imap connection error", metadata: ["client": "\(clientAddress)", "error": "\(error)"])
        }
        closing = true
        context.close(promise: nil)
    }

    // MARK: Draining (called from any thread)

    public func drain() {
        guard let loop = context?.eventLoop else { return }
        loop.execute {
            guard let context = self.context, !self.closing else { return }
            if self.waitingForEffect {
                self.drainRequested = true
                return
            }
            self.sayGoodbye("* BYE [UNAVAILABLE] Server shutting down", context: context)
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
        while !waitingForEffect, !closing, session != nil {
            switch mode {
            case .authenticationLine, .idle:
                let line: [UInt8]
                switch framer.nextLine() {
                case .needMoreData: return
                case .tooLong: line = [UInt8(ascii: "*")]
                case .line(let l): line = l
                }
                if mode == .idle {
                    session?.changeInbox.onChange(nil)
                    let tag = idleTag
                    perform(context: context) { runner, session, output in
                        await runner.endIdle(tag: tag, line: line, session: &session, output: output)
                    }
                } else {
                    perform(context: context) { runner, session, output in
                        await runner.continueAuthentication(line: line, session: &session, output: output)
                    }
                }
            case .close:
                return
            case .command, .startTLS, .startCompression:
                switch framer.next() {
                case .needMoreData:
                    return
                case .continuationRequest:
                    write(Array("+ Ready for literal data\r\n".utf8), context: context)
                    context.flush()
                case .command(let bytes):
                    switch parser.parse(bytes) {
                    case .command(let command):
                        if command.kind == .idle { idleTag = command.tag }
                        perform(context: context) { runner, session, output in
                            await runner.run(command, session: &session, output: output)
                        }
                    case .bad(let tag, let message):
                        perform(context: context) { runner, session, output in
                            await runner.rejectSyntax(tag: tag, message: message, session: &session, output: output)
                        }
                    case .incomplete:
                        perform(context: context) { runner, session, output in
                            await runner.rejectSyntax(tag: nil, message: "Incomplete command", session: &session, output: output)
                        }
                    }
                case .literalTooLarge(let tag, _):
                    // RFC 7888 §4 / RFC 9051 §7.1: refused before the literal is read.
                    write(Array("\(tag ?? "*") NO [TOOBIG] Literal too large\r\n".utf8), context: context)
                case .lineTooLong(let tag), .commandTooLarge(let tag):
                    write(Array("\(tag ?? "*") BAD [TOOBIG] Command too long\r\n".utf8), context: context)
                case .fatal(let why):
                    sayGoodbye("* BYE [TOOBIG] \(why)", context: context)
                }
            }
        }
    }

    /// Runs a command's work off the event loop with the session moved into it, then takes the
    /// session back and carries on with the next input.
    private func perform(context: ChannelHandlerContext,
                         _ work: @escaping @Sendable (IMAPCommandRunner, inout IMAPSession, ChannelOutput) async -> IMAPNext) {
        guard let session else { return }
        waitingForEffect = true
        context.flush()
        let runner = self.runner
        let output = ChannelOutput(channel: context.channel)
        let promise = context.eventLoop.makePromise(of: IMAPSessionAndNext.self)
        promise.completeWithTask {
            var session = session
            let next = await work(runner, &session, output)
            return IMAPSessionAndNext(session: session, next: next, responses: output.takePending())
        }
        promise.futureResult.assumeIsolated().whenSuccess { result in
            self.waitingForEffect = false
            self.session = result.session
            guard !self.closing else { return }
            // Written and flushed before `apply`: STARTTLS and COMPRESS change the pipeline
            // after their OK, and IDLE sets the compressor aside only once nothing is pending.
            if !result.responses.isEmpty {
                self.write(result.responses, context: context)
                context.flush()
            }
            self.apply(result.next, context: context)
            if self.drainRequested, !self.closing {
                self.sayGoodbye("* BYE [UNAVAILABLE] Server shutting down", context: context)
                return
            }
            self.processInput(context: context)
            context.flush()
        }
    }

    private func apply(_ next: IMAPNext, context: ChannelHandlerContext) {
        mode = next
        switch next {
        case .command, .authenticationLine:
            break
        case .startTLS:
            mode = .command
            startTLS(context: context)
        case .startCompression:
            mode = .command
            startCompression(context: context)
        case .idle:
            let loop = context.eventLoop
            let handler = NIOLoopBound(self, eventLoop: loop)
            session?.changeInbox.onChange {
                loop.execute { handler.value.idleWake() }
            }
            // A change may have arrived between the last report and now.
            if session?.changeInbox.hasPending == true { idleWake() }
            releaseWhileIdle()
        case .close:
            closing = true
            closeAfterFlush(context: context)
        }
    }

    /// An IDLE connection may wait for hours (RFC 2177): per-connection buffers and compression
    /// state grown by earlier commands are given back until the client speaks again.
    private func releaseWhileIdle() {
        guard mode == .idle, !waitingForEffect, !closing else { return }
        framer.releaseMemory()
        compression?.inflate.releaseWhileIdle()
        compression?.deflate.releaseWhileIdle()
        MemoryTrimmer.requestTrim()
    }

    /// A change arrived while idling: report it unless a command is running (then it waits).
    private func idleWake() {
        guard let context, mode == .idle, !waitingForEffect, !closing else { return }
        perform(context: context) { runner, session, output in
            await runner.idleUpdate(session: &session, output: output)
            return .idle
        }
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        if readPending, !waitingForEffect, !closing, framer.bufferedByteCount <= configuration.limits.maxBufferedInput {
            readPending = false
            context.read()
        }
    }

    private func startTLS(context: ChannelHandlerContext) {
        guard let sslContext else { return }
        context.flush()
        // Anything the client sent after STARTTLS in the clear is thrown away, never executed.
        framer.discardBuffered()
        do {
            try TLSServerPipeline.startTLS(context: context, provider: sslContext)
        } catch {
            logger.error("could not start TLS", metadata: ["error": "\(error)"])
            closing = true
            context.close(promise: nil)
        }
    }

    /// RFC 4978: from here on both directions are raw DEFLATE, below this handler and above TLS.
    private func startCompression(context: ChannelHandlerContext) {
        context.flush()
        let inflate = DeflateDecompressionHandler(maxExpansion: configuration.limits.maxBufferedInput + 1 << 20)
        let deflate = DeflateCompressionHandler()
        compression = (inflate, deflate)
        do {
            try context.pipeline.syncOperations.addHandlers([inflate, deflate], position: .before(self))
        } catch {
            logger.error("could not start compression", metadata: ["error": "\(error)"])
            closing = true
            context.close(promise: nil)
        }
    }

    // MARK: Output

    private func write(_ bytes: [UInt8], context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }

    private func refuse(context: ChannelHandlerContext, _ text: String) {
        closing = true
        write(Array((text + "\r\n").utf8), context: context)
        closeAfterFlush(context: context)
        context.fireChannelActive()
    }

    private func sayGoodbye(_ text: String, context: ChannelHandlerContext) {
        closing = true
        write(Array((text + "\r\n").utf8), context: context)
        closeAfterFlush(context: context)
    }

    private func closeAfterFlush(context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext) {
        let timeout = session?.state == .notAuthenticated ? configuration.limits.idleTimeoutUnauthenticated
                                                          : configuration.limits.idleTimeoutAuthenticated
        let amount = TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: lastActivity + amount) {
            guard !self.closing else { return }
            if self.waitingForEffect || NIODeadline.now() - self.lastActivity < amount {
                self.scheduleIdleCheck(context: context)
                return
            }
            self.sayGoodbye("* BYE Autologout; idle for too long", context: context)
        }
    }
}

struct IMAPSessionAndNext: Sendable {
    var session: IMAPSession
    var next: IMAPNext
    /// The command's last responses, written on the event loop.
    var responses: [UInt8]
}
