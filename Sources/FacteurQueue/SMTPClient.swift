// The SMTP client used for outbound delivery, on SwiftNIO: RFC 5321 client side (greeting,
// EHLO with HELO fallback, MAIL/RCPT/DATA, dot-stuffing §4.5.2, timeouts §4.5.3.2), RFC 3207
// STARTTLS (opportunistic, or authenticated as the transport policy asks: DANE RFC 7672 §3,
// WebPKI for MTA-STS RFC 8461 §4.2), RFC 8689 REQUIRETLS on MAIL FROM,
// RFC 2920 PIPELINING, RFC 3030 CHUNKING (BDAT), RFC 1870 SIZE, RFC 6152 8BITMIME,
// RFC 6531 SMTPUTF8, RFC 3461 DSN parameters, RFC 4954 AUTH PLAIN (smarthosts, over TLS only).

import FacteurNet
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import X509

/// RFC 5321 §4.5.3.2 timeouts, per stage. Tests shorten them.
public struct SMTPClientTimeouts: Sendable, Equatable {
    public var connect: TimeAmount = .seconds(30)
    /// §4.5.3.2.1 initial 220: 5 minutes.
    public var greeting: TimeAmount = .minutes(5)
    /// §4.5.3.2.2 MAIL, §4.5.3.2.3 RCPT: 5 minutes (EHLO, STARTTLS, RSET alike).
    public var command: TimeAmount = .minutes(5)
    /// §4.5.3.2.4 DATA initiation: 2 minutes.
    public var dataInitiation: TimeAmount = .minutes(2)
    /// §4.5.3.2.6 DATA termination: 10 minutes (also a BDAT LAST reply).
    public var dataTermination: TimeAmount = .minutes(10)
    public init() {}

    public static func uniform(_ amount: TimeAmount) -> SMTPClientTimeouts {
        var t = SMTPClientTimeouts()
        t.connect = amount; t.greeting = amount; t.command = amount; t.dataInitiation = amount; t.dataTermination = amount
        return t
    }
}

public enum SMTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    case connectFailed(String)
    case timeout(String)
    case connectionClosed(String)
    case protocolViolation(String)
    /// The server answered a session-level command (greeting, EHLO, STARTTLS, AUTH) with a failure.
    case rejected(stage: String, SMTPClientReply)
    /// The transport policy (DANE, MTA-STS, an override, REQUIRETLS) was not met: the session was
    /// abandoned before any mail was sent. The type is RFC 8460's.
    case tlsPolicy(TLSFailureType, String)

    public var description: String {
        switch self {
        case .connectFailed(let why): return "connection failed: \(why)"
        case .timeout(let stage): return "timeout waiting for the reply to \(stage)"
        case .connectionClosed(let stage): return "connection closed during \(stage)"
        case .protocolViolation(let why): return "protocol error: \(why)"
        case .rejected(let stage, let reply): return "\(stage) rejected: \(reply)"
        case .tlsPolicy(let type, let why): return "TLS policy not met (\(type.rawValue)): \(why)"
        }
    }

    /// Whether a later attempt may succeed. A 5xx greeting or EHLO is permanent for this host
    /// only; the router still tries other hosts.
    public var isPermanent: Bool {
        if case .rejected(_, let reply) = self { return reply.isPermanent }
        return false
    }
}

/// One recipient as the client sends it.
public struct SMTPClientRecipient: Sendable, Equatable {
    public var address: String
    public var notify: String?
    public var originalRecipient: String?
    public init(address: String, notify: String? = nil, originalRecipient: String? = nil) {
        self.address = address; self.notify = notify; self.originalRecipient = originalRecipient
    }
}

