// Test peers for the outbound queue: a temporary store, a settable clock, Facteur's own SMTP
// server with a recording backend, and a scripted SMTP server that can greylist, hang, drop
// the connection mid-DATA or answer garbage.

import FacteurIdentity
import FacteurNet
import FacteurSMTP
import FacteurStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
@testable import FacteurQueue

final class TestClock: Sendable {
    private let value: NIOLockedValueBox<Date>
    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { value = NIOLockedValueBox(start) }
    var now: Date { value.withLockedValue { $0 } }
    func advance(_ seconds: TimeInterval) { value.withLockedValue { $0 = $0.addingTimeInterval(seconds) } }
    var function: @Sendable () -> Date { { self.now } }
}

func temporaryDirectory(_ name: String) -> String {
    let path = NSTemporaryDirectory() + "facteur-\(name)-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func crlf(_ text: String) -> [UInt8] {
    Array(text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n").utf8)
}

/// Records what Facteur's SMTP server received; `nobody@` is unknown, `full@` is temporarily refused.
final class RecordingBackend: SMTPBackend {
    let stored = NIOLockedValueBox<[(SMTPTransaction, [UInt8])]>([])

    func checkRecipient(_ mailbox: SMTPMailbox, declaredSize: Int?, account: String?) async -> RecipientVerdict {
        switch mailbox.localPart {
        case "nobody": return .unknownUser
        case "full": return .mailboxFull
        default: return .accepted([LocalRecipient(accountID: 1, address: mailbox.description)])
        }
    }

    /// Submission: the test account may send as anyone.
    func checkSender(_ sender: SMTPMailbox?, account: String) async -> SenderVerdict { .allowed }

    func deliver(_ transaction: SMTPTransaction, message: MessageData) async -> DeliveryVerdict {
        let bytes: [UInt8]
        switch message {
        case .memory(let memory): bytes = memory
        case .file(let path, _):
            bytes = Array((try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data())
            unlink(path)
        }
        stored.withLockedValue { $0.append((transaction, bytes)) }
        return .stored
    }

    var count: Int { stored.withLockedValue { $0.count } }
    var last: (SMTPTransaction, [UInt8])? { stored.withLockedValue { $0.last } }
}

/// Facteur's own SMTP server on 127.0.0.1, optionally with STARTTLS.
func startFacteurSMTP(_ backend: RecordingBackend, directory: String, tls: Bool = false,
                      maxMessageSize: Int = 10_000_000, authenticator: Authenticator? = nil) async throws -> SMTPListener {
    var context: NIOSSLContextBox?
    if tls {
        let files = CertificateFiles(certificatePath: "\(directory)/cert.pem", keyPath: "\(directory)/key.pem")
        _ = try TLSProvider.ensureSelfSigned(files, hostnames: ["localhost"])
        context = NIOSSLContextBox(try TLSProvider(defaultCertificate: files).context)
    }
    let session = SMTPSessionConfiguration(hostname: "mx.example.org", maxMessageSize: maxMessageSize, tlsAvailable: tls,
                                           mode: authenticator == nil ? .inbound : .submission)
    return try await SMTPListener.bind(
        configuration: .init(host: "127.0.0.1", port: 0, session: session, spoolDirectory: directory),
        backend: backend, sslContext: context?.context, group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"),
        authenticator: authenticator)
}

import NIOSSL
struct NIOSSLContextBox { let context: NIOSSLContext; init(_ c: NIOSSLContext) { context = c } }

// MARK: - Scripted server

enum ScriptEvent: Sendable, Equatable {
    case command(String)
    case message([UInt8])
}

enum ScriptAction: Sendable {
    case reply(String)
    /// Say nothing (the client's timeout must fire).
    case hang
    /// Drop the connection without a word.
    case close
    /// Enter DATA mode after the reply (the reply should be 354).
    case startData(String)
}

/// A minimal SMTP server whose every answer comes from a closure.
final class ScriptedSMTPServer: Sendable {
    let channel: any Channel
    let events = NIOLockedValueBox<[ScriptEvent]>([])
    var port: Int { channel.localAddress?.port ?? 0 }

    init(greeting: String = "220 scripted ESMTP", host: String = "127.0.0.1",
         script: @escaping @Sendable (ScriptEvent) -> ScriptAction) async throws {
        let events = self.events
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyLineDecoder()))
                    try child.pipeline.syncOperations.addHandler(ScriptHandler(greeting: greeting, script: script, events: events))
                }
            }
            .bind(host: host, port: 0).get()
    }

    func stop() async { try? await channel.close() }
    var commands: [String] {
        events.withLockedValue { $0.compactMap { if case .command(let c) = $0 { return c } else { return nil } } }
    }
    var messages: [[UInt8]] {
        events.withLockedValue { $0.compactMap { if case .message(let m) = $0 { return m } else { return nil } } }
    }
}

final class ScriptHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = [UInt8]
    typealias OutboundOut = ByteBuffer
    let greeting: String
    let script: @Sendable (ScriptEvent) -> ScriptAction
    let events: NIOLockedValueBox<[ScriptEvent]>
    var inData = false
    var data: [UInt8] = []

    init(greeting: String, script: @escaping @Sendable (ScriptEvent) -> ScriptAction, events: NIOLockedValueBox<[ScriptEvent]>) {
        self.greeting = greeting; self.script = script; self.events = events
    }

    func channelActive(context: ChannelHandlerContext) {
        send(context, greeting)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        if inData {
            if line == [UInt8(ascii: ".")] {
                inData = false
                let message = self.data
                self.data = []
                events.withLockedValue { $0.append(.message(message)) }
                perform(script(.message(message)), context: context)
            } else {
                // RFC 5321 §4.5.2: remove the stuffed dot.
                self.data += (line.first == UInt8(ascii: ".") ? Array(line.dropFirst()) : line) + [0x0D, 0x0A]
            }
            return
        }
        let command = String(decoding: line, as: UTF8.self)
        events.withLockedValue { $0.append(.command(command)) }
        perform(script(.command(command)), context: context)
    }

    private func perform(_ action: ScriptAction, context: ChannelHandlerContext) {
        switch action {
        case .reply(let text): send(context, text)
        case .hang: break
        case .close: context.close(promise: nil)
        case .startData(let text): inData = true; send(context, text)
        }
    }

    private func send(_ context: ChannelHandlerContext, _ text: String) {
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count + 2)
        buffer.writeString(text.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n")
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }
}

/// A plain ESMTP script: accepts everything, `ehlo` lines after the greeting line.
func acceptingScript(ehlo: [String] = ["PIPELINING", "8BITMIME"], rcpt: @escaping @Sendable (String) -> String = { _ in "250 2.1.5 ok" },
                     final: @escaping @Sendable () -> String = { "250 2.0.0 queued" }) -> @Sendable (ScriptEvent) -> ScriptAction {
    { event in
        switch event {
        case .message: return .reply(final())
        case .command(let c):
            let upper = c.uppercased()
            if upper.hasPrefix("EHLO") {
                return .reply((["250-scripted"] + ehlo.dropLast().map { "250-\($0)" } + ["250 \(ehlo.last ?? "HELP")"]).joined(separator: "\n"))
            }
            if upper.hasPrefix("MAIL") { return .reply("250 2.1.0 ok") }
            if upper.hasPrefix("RCPT") { return .reply(rcpt(c)) }
            if upper == "DATA" { return .startData("354 go ahead") }
            if upper == "QUIT" { return .reply("221 bye") }
            if upper == "RSET" { return .reply("250 ok") }
            return .reply("502 5.5.2 unknown")
        }
    }
}
