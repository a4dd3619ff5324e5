// The IMAP listener over real loopback sockets with TLS: STARTTLS (RFC 9051 §6.2.1, with the
// RFC 3207-style rule that plaintext pipelined after it is discarded), implicit-TLS IMAPS
// (RFC 8314), the unauthenticated idle timeout (RFC 9051 §5.4) and draining on shutdown.

import FacteurIdentity
@testable import FacteurIMAP
import FacteurNet
import FacteurStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import XCTest

final class IMAPTLSAndLifecycleTests: IMAPStoreTestCase {
    var tlsDirectory = ""

    override func tearDown() async throws {
        if !tlsDirectory.isEmpty { try? FileManager.default.removeItem(atPath: tlsDirectory) }
        try await super.tearDown()
    }

    func serverContext() throws -> NIOSSLContext {
        tlsDirectory = NSTemporaryDirectory() + "facteur-imap-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tlsDirectory, withIntermediateDirectories: true)
        let files = CertificateFiles(certificatePath: "\(tlsDirectory)/cert.pem", keyPath: "\(tlsDirectory)/key.pem")
        XCTAssertTrue(try TLSProvider.ensureSelfSigned(files, hostnames: ["localhost"]))
        return try TLSProvider(defaultCertificate: files).context
    }

    func bind(implicitTLS: Bool = false, tls: Bool = true, limits: IMAPLimits = IMAPLimits()) async throws -> IMAPListener {
        try await IMAPListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, hostname: "mail.example.org", implicitTLS: implicitTLS,
                                 allowPlaintextOnLoopback: false, limits: limits),
            store: store!, authenticator: runner.authenticator, sslContext: tls ? try serverContext() : nil,
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
    }

    func testSTARTTLSDiscardsPipelinedPlaintextAndUnlocksLogin() async throws {
        let listener = try await bind()
        let r25 = try await NIOLineClient.connect(port: try XCTUnwrap(listener.localAddress?.port), tls: false)
        let client = try r25
        let r26 = await client.readLine()
        let greeting = try XCTUnwrap(r26)
        XCTAssertTrue(greeting.contains(" STARTTLS "), greeting)
        XCTAssertTrue(greeting.contains(" LOGINDISABLED "), greeting)
        XCTAssertFalse(greeting.contains("AUTH=PLAIN"), greeting)

        // LOGIN in the clear is refused (RFC 9051 §6.2.3).
        try await client.send("a0 LOGIN alice@example.org secret\r\n")
        let r27 = await client.readLine()
        let refused = try XCTUnwrap(r27)
        XCTAssertTrue(refused.hasPrefix("a0 NO") || refused.hasPrefix("a0 BAD"), refused)

        // A LOGIN pipelined in the same packet as STARTTLS must never run.
        try await client.send("a1 STARTTLS\r\na2 LOGIN alice@example.org secret\r\n")
        let r28 = await client.readLine()
        XCTAssertEqual(r28, "a1 OK Begin TLS negotiation now")
        try await client.startTLS()
        try await client.send("a3 CAPABILITY\r\n")
        let r29 = await client.readLine()
        let capability = try XCTUnwrap(r29)
        XCTAssertTrue(capability.hasPrefix("* CAPABILITY "), "the first line after TLS is the new command's, not a2's: \(capability)")
        XCTAssertFalse(capability.contains("STARTTLS"), capability)
        XCTAssertFalse(capability.contains("LOGINDISABLED"), capability)
        XCTAssertTrue(capability.contains("AUTH=PLAIN"), capability)
        let r30 = await client.readLine()
        XCTAssertEqual(r30, "a3 OK CAPABILITY completed")
        // Still not authenticated: a2 was discarded.
        try await client.send("a4 SELECT INBOX\r\n")
        let r31 = await client.readLine()
        XCTAssertEqual(r31, "a4 BAD SELECT Log in first")
        try await client.send("a5 STARTTLS\r\n")
        let r32 = await client.readLine()
        XCTAssertEqual(r32, "a5 BAD STARTTLS not available")
        try await client.send("a6 LOGIN alice@example.org secret\r\n")
        let r33 = await client.readLine()?.hasPrefix("a6 OK [CAPABILITY") == true
        XCTAssertTrue(r33)
        try await client.send("a7 LOGOUT\r\n")
        let r34 = await client.readLine()
        XCTAssertEqual(r34, "* BYE Logging out")
        let r35 = await client.readLine()
        XCTAssertEqual(r35, "a7 OK LOGOUT completed")
        await client.close()
        await listener.shutdown(grace: .seconds(1))
    }

    func testSTARTTLSIsNotOfferedWithoutACertificate() async throws {
        let listener = try await bind(tls: false)
        let r36 = try await NIOLineClient.connect(port: try XCTUnwrap(listener.localAddress?.port), tls: false)
        let client = try r36
        let r37 = await client.readLine()
        let greeting = try XCTUnwrap(r37)
        XCTAssertFalse(greeting.contains("STARTTLS"), greeting)
        try await client.send("a1 STARTTLS\r\n")
        let r38 = await client.readLine()
        XCTAssertEqual(r38, "a1 BAD STARTTLS not available")
        await client.close()
        await listener.shutdown(grace: .seconds(1))
    }

    func testIMAPSIsTLSFromTheFirstByte() async throws {
        _ = try await deliver(Self.simple)
        let listener = try await bind(implicitTLS: true)
        let r39 = try await NIOLineClient.connect(port: try XCTUnwrap(listener.localAddress?.port), tls: true)
        let client = try r39
        let r40 = await client.readLine()
        let greeting = try XCTUnwrap(r40)
        XCTAssertTrue(greeting.hasPrefix("* OK [CAPABILITY IMAP4rev1 IMAP4rev2"), greeting)
        XCTAssertFalse(greeting.contains("STARTTLS"), greeting)
        XCTAssertFalse(greeting.contains("LOGINDISABLED"), greeting)
        XCTAssertTrue(greeting.contains("AUTH=PLAIN"), greeting)
        try await client.send("a1 AUTHENTICATE PLAIN \(Data("\0alice@example.org\0secret".utf8).base64EncodedString())\r\n")
        let r41 = await client.readLine()?.hasPrefix("a1 OK [CAPABILITY") == true
        XCTAssertTrue(r41)
        try await client.send("a2 EXAMINE INBOX\r\n")
        let lines = await client.readUntil(tag: "a2")
        XCTAssertTrue(lines.contains("* 1 EXISTS"), "\(lines)")
        XCTAssertEqual(lines.last, "a2 OK [READ-ONLY] EXAMINE completed")
        await client.close()
        await listener.shutdown(grace: .seconds(1))
    }

    func testPlaintextClientOnIMAPSPortGetsNothingUsable() async throws {
        let listener = try await bind(implicitTLS: true)
        let r42 = try await NIOLineClient.connect(port: try XCTUnwrap(listener.localAddress?.port), tls: false)
        let client = try r42
        try await client.send("a1 CAPABILITY\r\n")
        // No IMAP greeting in the clear; the TLS layer rejects the bytes and closes.
        let line = await client.readLine(timeout: .seconds(2))
        XCTAssertFalse(line?.hasPrefix("* OK") == true, line ?? "")
        XCTAssertFalse(line?.hasPrefix("a1") == true, line ?? "")
        await client.close()
        await listener.shutdown(grace: .seconds(1))
    }

    func testUnauthenticatedIdleTimeoutSaysByeAndCloses() async throws {
        var limits = IMAPLimits()
        limits.idleTimeoutUnauthenticated = .seconds(1)
        let listener = try await bind(tls: false, limits: limits)
        let r43 = try await NIOLineClient.connect(port: try XCTUnwrap(listener.localAddress?.port), tls: false)
        let client = try r43
        let r44 = await client.readLine()
        XCTAssertNotNil(r44)
        let started = ContinuousClock.now
        let r45 = await client.readLine(timeout: .seconds(5))
        XCTAssertEqual(r45, "* BYE Autologout; idle for too long")
        let r46 = await client.readLine(timeout: .seconds(2))
        XCTAssertNil(r46, "closed after the BYE")
        let r47 = await client.isClosed
        XCTAssertTrue(r47)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(4))
        await listener.shutdown(grace: .seconds(1))
    }

    func testActivityPostponesTheIdleTimeout() async throws {
        var limits = IMAPLimits()
        limits.idleTimeoutUnauthenticated = .seconds(1)
        let listener = try await bind(tls: false, limits: limits)
        let r48 = try await NIOLineClient.connect(port: try XCTUnwrap(listener.localAddress?.port), tls: false)
        let client = try r48
        let r49 = await client.readLine()
        XCTAssertNotNil(r49)
        for i in 0 ..< 4 {
            try await Task.sleep(for: .milliseconds(500))
            try await client.send("n\(i) NOOP\r\n")
            let r50 = await client.readLine()
            XCTAssertEqual(r50, "n\(i) OK NOOP completed")
        }
        await client.close()
        await listener.shutdown(grace: .seconds(1))
    }

    func testShutdownDrainsIdleAndIdlingSessionsWithBye() async throws {
        let listener = try await IMAPListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, hostname: "mail.example.org"),
            store: store!, authenticator: runner.authenticator, sslContext: nil,
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        let port = try XCTUnwrap(listener.localAddress?.port)
        let waiting = try await NIOLineClient.connect(port: port, tls: false)
        let r51 = await waiting.readLine()
        XCTAssertNotNil(r51)
        let idling = try await NIOLineClient.connect(port: port, tls: false)
        let r52 = await idling.readLine()
        XCTAssertNotNil(r52)
        try await idling.send("a1 LOGIN alice@example.org secret\r\na2 SELECT INBOX\r\na3 IDLE\r\n")
        let r53 = await idling.readUntil(tag: "+").last
        XCTAssertEqual(r53, "+ idling")
        XCTAssertEqual(listener.activeSessions, 2)

        let started = ContinuousClock.now
        await listener.shutdown(grace: .seconds(3))
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "idle sessions do not hold the shutdown to its grace")
        let r54 = await waiting.readLine()
        XCTAssertEqual(r54, "* BYE [UNAVAILABLE] Server shutting down")
        let r55 = await waiting.readLine(timeout: .seconds(2))
        XCTAssertNil(r55)
        let r56 = await idling.readLine()
        XCTAssertEqual(r56, "* BYE [UNAVAILABLE] Server shutting down")
        let r57 = await idling.readLine(timeout: .seconds(2))
        XCTAssertNil(r57)
        // No new connections after shutdown.
        let refused = try? await NIOLineClient.connect(port: port, tls: false)
        if let refused {
            let r58 = await refused.readLine(timeout: .seconds(1))
            XCTAssertNil(r58)
        }
    }
}

