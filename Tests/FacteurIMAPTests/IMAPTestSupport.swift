// Drives an IMAP session without sockets: bytes in through the framer and parser, the runner
// against a SQLite store in a temporary directory, responses collected as a transcript.

import FacteurIdentity
@testable import FacteurIMAP
import FacteurStore
import Foundation
import NIOConcurrencyHelpers
import XCTest

let cheapHasher = PasswordHasher(parameters: ScryptParameters(logN: 10, r: 8, p: 1))

final class Transcript: IMAPOutput {
    private let bytes = NIOLockedValueBox<[UInt8]>([])
    func write(_ data: [UInt8]) async { bytes.withLockedValue { $0.append(contentsOf: data) } }
    func take() -> String {
        bytes.withLockedValue { b in
            defer { b.removeAll() }
            return String(decoding: b, as: UTF8.self)
        }
    }
}

/// One client connection to an in-memory server.
struct TestConnection {
    var session: IMAPSession
    let runner: IMAPCommandRunner
    var framer = IMAPCommandFramer()
    let parser = IMAPParser()
    let output = Transcript()
    var next = IMAPNext.command
    var idleTag: String?

    init(runner: IMAPCommandRunner, tls: Bool = true) {
        self.runner = runner
        session = IMAPSession(configuration: IMAPSessionConfiguration(hostname: "mail.example.org", tlsAvailable: true,
                                                                      implicitTLS: tls),
                              clientAddress: "192.0.2.1")
    }

    /// Sends client bytes and returns everything the server wrote meanwhile.
    mutating func send(_ text: String) async -> String {
        framer.append(Array(text.utf8))
        loop: while true {
            switch next {
            case .authenticationLine, .idle:
                guard case .line(let line) = framer.nextLine() else { break loop }
                if next == .idle {
                    next = await runner.endIdle(tag: idleTag ?? "*", line: line, session: &session, output: output)
                } else {
                    next = await runner.continueAuthentication(line: line, session: &session, output: output)
                }
            case .close:
                break loop
            case .command, .startTLS, .startCompression:
                switch framer.next() {
                case .needMoreData: break loop
                case .continuationRequest: await output.write(Array("+ Ready for literal data\r\n".utf8))
                case .command(let bytes):
                    switch parser.parse(bytes) {
                    case .command(let command):
                        if command.kind == .idle { idleTag = command.tag }
                        next = await runner.run(command, session: &session, output: output)
                        if next == .startTLS { session.didStartTLS(); next = .command }
                        // The transcript stays uncompressed: DEFLATE itself is tested end to end.
                        if next == .startCompression { next = .command }
                    case .bad(let tag, let message):
                        next = await runner.rejectSyntax(tag: tag, message: message, session: &session, output: output)
                    case .incomplete:
                        next = await runner.rejectSyntax(tag: nil, message: "incomplete", session: &session, output: output)
                    }
                case .literalTooLarge(let tag, _):
                    await output.write(Array("\(tag ?? "*") NO [TOOBIG] Literal too large\r\n".utf8))
                case .lineTooLong(let tag), .commandTooLarge(let tag):
                    await output.write(Array("\(tag ?? "*") BAD Command too long\r\n".utf8))
                case .fatal:
                    next = .close
                }
            }
        }
        return output.take()
    }

    /// Pretends the store's feed delivered changes while idling.
    mutating func idleUpdate() async -> String {
        await runner.idleUpdate(session: &session, output: output)
        return output.take()
    }
}

class IMAPStoreTestCase: XCTestCase {
    var directory = ""
    var store: SQLiteMailStore!
    var runner: IMAPCommandRunner!
    var account: AccountRecord!

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "facteur-imap-test-" + UUID().uuidString
        store = try SQLiteMailStore(directory: directory)
        try await store.addDomain("example.org")
        let credentials = try Credentials.make(password: "secret", hasher: cheapHasher, scramIterations: 4096)
        account = try await store.addAccount(address: "alice@example.org", credentials: credentials, quota: .unlimited, isAdmin: false)
        let store = self.store!
        let authenticator = Authenticator(configuration: .init(hasher: cheapHasher, scramIterations: 4096),
                                          lookup: { try await store.credentials(address: $0) })
        runner = IMAPCommandRunner(store: store, authenticator: authenticator)
    }

    override func tearDown() async throws {
        try? store?.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A connection whose change inbox is fed by the store (as the NIO handler does).
    func connect(tls: Bool = true) -> TestConnection {
        let connection = TestConnection(runner: runner, tls: tls)
        connection.session.changeInbox.attach(to: store)
        return connection
    }

    func loggedIn(tls: Bool = true) async -> TestConnection {
        var c = connect(tls: tls)
        let reply = await c.send("a0 LOGIN alice@example.org secret\r\n")
        XCTAssertTrue(reply.hasPrefix("a0 OK"), reply)
        return c
    }

    @discardableResult
    func deliver(_ text: String, to mailbox: String = "INBOX", flags: MessageFlags = [], prefix: String = "") async throws -> UInt32 {
        let result = try await store.deliver(Delivery(message: .memory(Array(text.utf8)), recipients: [
            DeliveryRecipient(accountID: account.id, mailbox: mailbox, headerPrefix: Array(prefix.utf8), flags: flags),
        ], internalDate: Date(timeIntervalSince1970: 1_700_000_000)))
        guard case .stored(_, let uid) = result.outcomes.first else { throw StoreError.invalid("not stored") }
        return uid
    }

    /// Waits until the change feed has reached the connection's inbox.
    func settle() async { try? await Task.sleep(for: .milliseconds(100)) }

    static let simple = "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: Hello\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <1@example.net>\r\n\r\nHi Alice,\r\nsee you.\r\n"
    static let multipart = "From: carol@example.net\r\nSubject: Report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report.\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b1--\r\n"
}
