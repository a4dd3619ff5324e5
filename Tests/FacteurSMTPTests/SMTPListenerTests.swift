import FacteurSMTP
import FacteurStore
import FacteurTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A backend that accepts everyone at example.org and remembers what it stored.
final class RecordingBackend: SMTPBackend {
    let stored = NIOLockedValueBox<[(SMTPTransaction, [UInt8])]>([])
    let deliveryDelay: Duration

    init(deliveryDelay: Duration = .zero) { self.deliveryDelay = deliveryDelay }

    func checkRecipient(_ mailbox: SMTPMailbox, declaredSize: Int?, account: String?) async -> RecipientVerdict {
        guard mailbox.domain == "example.org" else { return .relayDenied }
        return mailbox.localPart == "nobody" ? .unknownUser : .accepted([LocalRecipient(accountID: 1, address: mailbox.description)])
    }

    func deliver(_ transaction: SMTPTransaction, message: MessageData) async -> DeliveryVerdict {
        if deliveryDelay > .zero { try? await Task.sleep(for: deliveryDelay) }
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

    var messages: [String] { stored.withLockedValue { $0.map { String(decoding: $0.1, as: UTF8.self) } } }
}

/// A loopback client that reads SMTP replies.
final class TestClient: LoopbackLineClient {
    /// Reads one whole (possibly multi-line) reply; returns its lines, or [] on EOF/timeout.
    func reply() -> [String] {
        var lines: [String] = []
        while let line = readLine() {
            lines.append(line)
            if line.count < 4 || Array(line.utf8)[3] == UInt8(ascii: " ") { break }
        }
        return lines
    }

    /// The code of the next reply (and its enhanced code), e.g. "250 2.1.0".
    func code() -> String {
        guard let last = reply().last else { return "EOF" }
        let parts = last.split(separator: " ", maxSplits: 2)
        if parts.count >= 2, parts[1].first?.isNumber == true, parts[1].contains(".") { return "\(parts[0]) \(parts[1])" }
        return String(last.prefix(3))
    }
}

final class SMTPListenerTests: XCTestCase {
    var spoolDirectory = ""

    override func setUp() {
        spoolDirectory = NSTemporaryDirectory() + "facteur-smtp-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: spoolDirectory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: spoolDirectory)
    }

    private func start(_ backend: RecordingBackend, maxPerAddress: Int = 50, maxMessageSize: Int = 100_000,
                       memorySpool: Int = 1 << 20) async throws -> SMTPListener {
        var limits = SMTPServerLimits()
        limits.maxCommandLength = 512
        limits.memorySpoolLimit = memorySpool
        let session = SMTPSessionConfiguration(hostname: "mx.example.org", maxMessageSize: maxMessageSize, tlsAvailable: false)
        return try await SMTPListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, session: session, limits: limits, spoolDirectory: spoolDirectory,
                                 maxConnections: 100, maxConnectionsPerAddress: maxPerAddress),
            backend: backend, sslContext: nil, group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
    }

    private func connect(_ listener: SMTPListener) throws -> TestClient {
        let client = try TestClient(port: listener.localAddress!.port!)
        XCTAssertEqual(client.code(), "220")
        return client
    }

    func testPipelinedTransactionStoresTheBytesExactly() async throws {
        let backend = RecordingBackend()
        let listener = try await start(backend)
        let client = try connect(listener)
        client.send("EHLO client.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n")
        XCTAssertTrue(client.reply().contains("250 HELP"))
        XCTAssertEqual(client.code(), "250 2.1.0")
        XCTAssertEqual(client.code(), "250 2.1.5")
        XCTAssertEqual(client.code(), "550 5.1.1")
        XCTAssertEqual(client.code(), "250 2.1.5")
        XCTAssertEqual(client.code(), "354")
        client.send("Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n")
        XCTAssertEqual(client.code(), "250 2.0.0")
        XCTAssertEqual(client.code(), "221 2.0.0")
        XCTAssertEqual(backend.messages, ["Subject: hi\r\n\r\n.dot\r\nbody\r\n"])
        XCTAssertEqual(backend.stored.withLockedValue { $0[0].0.recipients.count }, 2)
        await listener.shutdown(grace: .seconds(1))
    }

