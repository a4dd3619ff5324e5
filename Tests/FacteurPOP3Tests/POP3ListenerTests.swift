// The POP3 server on a loopback socket with a real SQLiteMailStore: a blocking client speaks the
// protocol byte for byte (RFC 1939 transcripts), checks exact octets, UPDATE semantics, the
// [IN-USE] lock, pipelining, streaming of a large file blob, and hostile input.

import FacteurIdentity
import FacteurNet
import FacteurStore
import FacteurTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import FacteurPOP3

/// A blocking POP3 client for tests.
final class POP3TestClient: LoopbackLineClient {
    init(port: Int) throws { try super.init(port: port, timeout: 10) }

    func line() -> String { readLineBytes().map { String(decoding: $0, as: UTF8.self) } ?? "EOF" }

    /// The lines of a multi-line body after its status line, unstuffed, joined with CRLF as sent.
    func multilineBody() -> [UInt8]? {
        var body: [UInt8] = []
        while let line = readLineBytes() {
            if line == [UInt8(ascii: ".")] { return body }
            body += line.first == UInt8(ascii: ".") ? Array(line.dropFirst()) : line
            body += [13, 10]
        }
        return nil
    }

    func multilineLines() -> [String] {
        guard let body = multilineBody() else { return ["EOF"] }
        return String(decoding: body, as: UTF8.self).components(separatedBy: "\r\n").dropLast()
    }

    /// Sends a command, returns the status line.
    func command(_ text: String) -> String {
        send(text + "\r\n")
        return line()
    }
}

