import FacteurIdentity
@testable import FacteurIMAP
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

/// The listener on loopback with a real socket: greeting, literals with continuation requests,
/// IDLE pushed by a delivery, LOGOUT.
final class IMAPListenerTests: IMAPStoreTestCase {
    func testLoopbackSessionWithIdlePush() async throws {
        let store = self.store!
        let listener = try await IMAPListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, hostname: "mail.example.org"),
            store: store, authenticator: runner.authenticator, sslContext: nil,
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        let port = try XCTUnwrap(listener.localAddress?.port)
        let client = try LineClient(port: port)
        XCTAssertTrue(client.readLine()?.hasPrefix("* OK [CAPABILITY IMAP4rev1 IMAP4rev2") == true)
        client.send("a1 LOGIN {17}\r\n")
        XCTAssertEqual(client.readLine(), "+ Ready for literal data")
        client.send("alice@example.org secret\r\n")
        XCTAssertTrue(client.readLine()?.hasPrefix("a1 OK [CAPABILITY") == true)
        client.send("a2 SELECT INBOX\r\n")
        XCTAssertEqual(client.readUntil(tag: "a2").last, "a2 OK [READ-WRITE] SELECT completed")
        client.send("a3 IDLE\r\n")
        XCTAssertEqual(client.readLine(), "+ idling")
        _ = try await deliver(Self.simple)
        XCTAssertEqual(client.readLine(), "* 1 EXISTS")
        client.send("DONE\r\n")
        XCTAssertEqual(client.readLine(), "a3 OK IDLE terminated")
        client.send("a4 FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (Subject)])\r\n")
        XCTAssertEqual(client.readUntil(tag: "a4"),
                       ["* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {18}", "Subject: Hello", "", ")", "a4 OK FETCH completed"])
        client.send("a5 LOGOUT\r\n")
        XCTAssertEqual(client.readUntil(tag: "a5"), ["* BYE Logging out", "a5 OK LOGOUT completed"])
        XCTAssertNil(client.readLine())
        await listener.shutdown(grace: .seconds(1))
    }

    func testHugeLiteralIsRefusedOverTheWire() async throws {
        var limits = IMAPLimits()
        limits.maxLiteralSize = 100
        let listener = try await IMAPListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, hostname: "mail.example.org", limits: limits),
            store: store, authenticator: runner.authenticator, sslContext: nil,
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        let client = try LineClient(port: try XCTUnwrap(listener.localAddress?.port))
        _ = client.readLine()
        client.send("a1 LOGIN {1000000}\r\n")
        XCTAssertEqual(client.readLine(), "a1 NO [TOOBIG] Literal too large")
        client.send("a2 NOOP\r\n")
        XCTAssertEqual(client.readLine(), "a2 OK NOOP completed")
        await listener.shutdown(grace: .seconds(1))
    }
}

/// A blocking loopback client reading CRLF lines.
final class LineClient: LoopbackLineClient {
    func readUntil(tag: String) -> [String] {
        var lines: [String] = []
        while let line = readLine() {
            lines.append(line)
            if line.hasPrefix(tag + " ") { break }
        }
        return lines
    }
}
