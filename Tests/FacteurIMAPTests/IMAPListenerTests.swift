import FacteurIdentity
@testable import FacteurIMAP
import FacteurStore
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
final class LineClient {
    let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    func readLine() -> String? {
        while true {
            if let lf = pending.firstIndex(of: 0x0A) {
                var line = Array(pending[..<lf])
                pending.removeFirst(lf + 1)
                if line.last == 0x0D { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            pending.append(contentsOf: buffer[..<n])
        }
    }

    func readUntil(tag: String) -> [String] {
        var lines: [String] = []
        while let line = readLine() {
            lines.append(line)
            if line.hasPrefix(tag + " ") { break }
        }
        return lines
    }
}