public struct SMTPClientEnvelope: Sendable, Equatable {
    /// "" for the null reverse-path.
    public var sender: String
    public var recipients: [SMTPClientRecipient]
    public var requiresSMTPUTF8: Bool
    public var has8BitData: Bool
    public var envelopeID: String?
    /// `FULL` or `HDRS`.
    public var ret: String?
    /// RFC 8689 §5: send `REQUIRETLS` on MAIL FROM; a server without the extension gets nothing.
    public var requireTLS: Bool
    public init(sender: String, recipients: [SMTPClientRecipient], requiresSMTPUTF8: Bool = false, has8BitData: Bool = false,
                envelopeID: String? = nil, ret: String? = nil, requireTLS: Bool = false) {
        self.sender = sender; self.recipients = recipients; self.requiresSMTPUTF8 = requiresSMTPUTF8
        self.has8BitData = has8BitData; self.envelopeID = envelopeID; self.ret = ret; self.requireTLS = requireTLS
    }
}

/// The fate of one recipient in one transaction: the server's reply (RCPT's, or the final
/// reply to the message data), or a reply we made up when we could not send at all (`local`).
public struct SMTPRecipientResult: Sendable, Equatable {
    public var reply: SMTPClientReply
    public var local: Bool
    public init(reply: SMTPClientReply, local: Bool = false) { self.reply = reply; self.local = local }
}

/// Where and how to connect.
public struct SMTPClientConfiguration: Sendable {
    /// The EHLO name: our hostname (RFC 5321 §4.1.1.1).
    public var heloName: String
    public var timeouts: SMTPClientTimeouts
    /// Local address to connect from (nil: the system's choice).
    public var sourceIPv4: String?
    public var sourceIPv6: String?
    /// Try STARTTLS when offered.
    public var useStartTLS: Bool
    /// Refuse to continue without TLS (a smarthost with credentials).
    public var requireTLS: Bool
    /// AUTH PLAIN credentials (RFC 4954, RFC 4616), sent only over TLS.
    public var authentication: (username: String, password: String)?
    /// The transport policy for this host (DANE, MTA-STS, override); nil: `useStartTLS`/`requireTLS` alone.
    public var tlsPolicy: HostTLSPolicy?
    /// Roots for WebPKI checks (system roots plus configured ones).
    public var trustRoots: CertificateStore?

    public init(heloName: String, timeouts: SMTPClientTimeouts = .init(), sourceIPv4: String? = nil, sourceIPv6: String? = nil,
                useStartTLS: Bool = true, requireTLS: Bool = false, authentication: (username: String, password: String)? = nil) {
        self.heloName = heloName; self.timeouts = timeouts; self.sourceIPv4 = sourceIPv4; self.sourceIPv6 = sourceIPv6
        self.useStartTLS = useStartTLS; self.requireTLS = requireTLS; self.authentication = authentication
    }
}