final class POP3ListenerTests: XCTestCase {
    var directory = ""
    var store: SQLiteMailStore!
    var account: AccountRecord!
    let cheapHasher = PasswordHasher(parameters: ScryptParameters(logN: 10, r: 8, p: 1))

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "facteur-pop3-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteMailStore(directory: directory)
        try await store.addDomain("example.org")
        let credentials = try Credentials.make(password: "secret pass", hasher: cheapHasher, scramIterations: 4096)
        account = try await store.addAccount(address: "alice@example.org", credentials: credentials, quota: .unlimited, isAdmin: false)
    }

    override func tearDown() async throws {
        try? store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func deliver(_ text: String) async throws {
        try await deliver(Array(text.utf8))
    }

    private func deliver(_ bytes: [UInt8]) async throws {
        _ = try await store.deliver(Delivery(message: .memory(bytes), recipients: [DeliveryRecipient(accountID: account.id)]))
    }

    private func start(limits: POP3ServerLimits = POP3ServerLimits(), maxErrors: Int = 20,
                       locks: MaildropLocks = MaildropLocks(), backend: (any POP3Backend)? = nil) async throws -> POP3Listener {
        let store = self.store!
        let authenticator = Authenticator(configuration: .init(hasher: cheapHasher, scramIterations: 4096),
                                          lookup: { try await store.credentials(address: $0) })
        let session = POP3SessionConfiguration(hostname: "pop.example.org", tlsAvailable: false, maxErrors: maxErrors)
        return try await POP3Listener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, session: session, limits: limits),
            backend: backend ?? StorePOP3Backend(store: store, locks: locks, logger: Logger(label: "test")),
            authenticator: authenticator, sslContext: nil, group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
    }

    private func connect(_ listener: POP3Listener) throws -> POP3TestClient {
        let client = try POP3TestClient(port: listener.localAddress!.port!)
        XCTAssertEqual(client.line(), "+OK Facteur POP3 server ready")
        return client
    }

    private func login(_ client: POP3TestClient) -> String {
        XCTAssertEqual(client.command("USER alice@example.org"), "+OK Send your password")
        return client.command("PASS secret pass")
    }

    func testRetrieveDeleteQuitRoundTrip() async throws {
        let first = "Subject: one\r\n\r\n.starts with a dot\r\n..two dots\r\nend\r\n"
        let second = "Subject: two\r\n\r\nbody\r\n"
        try await deliver(first)
        try await deliver(second)
        let messages = try await store.messages(mailboxID: try await store.mailbox(accountID: account.id, name: "INBOX")!.id)
        let listener = try await start()
        let client = try connect(listener)
        XCTAssertEqual(login(client), "+OK Logged in, 2 messages (\(messages[0].size + messages[1].size) octets)")
        XCTAssertEqual(client.command("STAT"), "+OK 2 \(messages[0].size + messages[1].size)")
        XCTAssertTrue(client.command("LIST").hasPrefix("+OK 2 messages"))
        XCTAssertEqual(client.multilineLines(), ["1 \(messages[0].size)", "2 \(messages[1].size)"])
        XCTAssertEqual(client.command("UIDL"), "+OK")
        let uidl = client.multilineLines()
        XCTAssertEqual(uidl.count, 2)

        XCTAssertEqual(client.command("RETR 1"), "+OK \(messages[0].size) octets")
        let retrieved = try XCTUnwrap(client.multilineBody())
        let stored = try await store.messageBytes(messageID: messages[0].id)
        XCTAssertEqual(retrieved, stored, "RETR gives the stored bytes exactly")
        XCTAssertEqual(retrieved.count, Int(messages[0].size), "the announced octet count is exact")
        XCTAssertTrue(String(decoding: retrieved, as: UTF8.self).hasSuffix(first))

        XCTAssertEqual(client.command("TOP 1 1"), "+OK Top of message follows")
        let top = String(decoding: try XCTUnwrap(client.multilineBody()), as: UTF8.self)
        XCTAssertTrue(top.hasSuffix("Subject: one\r\n\r\n.starts with a dot\r\n"), top)

        let changes = store.changes()
        XCTAssertEqual(client.command("DELE 1"), "+OK Message 1 deleted")
        XCTAssertEqual(client.command("QUIT"), "+OK pop.example.org signing off (1 messages left)")
        XCTAssertEqual(client.line(), "EOF")
        let left = try await store.messages(mailboxID: messages[0].mailboxID)
        XCTAssertEqual(left.map(\.uid), [messages[1].uid])
        var iterator = changes.makeAsyncIterator()
        let change = await iterator.next()
        guard case .expunged(_, _, let uid, _) = change else { return XCTFail("\(String(describing: change))") }
        XCTAssertEqual(uid, messages[0].uid, "the expunge reaches other sessions through the change feed")

        // UIDL is the same in the next session for the message that is left.
        let again = try connect(listener)
        _ = login(again)
        XCTAssertEqual(again.command("UIDL 1"), "+OK 1 \(uidl[1].split(separator: " ")[1])")
        _ = again.command("QUIT")
        await listener.shutdown(grace: .seconds(1))
    }

    func testDroppedConnectionDeletesNothingAndReleasesTheLock() async throws {
        try await deliver("Subject: keep\r\n\r\nme\r\n")
        let listener = try await start()
        var client: POP3TestClient? = try connect(listener)
        XCTAssertTrue(login(client!).hasPrefix("+OK Logged in"))
        let second = try connect(listener)
        XCTAssertEqual(login(second), "-ERR [IN-USE] Maildrop already in use by another POP3 session")
        XCTAssertEqual(client!.command("DELE 1"), "+OK Message 1 deleted")
        client = nil  // dropped without QUIT
        try await Task.sleep(for: .milliseconds(200))
        let messages = try await store.messages(mailboxID: try await store.mailbox(accountID: account.id, name: "INBOX")!.id)
        XCTAssertEqual(messages.count, 1, "no UPDATE without QUIT")
        XCTAssertEqual(login(second), "+OK Logged in, 1 messages (\(messages[0].size) octets)", "the lock went with the connection")
        await listener.shutdown(grace: .seconds(1))
    }

    func testPipelinedCommandsAnswerInOrder() async throws {
        try await deliver("Subject: a\r\n\r\nA\r\n")
        try await deliver("Subject: b\r\n\r\nB\r\n")
        let listener = try await start()
        let client = try connect(listener)
        client.send("USER alice@example.org\r\nPASS secret pass\r\nSTAT\r\nRETR 2\r\nDELE 1\r\nRSET\r\nLIST 1\r\nNOOP\r\nQUIT\r\n")
        XCTAssertEqual(client.line(), "+OK Send your password")
        XCTAssertTrue(client.line().hasPrefix("+OK Logged in, 2 messages"))
        XCTAssertTrue(client.line().hasPrefix("+OK 2 "))
        XCTAssertTrue(client.line().hasSuffix(" octets"))
        XCTAssertTrue(String(decoding: client.multilineBody() ?? [], as: UTF8.self).hasSuffix("Subject: b\r\n\r\nB\r\n"))
        XCTAssertEqual(client.line(), "+OK Message 1 deleted")
        XCTAssertTrue(client.line().hasPrefix("+OK Maildrop has 2 messages"))
        XCTAssertTrue(client.line().hasPrefix("+OK 1 "))
        XCTAssertEqual(client.line(), "+OK")
        XCTAssertEqual(client.line(), "+OK pop.example.org signing off (2 messages left)")
        await listener.shutdown(grace: .seconds(1))
    }

    func testLargeMessageStreamsFromTheBlobFile() async throws {
        // Over the inline threshold: a file blob, streamed in chunks. Lines starting with "." on
        // chunk boundaries exercise the stuffing state across chunks.
        var message = Array("Subject: big\r\n\r\n".utf8)
        var line = 0
        while message.count < 3 * 1024 * 1024 {
            message += Array((line % 7 == 0 ? ".dot line \(line)\r\n" : "line \(line) " + String(repeating: "x", count: line % 120) + "\r\n").utf8)
            line += 1
        }
        try await deliver(message)
        var limits = POP3ServerLimits()
        limits.streamChunkSize = 4093  // odd size: boundaries fall everywhere
        let listener = try await start(limits: limits)
        let client = try connect(listener)
        _ = login(client)
        let record = try await store.messages(mailboxID: try await store.mailbox(accountID: account.id, name: "INBOX")!.id)[0]
        XCTAssertGreaterThan(record.size, 256 * 1024)
        XCTAssertEqual(client.command("RETR 1"), "+OK \(record.size) octets")
        let body = try XCTUnwrap(client.multilineBody())
        XCTAssertEqual(body.count, Int(record.size))
        XCTAssertEqual(Array(body.suffix(message.count)), message)
        XCTAssertEqual(client.command("TOP 1 2"), "+OK Top of message follows")
        XCTAssertTrue(String(decoding: client.multilineBody() ?? [], as: UTF8.self).hasSuffix("\r\n\r\n.dot line 0\r\nline 1 x\r\n"))
        XCTAssertEqual(client.command("NOOP"), "+OK")
        await listener.shutdown(grace: .seconds(1))
    }

    func testWrongPasswordThenSASLPlainWithInitialResponse() async throws {
        let listener = try await start()
        let client = try connect(listener)
        XCTAssertEqual(client.command("USER alice@example.org"), "+OK Send your password")
        XCTAssertEqual(client.command("PASS wrong"), "-ERR [AUTH] Authentication failed")
        let initial = Data("\0alice@example.org\0secret pass".utf8).base64EncodedString()
        XCTAssertEqual(client.command("AUTH PLAIN \(initial)"), "+OK Logged in, 0 messages (0 octets)")
        XCTAssertEqual(client.command("QUIT"), "+OK pop.example.org signing off (0 messages left)")
        await listener.shutdown(grace: .seconds(1))
    }

    func testSASLLoginWithChallenges() async throws {
        let listener = try await start()
        let client = try connect(listener)
        XCTAssertEqual(client.command("AUTH LOGIN"), "+ VXNlcm5hbWU6")
        XCTAssertEqual(client.command(Data("alice@example.org".utf8).base64EncodedString()), "+ UGFzc3dvcmQ6")
        XCTAssertEqual(client.command(Data("secret pass".utf8).base64EncodedString()), "+OK Logged in, 0 messages (0 octets)")
        await listener.shutdown(grace: .seconds(1))
    }

    func testPlaintextRefusedWhenLoopbackIsNotTrusted() async throws {
        var limits = POP3ServerLimits()
        limits.allowPlaintextOnLoopback = false
        let listener = try await start(limits: limits)
        let client = try connect(listener)
        XCTAssertEqual(client.command("USER alice@example.org"), "-ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS first")
        XCTAssertEqual(client.command("AUTH PLAIN"), "-ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS first")
        await listener.shutdown(grace: .seconds(1))
    }

    func testIdleTimeoutBeforeLogin() async throws {
        var limits = POP3ServerLimits()
        limits.idleTimeoutBeforeLogin = .milliseconds(200)
        let listener = try await start(limits: limits)
        let client = try connect(listener)
        XCTAssertEqual(client.line(), "-ERR Autologout; idle for too long")
        XCTAssertEqual(client.line(), "EOF")
        await listener.shutdown(grace: .seconds(1))
    }

    func testHostileInputNeverCrashes() async throws {
        try await deliver("Subject: x\r\n\r\ny\r\n")
        let listener = try await start(maxErrors: 1_000_000)
        var generator = SeededGenerator(seed: 42)
        let client = try connect(listener)
        _ = login(client)
        for _ in 0..<200 {
            var junk = (0..<Int.random(in: 1...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            junk.removeAll { $0 == 10 }
            client.send(junk + [13, 10])
            XCTAssertTrue(client.line().hasPrefix("-ERR"))
        }
        client.send(String(repeating: "A", count: 100_000) + "\r\n")
        XCTAssertEqual(client.line(), "-ERR Line too long")
        XCTAssertEqual(client.command("STAT").prefix(5), "+OK 1")
        await listener.shutdown(grace: .seconds(1))
    }

    func testShutdownSaysGoodbyeAndKeepsMessages() async throws {
        try await deliver("Subject: x\r\n\r\ny\r\n")
        let listener = try await start()
        let client = try connect(listener)
        _ = login(client)
        _ = client.command("DELE 1")
        await listener.shutdown(grace: .seconds(1))
        XCTAssertEqual(client.line(), "-ERR [SYS/TEMP] Server shutting down, try again later")
        let count = try await store.messages(mailboxID: try await store.mailbox(accountID: account.id, name: "INBOX")!.id).count
        XCTAssertEqual(count, 1)
    }

    /// Every way a message's bytes can reach RETR: read on the event loop, on the thread pool, and
    /// through a backend that only has the async `content(of:)`.
    private func backends() -> [(String, any POP3Backend)] {
        let store = self.store!
        let locks = MaildropLocks()
        return [("async only", AsyncOnlyBackend(StorePOP3Backend(store: store, locks: locks, logger: Logger(label: "test")))),
                ("on the thread pool", StorePOP3Backend(store: store, locks: locks, logger: Logger(label: "test"), maxOnLoopReadSize: 0)),
                ("on the event loop", StorePOP3Backend(store: store, locks: locks, logger: Logger(label: "test")))]
    }

    func testPipelinedRetrievalsByAClientThatDoesNotReadAllArriveIntact() async throws {
        // ~20 KB with dotted lines; 300 pipelined RETRs are 6 MB of answers, far more than socket
        // buffers hold: the server must stall on writability and resume, losing nothing.
        var text = "Subject: pipelined\r\n\r\n"
        for line in 0..<600 { text += (line % 5 == 0 ? ".dotted \(line)" : "line \(line) of the message body") + "\r\n" }
        try await deliver(text)
        let stored = try await store.messageBytes(messageID: try await store.messages(
            mailboxID: try await store.mailbox(accountID: account.id, name: "INBOX")!.id)[0].id)
        for (name, backend) in backends() {
            let listener = try await start(backend: backend)
            let client = try connect(listener)
            XCTAssertTrue(login(client).hasPrefix("+OK Logged in"), name)
            client.send(String(repeating: "RETR 1\r\n", count: 300) + "NOOP\r\n")
            try await Task.sleep(for: .milliseconds(300))
            for index in 0..<300 {
                XCTAssertEqual(client.line(), "+OK \(stored.count) octets", "\(name): response \(index)")
                XCTAssertEqual(client.multilineBody(), stored, "\(name): body \(index)")
            }
            XCTAssertEqual(client.line(), "+OK", name)
            XCTAssertEqual(client.command("QUIT"), "+OK pop.example.org signing off (1 messages left)", name)
            await listener.shutdown(grace: .seconds(1))
        }
    }

    func testEveryReadPathServesTheSameBytesAndMissingMessagesFailCleanly() async throws {
        try await deliver("Subject: one\r\n\r\n.dot\r\nend\r\n")
        let mailbox = try await store.mailbox(accountID: account.id, name: "INBOX")!.id
        let record = try await store.messages(mailboxID: mailbox)[0]
        let stored = try await store.messageBytes(messageID: record.id)
        let reader = try store.makeMessageReader()
        let read = try reader.content(messageID: record.id)
        guard case .inline(let body) = read.body else { return XCTFail("a small message is inline") }
        XCTAssertEqual(read.prefix + body, stored, "the read-only connection reads what the store holds")
        XCTAssertThrowsError(try reader.content(messageID: record.id + 1000))
        XCTAssertThrowsError(try store.messageContentBlocking(messageID: record.id + 1000))

        for (name, backend) in backends() {
            let listener = try await start(backend: backend)
            let client = try connect(listener)
            _ = login(client)
            XCTAssertEqual(client.command("RETR 1"), "+OK \(stored.count) octets", name)
            XCTAssertEqual(client.multilineBody(), stored, name)
            XCTAssertEqual(client.command("TOP 1 0"), "+OK Top of message follows", name)
            XCTAssertTrue(String(decoding: client.multilineBody() ?? [], as: UTF8.self).hasSuffix("Subject: one\r\n\r\n"), name)
            // Removed behind the session's back (another client's IMAP EXPUNGE): -ERR, and the
            // session goes on. Last backend: the event loop's read fails, then the thread pool's.
            if name == "on the event loop" {
                try await store.expunge(mailboxID: mailbox, uids: [record.uid])
                XCTAssertEqual(client.command("RETR 1"), "-ERR [SYS/TEMP] Message \(record.id) cannot be read now", name)
                XCTAssertEqual(client.command("NOOP"), "+OK", name)
            }
            _ = client.command("QUIT")
            await listener.shutdown(grace: .seconds(1))
        }
    }
}

/// A backend with only the async read: the adapter's default path (a task per RETR).
struct AsyncOnlyBackend: POP3Backend {
    let base: StorePOP3Backend
    init(_ base: StorePOP3Backend) { self.base = base }
    func openMaildrop(account: String) async -> MaildropOpening { await base.openMaildrop(account: account) }
    func closeMaildrop(_ maildrop: Maildrop) { base.closeMaildrop(maildrop) }
    func content(of message: MaildropMessage) async throws -> MessageContent { try await base.content(of: message) }
    func expunge(_ maildrop: Maildrop, uids: [UInt32]) async -> Bool { await base.expunge(maildrop, uids: uids) }
    func storeUpgradedCredentials(address: String, _ credentials: StoredCredentials) async {
        await base.storeUpgradedCredentials(address: address, credentials)
    }
}