    func testSmugglingAttemptStaysOneMessage() async throws {
        let backend = RecordingBackend()
        let listener = try await start(backend)
        let client = try connect(listener)
        client.send("EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        _ = client.reply(); _ = client.code(); _ = client.code()
        XCTAssertEqual(client.code(), "354")
        client.send("Subject: one\r\n\r\nx\n.\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: two\r\n\r\n.\r\n")
        XCTAssertEqual(client.code(), "250 2.0.0")
        XCTAssertTrue(client.isSilent(for: 0.3), "exactly one reply: the smuggled commands were message content")
        XCTAssertEqual(backend.messages.count, 1)
        XCTAssertTrue(backend.messages[0].contains("MAIL FROM:<evil@example.net>"))
        await listener.shutdown(grace: .seconds(1))
    }

    func testBDATChunksPipelined() async throws {
        let backend = RecordingBackend()
        let listener = try await start(backend)
        let client = try connect(listener)
        client.send("EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT 14\r\nSubject: x\r\n\r\nBDAT 7 LAST\r\n.body\r\n")
        _ = client.reply()
        XCTAssertEqual(client.code(), "250 2.1.0")
        XCTAssertEqual(client.code(), "250 2.1.5")
        XCTAssertEqual(client.code(), "250 2.0.0")
        XCTAssertEqual(client.code(), "250 2.0.0")
        XCTAssertEqual(backend.messages, ["Subject: x\r\n\r\n.body\r\n"])
        await listener.shutdown(grace: .seconds(1))
    }

    func testOverlongCommandLineIsRefusedAndTheSessionGoesOn() async throws {
        let listener = try await start(RecordingBackend())
        let client = try connect(listener)
        client.send("NOOP " + String(repeating: "x", count: 5000) + "\r\nNOOP\r\n")
        XCTAssertEqual(client.code(), "500 5.5.6")
        XCTAssertEqual(client.code(), "250 2.0.0")
        await listener.shutdown(grace: .seconds(1))
    }

    func testOversizedMessageIsRefusedWhileStreaming() async throws {
        let backend = RecordingBackend()
        let listener = try await start(backend, maxMessageSize: 1000, memorySpool: 100)
        let client = try connect(listener)
        client.send("EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        _ = client.reply(); _ = client.code(); _ = client.code()
        XCTAssertEqual(client.code(), "354")
        client.send(String(repeating: "0123456789012345678901234567890123456789\r\n", count: 200) + ".\r\n")
        XCTAssertEqual(client.code(), "552 5.3.4")
        XCTAssertTrue(backend.messages.isEmpty)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spoolDirectory), [], "no spool file left")
        client.send("NOOP\r\n")
        XCTAssertEqual(client.code(), "250 2.0.0")
        await listener.shutdown(grace: .seconds(1))
    }

    func testClientVanishingMidDataLeavesNothing() async throws {
        let backend = RecordingBackend()
        let listener = try await start(backend, memorySpool: 100)
        do {
            let client = try connect(listener)
            client.send("EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
            _ = client.reply(); _ = client.code(); _ = client.code()
            XCTAssertEqual(client.code(), "354")
            client.send(String(repeating: "half a message that will never end\r\n", count: 100))
            try await Task.sleep(for: .milliseconds(200))
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spoolDirectory).count, 1, "large data spooled to a file")
        }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertTrue(backend.messages.isEmpty)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spoolDirectory), [])
        await listener.shutdown(grace: .seconds(1))
    }

    func testConnectionLimitPerAddress() async throws {
        let listener = try await start(RecordingBackend(), maxPerAddress: 2)
        let first = try connect(listener)
        let second = try connect(listener)
        let third = try TestClient(port: listener.localAddress!.port!)
        XCTAssertEqual(third.code(), "421 4.7.0")
        _ = (first, second)
        await listener.shutdown(grace: .seconds(1))
    }

    func testShutdownLetsAMessageInFlightFinish() async throws {
        let backend = RecordingBackend(deliveryDelay: .milliseconds(300))
        let listener = try await start(backend)
        let idle = try connect(listener)
        let busy = try connect(listener)
        busy.send("EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        _ = busy.reply(); _ = busy.code(); _ = busy.code()
        XCTAssertEqual(busy.code(), "354")
        busy.send("Subject: late\r\n\r\nhello\r\n")
        let shutdown = Task { await listener.shutdown(grace: .seconds(5)) }
        XCTAssertEqual(idle.code(), "421 4.3.2", "idle sessions are told at once")
        try await Task.sleep(for: .milliseconds(100))
        busy.send(".\r\n")
        XCTAssertEqual(busy.code(), "250 2.0.0", "the message in flight is accepted")
        XCTAssertEqual(busy.code(), "421 4.3.2")
        await shutdown.value
        XCTAssertEqual(backend.messages.count, 1)
    }
}