/// One SMTP connection to one server. Used by one task at a time; several transactions may run
/// one after the other on it (connection reuse).
public actor SMTPClientConnection {
    public nonisolated let remoteHost: String
    public nonisolated let remoteAddress: String
    /// When the session began: the connection cache retires old sessions.
    public nonisolated let openedAt = ContinuousClock.now
    let channel: any Channel
    let replies: ReplyQueue
    let configuration: SMTPClientConfiguration
    public private(set) var extensions = SMTPServerExtensions()
    public private(set) var tlsActive = false
    /// What STARTTLS gave: version, and how (and whether) the peer was authenticated.
    public private(set) var tlsInfo: SMTPClientTLSInfo?
    /// The transport policy this session was opened under (`dane`, `mta-sts`, `opportunistic`, …).
    public nonisolated var policyLabel: String { configuration.tlsPolicy?.label ?? (configuration.requireTLS ? "require-tls" : "opportunistic") }
    /// Our end's address (RFC 8460 §4.4 "sending-mta-ip").
    public nonisolated var localAddress: String? { channel.localAddress?.ipAddress }
    public private(set) var greeting: SMTPClientReply?
    /// A transaction was left half-way: RSET before the next one.
    private var needsReset = false
    private var broken = false

    init(channel: any Channel, replies: ReplyQueue, remoteHost: String, remoteAddress: String, configuration: SMTPClientConfiguration) {
        self.channel = channel
        self.replies = replies
        self.remoteHost = remoteHost
        self.remoteAddress = remoteAddress
        self.configuration = configuration
    }

    /// Connects to `address:port`, reads the greeting, says EHLO (HELO if EHLO is refused),
    /// upgrades with STARTTLS when offered, authenticates when configured.
    /// `hostname` is the server's name (for SNI and logs).
    public static func open(hostname: String, address: String, port: Int, configuration: SMTPClientConfiguration,
                            group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> SMTPClientConnection {
        let target: SocketAddress
        do {
            target = try SocketAddress(ipAddress: address, port: port)
        } catch {
            throw SMTPClientError.connectFailed("bad address \(address): \(error)")
        }
        let replies = ReplyQueue()
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(configuration.timeouts.connect)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyLineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(SMTPClientReplyHandler(queue: replies))
                }
            }
        let source = target.protocol == .inet6 ? configuration.sourceIPv6 : configuration.sourceIPv4
        if let source {
            do {
                bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
            } catch {
                throw SMTPClientError.connectFailed("bad source address \(source): \(error)")
            }
        }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(to: target).get()
        } catch {
            throw SMTPClientError.connectFailed("\(address) port \(port): \(error)")
        }
        let connection = SMTPClientConnection(channel: channel, replies: replies, remoteHost: hostname,
                                              remoteAddress: address, configuration: configuration)
        do {
            try await connection.handshake()
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }

    private func handshake() async throws {
        let greeting = try await reply(stage: "greeting", timeout: configuration.timeouts.greeting)
        self.greeting = greeting
        guard greeting.code == 220 else { throw SMTPClientError.rejected(stage: "greeting", greeting) }
        try await hello()
        let requirement = configuration.tlsPolicy?.requirement
        let enforced = configuration.tlsPolicy?.enforced ?? false
        let mustEncrypt = configuration.requireTLS || (enforced && requirement?.needsTLS == true)
        let tryTLS = requirement.map { $0.needsTLS || ($0 == .opportunistic && configuration.useStartTLS) }
            ?? (configuration.useStartTLS || configuration.requireTLS)
        if tryTLS, extensions.has("STARTTLS") {
            let ready = try await command("STARTTLS", stage: "STARTTLS", timeout: configuration.timeouts.command)
            if ready.code == 220 {
                try await startTLS()
                // RFC 3207 §4.2: forget everything learnt before TLS and greet again.
                extensions = SMTPServerExtensions()
                try await hello()
            } else if configuration.requireTLS {
                throw SMTPClientError.rejected(stage: "STARTTLS", ready)
            } else if mustEncrypt {
                throw SMTPClientError.tlsPolicy(.starttlsNotSupported, "\(remoteHost) refused STARTTLS: \(ready)")
            }
        }
        if !tlsActive, let requirement, requirement.needsTLS {
            // Nothing negotiated where the policy wants TLS (RFC 8460 "starttls-not-supported").
            tlsInfo = SMTPClientTLSInfo(version: nil, verification: .none, failure: .starttlsNotSupported,
                                        failureDetail: "\(remoteHost) does not offer STARTTLS")
        }
        if configuration.requireTLS, !tlsActive {
            throw SMTPClientError.protocolViolation("\(remoteHost) does not offer STARTTLS, which this route requires")
        }
        if mustEncrypt, !tlsActive {
            throw SMTPClientError.tlsPolicy(.starttlsNotSupported, "\(remoteHost) does not offer STARTTLS, which its TLS policy requires")
        }
        if let credentials = configuration.authentication {
            guard tlsActive else {
                throw SMTPClientError.protocolViolation("refusing to send credentials to \(remoteHost) without TLS")
            }
            // RFC 4616: authzid NUL authcid NUL passwd.
            let token = Data(([0] + Array(credentials.username.utf8) + [0] + Array(credentials.password.utf8))).base64EncodedString()
            let answer = try await command("AUTH PLAIN \(token)", stage: "AUTH", timeout: configuration.timeouts.command)
            guard answer.code == 235 else { throw SMTPClientError.rejected(stage: "AUTH", answer) }
        }
    }

    private func hello() async throws {
        let ehlo = try await command("EHLO \(configuration.heloName)", stage: "EHLO", timeout: configuration.timeouts.command)
        if ehlo.isPositive {
            extensions = SMTPServerExtensions(ehloReply: ehlo)
            return
        }
        // RFC 5321 §3.2: a server that does not know EHLO answers 500/502; fall back to HELO.
        guard ehlo.code == 500 || ehlo.code == 502 || ehlo.code == 504 || ehlo.code == 550 else {
            throw SMTPClientError.rejected(stage: "EHLO", ehlo)
        }
        let helo = try await command("HELO \(configuration.heloName)", stage: "HELO", timeout: configuration.timeouts.command)
        guard helo.isPositive else { throw SMTPClientError.rejected(stage: "HELO", helo) }
        extensions = SMTPServerExtensions()
    }

    private func startTLS() async throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        // BoringSSL does not judge the certificate: the callback below only keeps the chain as the
        // server sent it, and the transport policy decides afterwards (DANE needs its own matching,
        // MTA-STS testing mode must go on after a failure, and opportunistic TLS takes anything).
        tls.certificateVerification = .noHostnameVerification
        let presented = NIOLockedValueBox<[[UInt8]]>([])
        let cipher = NIOLockedValueBox<UInt16?>(nil)
        let handshake: EventLoopFuture<Void>
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw SMTPClientError.protocolViolation("TLS setup: \(error)")
        }
        let sni = Self.isIPLiteral(remoteHost) ? nil : remoteHost
        let promise = channel.eventLoop.makePromise(of: Void.self)
        // The handlers are made on the event loop: NIOSSLHandler is not Sendable. The server
        // sends nothing between its 220 and our ClientHello, so no byte can slip past TLS.
        handshake = channel.eventLoop.submit { [channel] in
            do {
                let handler = try NIOSSLClientHandler(context: context, serverHostname: sni, customVerificationCallback: {
                    (certificates: [NIOSSLCertificate], verified: EventLoopPromise<NIOSSLVerificationResult>) in
                    let chain = certificates.prefix(DANEVerifier.maxChainLength).compactMap { try? $0.toDERBytes() }
                    presented.withLockedValue { $0 = chain }
                    verified.succeed(.certificateVerified)
                })
                try channel.pipeline.syncOperations.addHandlers([handler, TLSHandshakeWatcher(promise: promise)], position: .first)
                // In front of the TLS handler: it sees the ServerHello as it came.
                try channel.pipeline.syncOperations.addHandler(ServerHelloCipherObserver(result: cipher), position: .first)
            } catch {
                promise.fail(error)
                throw error
            }
        }.flatMap { promise.futureResult }
        let timeout = channel.eventLoop.scheduleTask(in: configuration.timeouts.command) { [channel] in
            channel.close(promise: nil)
        }
        defer { timeout.cancel() }
        do {
            try await handshake.get()
        } catch {
            broken = true
            throw SMTPClientError.connectionClosed("TLS handshake with \(remoteHost): \(error)")
        }
        tlsActive = true
        let version = try? await channel.nioSSL_tlsVersion().get()
        var info = SMTPClientTLSInfo(version: version.flatMap { $0 }.map(Self.versionName) ?? "TLS",
                                     cipher: cipher.withLockedValue { $0 }.map(TLSConnectionInfo.cipherName), verification: .none)
        let chain = presented.withLockedValue { $0 }
        if let policy = configuration.tlsPolicy {
            switch policy.requirement {
            case .dane(let records, let names):
                switch await DANEVerifier.verify(chain: chain, records: records, referenceNames: names) {
                case .verified(let how): info.verification = how
                case .failed(let why): info.failure = .validationFailure; info.failureDetail = "\(remoteHost): \(why)"
                }
            case .webPKI:
                let roots = configuration.trustRoots ?? CertificateStore.systemTrustRoots
                let (valid, failure, detail) = await WebPKIVerifier.verify(chain: chain, hostname: remoteHost, roots: roots)
                if valid {
                    info.verification = .webPKI
                } else {
                    info.failure = failure ?? .validationFailure
                    info.failureDetail = detail
                }
            case .plaintextOnly, .opportunistic, .encrypted:
                break
            }
        }
        tlsInfo = info
        if let failure = info.failure, configuration.tlsPolicy?.enforced == true {
            // RFC 7672 §2.2, RFC 8461 §5: an authentication failure never falls back to plaintext.
            broken = true
            channel.close(promise: nil)
            throw SMTPClientError.tlsPolicy(failure, info.failureDetail ?? "certificate not accepted")
        }
    }

    static func versionName(_ version: TLSVersion) -> String {
        switch version {
        case .tlsv1: return "TLSv1"
        case .tlsv11: return "TLSv1.1"
        case .tlsv12: return "TLSv1.2"
        case .tlsv13: return "TLSv1.3"
        }
    }

    static func isIPLiteral(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    // MARK: Transactions

    /// Sends one message to the envelope's recipients. Returns one result per recipient, in order.
    /// Throws only when the connection failed (then no recipient may count as delivered unless
    /// its final reply had arrived — which cannot be, since that is the last thing read).
    public func send(_ envelope: SMTPClientEnvelope, message: [UInt8]) async throws -> [SMTPRecipientResult] {
        guard !broken else { throw SMTPClientError.connectionClosed("reuse of a broken connection") }
        guard !envelope.recipients.isEmpty else { return [] }
        if needsReset {
            let reset = try await command("RSET", stage: "RSET", timeout: configuration.timeouts.command)
            guard reset.isPositive else { throw SMTPClientError.rejected(stage: "RSET", reset) }
            needsReset = false
        }
        // RFC 6531 §3.4: a message that needs SMTPUTF8 must not go to a server without it.
        if envelope.requiresSMTPUTF8, !extensions.has("SMTPUTF8") {
            let reply = SMTPClientReply(code: 553, lines: [
                "5.6.7 the message needs SMTPUTF8 (RFC 6531) but \(remoteHost) does not support it"])
            return envelope.recipients.map { _ in SMTPRecipientResult(reply: reply, local: true) }
        }
        // RFC 1870 §6: do not send what the server said it will refuse.
        if let limit = extensions.maximumSize, message.count > limit {
            let reply = SMTPClientReply(code: 552, lines: ["5.3.4 message of \(message.count) octets exceeds \(remoteHost)'s fixed limit of \(limit)"])
            return envelope.recipients.map { _ in SMTPRecipientResult(reply: reply, local: true) }
        }
        // RFC 8689 §5: a REQUIRETLS message goes only to a server that supports it.
        if envelope.requireTLS, !extensions.has("REQUIRETLS") {
            let reply = SMTPClientReply(code: 550, lines: ["5.7.30 REQUIRETLS support required: \(remoteHost) does not offer REQUIRETLS"])
            return envelope.recipients.map { _ in SMTPRecipientResult(reply: reply, local: true) }
        }
        let dsn = extensions.has("DSN")
        var mail = "MAIL FROM:<\(envelope.sender)>"
        if extensions.has("SIZE") { mail += " SIZE=\(message.count)" }
        if envelope.has8BitData, extensions.has("8BITMIME") { mail += " BODY=8BITMIME" }
        if envelope.requiresSMTPUTF8 { mail += " SMTPUTF8" }
        if envelope.requireTLS { mail += " REQUIRETLS" }
        if dsn, let ret = envelope.ret { mail += " RET=\(ret)" }
        if dsn, let envid = envelope.envelopeID { mail += " ENVID=\(envid)" }
        let rcpts = envelope.recipients.map { r -> String in
            var line = "RCPT TO:<\(r.address)>"
            if dsn, let notify = r.notify { line += " NOTIFY=\(notify)" }
            if dsn, let orcpt = r.originalRecipient { line += " ORCPT=\(orcpt)" }
            return line
        }
        let chunking = extensions.has("CHUNKING")
        let pipelining = extensions.has("PIPELINING")
        needsReset = true

        var mailReply: SMTPClientReply
        var rcptReplies: [SMTPClientReply] = []
        var dataReply: SMTPClientReply?
        if pipelining {
            // RFC 2920 §3.1: MAIL, RCPTs and DATA may go in one group; DATA last.
            var group = [mail] + rcpts
            if !chunking { group.append("DATA") }
            try await write(group.map { $0 + "\r\n" }.joined())
            mailReply = try await reply(stage: "MAIL", timeout: configuration.timeouts.command)
            for _ in rcpts { rcptReplies.append(try await reply(stage: "RCPT", timeout: configuration.timeouts.command)) }
            if !chunking { dataReply = try await reply(stage: "DATA", timeout: configuration.timeouts.dataInitiation) }
        } else {
            mailReply = try await command(mail, stage: "MAIL", timeout: configuration.timeouts.command)
            if mailReply.isPositive {
                for rcpt in rcpts {
                    rcptReplies.append(try await command(rcpt, stage: "RCPT", timeout: configuration.timeouts.command))
                }
            }
        }
        guard mailReply.isPositive else {
            if dataReply?.code == 354 { _ = try await finishEmptyData() }
            return envelope.recipients.map { _ in SMTPRecipientResult(reply: mailReply) }
        }
        let accepted = rcptReplies.contains(where: \.isPositive)
        guard accepted else {
            if dataReply?.code == 354 { _ = try await finishEmptyData() }
            return rcptReplies.map { SMTPRecipientResult(reply: $0) }
        }

        let final: SMTPClientReply
        if chunking {
            // RFC 3030 §2: one BDAT LAST chunk carries the message as is, no dot-stuffing.
            var buffer = channel.allocator.buffer(capacity: message.count + 32)
            buffer.writeString("BDAT \(message.count) LAST\r\n")
            buffer.writeBytes(message)
            try await write(buffer)
            final = try await reply(stage: "BDAT", timeout: configuration.timeouts.dataTermination)
        } else {
            if !pipelining {
                dataReply = try await command("DATA", stage: "DATA", timeout: configuration.timeouts.dataInitiation)
            }
            guard let started = dataReply, started.code == 354 else {
                let refusal = dataReply ?? SMTPClientReply(code: 451, lines: ["4.0.0 no reply to DATA"])
                return rcptReplies.map { SMTPRecipientResult(reply: $0.isPositive ? refusal : $0) }
            }
            // Stuffed straight into the buffer that goes out: one copy of the message, not two.
            var buffer = channel.allocator.buffer(capacity: message.count + message.count / 64 + 8)
            Self.writeDotStuffed(message, into: &buffer)
            buffer.writeString(".\r\n")
            try await write(buffer)
            final = try await reply(stage: "end of data", timeout: configuration.timeouts.dataTermination)
        }
        needsReset = false
        return rcptReplies.map { SMTPRecipientResult(reply: $0.isPositive ? final : $0) }
    }

    /// RFC 2920 §3.1: DATA got 354 although every RCPT failed: send an empty message to close it.
    private func finishEmptyData() async throws -> SMTPClientReply {
        try await command(".", stage: "end of empty data", timeout: configuration.timeouts.dataTermination)
    }

    /// Says QUIT (best effort) and closes.
    public func quit() async {
        if !broken {
            _ = try? await command("QUIT", stage: "QUIT", timeout: .seconds(10))
        }
        await close()
    }

    public func close() async {
        broken = true
        try? await channel.close()
    }

    public var isUsable: Bool { !broken && channel.isActive }

    // MARK: Wire

    /// `dotStuffed(message)` appended to `buffer`, a line at a time rather than a byte at a time.
    static func writeDotStuffed(_ message: [UInt8], into buffer: inout ByteBuffer) {
        message.withUnsafeBytes { bytes in
            var start = 0
            while start < bytes.count {
                if bytes[start] == UInt8(ascii: ".") { buffer.writeInteger(UInt8(ascii: ".")) }
                let rest = UnsafeRawBufferPointer(rebasing: bytes[start...])
                let end = rest.firstIndex(of: 0x0A).map { start + $0 + 1 } ?? bytes.count
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[start ..< end]))
                start = end
            }
        }
        if !(message.count >= 2 && message[message.count - 2] == 0x0D && message[message.count - 1] == 0x0A) {
            buffer.writeBytes([0x0D, 0x0A])
        }
    }

    /// RFC 5321 §4.5.2: a line that starts with "." gets one more; the message ends in CRLF.
    static func dotStuffed(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 4)
        var atLineStart = true
        for byte in message {
            if atLineStart, byte == UInt8(ascii: ".") { out.append(UInt8(ascii: ".")) }
            out.append(byte)
            atLineStart = byte == 0x0A
        }
        if !(out.count >= 2 && out[out.count - 2] == 0x0D && out[out.count - 1] == 0x0A) {
            out.append(contentsOf: [0x0D, 0x0A])
        }
        return out
    }

    func command(_ line: String, stage: String, timeout: TimeAmount) async throws -> SMTPClientReply {
        try await write(line + "\r\n")
        return try await reply(stage: stage, timeout: timeout)
    }

    private func write(_ text: String) async throws {
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        try await write(buffer)
    }

    private func write(_ buffer: ByteBuffer) async throws {
        do {
            try await channel.writeAndFlush(buffer)
        } catch {
            broken = true
            throw SMTPClientError.connectionClosed("write: \(error)")
        }
    }

    private func reply(stage: String, timeout: TimeAmount) async throws -> SMTPClientReply {
        do {
            return try await replies.next(stage: stage, timeout: timeout, channel: channel)
        } catch {
            broken = true
            channel.close(promise: nil)
            throw error
        }
    }
}