/// Collects what the server sends, for `NIOLineClient`.
final class ByteCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let bytes = NIOLockedValueBox<[UInt8]>([])
    let closed = NIOLockedValueBox(false)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytes.withLockedValue { $0.append(contentsOf: buffer.readableBytesView) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed.withLockedValue { $0 = true }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// A loopback client on NIO that can start TLS in the middle of the connection.
final class NIOLineClient: Sendable {
    let channel: any Channel
    let collector: ByteCollector

    private init(channel: any Channel, collector: ByteCollector) {
        self.channel = channel
        self.collector = collector
    }

    static func clientContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        return try NIOSSLContext(configuration: configuration)
    }

    static func connect(port: Int, tls: Bool) async throws -> NIOLineClient {
        let collector = ByteCollector()
        let context = try clientContext()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return NIOLineClient(channel: channel, collector: collector)
    }

    func send(_ text: String) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(string: text))
    }

    func startTLS() async throws {
        let context = try Self.clientContext()
        let channel = self.channel
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil), position: .first)
        }.get()
    }

    var isClosed: Bool { get async { collector.closed.withLockedValue { $0 } } }

    /// The next CRLF line, or nil on timeout or once the connection closed with nothing left.
    func readLine(timeout: Duration = .seconds(5)) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let line: String? = collector.bytes.withLockedValue { b in
                guard let lf = b.firstIndex(of: 0x0A) else { return nil }
                var line = Array(b[..<lf])
                b.removeFirst(lf + 1)
                if line.last == 0x0D { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            if let line { return line }
            if collector.closed.withLockedValue({ $0 }) || ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    func readUntil(tag: String) async -> [String] {
        var lines: [String] = []
        while let line = await readLine() {
            lines.append(line)
            if line.hasPrefix(tag + " ") { break }
        }
        return lines
    }

    func close() async {
        try? await channel.close()
    }
}