import FacteurIdentity

/// Submission over loopback with the real Authenticator (PLAIN and LOGIN).
final class SMTPSubmissionListenerTests: XCTestCase {
    final class SubmissionBackend: SMTPBackend {
        let inner = RecordingBackend()
        func checkRecipient(_ mailbox: SMTPMailbox, declaredSize: Int?, account: String?) async -> RecipientVerdict {
            await inner.checkRecipient(mailbox, declaredSize: declaredSize, account: account)
        }
        func checkSender(_ sender: SMTPMailbox?, account: String) async -> SenderVerdict {
            sender?.description == account ? .allowed : .notOwned
        }
        func deliver(_ transaction: SMTPTransaction, message: MessageData) async -> DeliveryVerdict {
            await inner.deliver(transaction, message: message)
        }
    }

    func testAuthPlainAndLoginOverLoopback() async throws {
        let hasher = PasswordHasher(parameters: ScryptParameters(logN: 10, r: 8, p: 1))
        let credentials = try Credentials.make(password: "correct horse", hasher: hasher)
        let authenticator = Authenticator(configuration: .init(hasher: hasher), lookup: { name in
            name == "alice@example.org" ? credentials : nil
        })
        let backend = SubmissionBackend()
        let directory = NSTemporaryDirectory()
        let session = SMTPSessionConfiguration(hostname: "mx.example.org", tlsAvailable: false, mode: .submission,
                                               allowPlaintextAuthWithoutTLS: true)
        let listener = try await SMTPListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, session: session, spoolDirectory: directory),
            backend: backend, sslContext: nil, group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"),
            authenticator: authenticator)
        let port = listener.localAddress!.port!

        let bad = try TestClient(port: port)
        _ = bad.code()
        bad.send("EHLO c\r\n")
        XCTAssertTrue(bad.reply().contains("250-AUTH SCRAM-SHA-256 PLAIN LOGIN"))
        bad.send("AUTH PLAIN \(Data("\0alice@example.org\0wrong".utf8).base64EncodedString())\r\n")
        XCTAssertEqual(bad.code(), "535 5.7.8")
        bad.send("MAIL FROM:<alice@example.org>\r\n")
        XCTAssertEqual(bad.code(), "530 5.7.0")

        let client = try TestClient(port: port)
        _ = client.code()
        client.send("EHLO c\r\nAUTH LOGIN\r\n")
        _ = client.reply()
        XCTAssertEqual(client.reply(), ["334 VXNlcm5hbWU6"], "Username:")
        client.send(Data("alice@example.org".utf8).base64EncodedString() + "\r\n")
        XCTAssertEqual(client.reply(), ["334 UGFzc3dvcmQ6"], "Password:")
        client.send(Data("correct horse".utf8).base64EncodedString() + "\r\n")
        XCTAssertEqual(client.code(), "235 2.7.0")
        client.send("MAIL FROM:<bob@example.org>\r\n")
        XCTAssertEqual(client.code(), "553 5.7.1")
        client.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        XCTAssertEqual(client.code(), "250 2.1.0")
        XCTAssertEqual(client.code(), "250 2.1.5")
        XCTAssertEqual(client.code(), "354")
        client.send("Subject: hi\r\n\r\nhello\r\n.\r\n")
        XCTAssertEqual(client.code(), "250 2.0.0")
        XCTAssertEqual(backend.inner.stored.withLockedValue { $0.first?.0.authenticatedAccount }, "alice@example.org")

        let cancel = try TestClient(port: port)
        _ = cancel.code()
        cancel.send("EHLO c\r\nAUTH LOGIN\r\n")
        _ = cancel.reply(); _ = cancel.reply()
        cancel.send("*\r\n")
        XCTAssertEqual(cancel.code(), "501 5.0.0")
        cancel.send("NOOP\r\n")
        XCTAssertEqual(cancel.code(), "250 2.0.0")
        await listener.shutdown(grace: .seconds(1))
    }
}