/// What one STARTTLS gave, for the delivery log and the TLS report.
public struct SMTPClientTLSInfo: Sendable, Equatable {
    /// `TLSv1.3`; nil when no TLS was negotiated.
    public var version: String?
    /// The cipher suite's IANA name, when the TLS library tells it (swift-nio-ssl does not yet).
    public var cipher: String?
    public var verification: TLSPeerVerification
    /// Set when the policy's check failed (enforced: the session was abandoned; testing: it went on).
    public var failure: TLSFailureType?
    public var failureDetail: String?

    public init(version: String?, cipher: String? = nil, verification: TLSPeerVerification,
                failure: TLSFailureType? = nil, failureDetail: String? = nil) {
        self.version = version; self.cipher = cipher; self.verification = verification
        self.failure = failure; self.failureDetail = failureDetail
    }

    /// `tls=TLSv1.3 verified=dane-ee` (or `tls=none`).
    public var logText: String {
        guard let version else { return "tls=none" }
        var text = "tls=\(version)"
        if let cipher { text += " cipher=\(cipher)" }
        text += " verified=\(verification.rawValue)"
        if let failure { text += " policy-failure=\(failure.rawValue)" }
        return text
    }
}

// MARK: - Channel plumbing

/// Frames the server's bytes into lines (CRLF, or a bare LF from sloppy servers), bounded.
struct SMTPReplyLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = [UInt8]

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: 0x0A) else {
            if buffer.readableBytes > SMTPReplyParser.maxLineLength { throw SMTPReplyParser.ParseError.tooLong }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        var line = buffer.readBytes(length: length) ?? []
        buffer.moveReaderIndex(forwardBy: 1)
        if line.last == 0x0D { line.removeLast() }
        context.fireChannelRead(wrapOutboundOut(line))
        return .continue
    }

    func wrapOutboundOut(_ value: [UInt8]) -> NIOAny { NIOAny(value) }
}

final class SMTPClientReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = [UInt8]
    private var parser = SMTPReplyParser()
    private let queue: ReplyQueue

    init(queue: ReplyQueue) { self.queue = queue }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        do {
            if let reply = try parser.feed(line) { queue.push(.success(reply)) }
        } catch {
            queue.push(.failure(SMTPClientError.protocolViolation("\(error)")))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        queue.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        queue.push(.failure(SMTPClientError.connectionClosed("\(error)")))
        context.close(promise: nil)
    }
}

/// Completes the STARTTLS handshake promise.
final class TLSHandshakeWatcher: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    private let promise: EventLoopPromise<Void>
    private var done = false
    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, !done {
            done = true
            promise.succeed(())
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done { done = true; promise.fail(error) }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { done = true; promise.fail(SMTPClientError.connectionClosed("TLS handshake")) }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if !done { done = true; promise.fail(SMTPClientError.connectionClosed("TLS handshake")) }
    }
}

/// Replies in arrival order, handed to one waiting reader with a timeout.
final class ReplyQueue: Sendable {
    private struct State {
        var buffered: [Result<SMTPClientReply, any Error>] = []
        var finished = false
        var waiter: (id: UInt64, continuation: CheckedContinuation<SMTPClientReply, any Error>, stage: String)?
        /// The waiter's timeout, cancelled when its reply comes: a long session must not pile
        /// up minutes-long timers.
        var timer: Scheduled<Void>?
        var nextID: UInt64 = 0
    }
    private let state = NIOLockedValueBox(State())

    func push(_ result: Result<SMTPClientReply, any Error>) {
        let waiter: (CheckedContinuation<SMTPClientReply, any Error>, Scheduled<Void>?)? = state.withLockedValue { s in
            if let w = s.waiter {
                s.waiter = nil
                defer { s.timer = nil }
                return (w.continuation, s.timer)
            }
            // Bounded: a server flooding replies we did not ask for is broken.
            if s.buffered.count < 1000 { s.buffered.append(result) }
            return nil
        }
        if let (continuation, timer) = waiter {
            timer?.cancel()
            continuation.resume(with: result)
        }
    }

    func finish() {
        let waiter: (CheckedContinuation<SMTPClientReply, any Error>, String, Scheduled<Void>?)? = state.withLockedValue { s in
            s.finished = true
            if let w = s.waiter {
                s.waiter = nil
                defer { s.timer = nil }
                return (w.continuation, w.stage, s.timer)
            }
            return nil
        }
        if let (continuation, stage, timer) = waiter {
            timer?.cancel()
            continuation.resume(throwing: SMTPClientError.connectionClosed(stage))
        }
    }

    func next(stage: String, timeout: TimeAmount, channel: any Channel) async throws -> SMTPClientReply {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<SMTPClientReply, any Error>) in
            enum Now { case value(Result<SMTPClientReply, any Error>), wait(UInt64) }
            let now: Now = state.withLockedValue { s in
                if !s.buffered.isEmpty { return .value(s.buffered.removeFirst()) }
                if s.finished { return .value(.failure(SMTPClientError.connectionClosed(stage))) }
                s.nextID += 1
                s.waiter = (s.nextID, continuation, stage)
                return .wait(s.nextID)
            }
            switch now {
            case .value(let result):
                continuation.resume(with: result)
            case .wait(let id):
                let timer = channel.eventLoop.scheduleTask(in: timeout) { [self] in
                    let expired: CheckedContinuation<SMTPClientReply, any Error>? = state.withLockedValue { s in
                        guard let w = s.waiter, w.id == id else { return nil }
                        s.waiter = nil
                        s.timer = nil
                        return w.continuation
                    }
                    expired?.resume(throwing: SMTPClientError.timeout(stage))
                }
                let answered: Bool = state.withLockedValue { s in
                    guard let w = s.waiter, w.id == id else { return true }
                    s.timer = timer
                    return false
                }
                if answered { timer.cancel() }
            }
        }
    }
}
