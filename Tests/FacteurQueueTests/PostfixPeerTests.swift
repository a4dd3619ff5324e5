// A real peer: Postfix's smtp-sink on loopback (Debian's postfix package), reached through the
// delivery worker's MX routing. Skipped when smtp-sink is not installed.

import FacteurDNS
import Foundation
import XCTest
@testable import FacteurQueue

final class PostfixPeerTests: XCTestCase {
    static let sinkPath = "/usr/sbin/smtp-sink"

    /// Starts smtp-sink on a free loopback port; messages are dumped into `dump`.
    func startSink(dump: String, extraArguments: [String] = []) throws -> (Process, Int) {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: Self.sinkPath), "smtp-sink not installed")
        for _ in 0 ..< 5 {
            let port = Int.random(in: 30000 ..< 60000)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.sinkPath)
            process.arguments = ["-u", "root", "-d", dump + "/%M%S."] + extraArguments + ["127.0.0.1:\(port)", "100"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Wait until it accepts connections.
            for _ in 0 ..< 50 {
                usleep(50_000)
                if !process.isRunning { break }
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                let ok = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                } == 0
                close(fd)
                if ok { return (process, port) }
            }
            kill(process.processIdentifier, SIGKILL)
        }
        throw XCTSkip("smtp-sink did not start")
    }

    func dumped(_ dump: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dump)) ?? []).compactMap {
            try? String(contentsOfFile: dump + "/" + $0, encoding: .utf8)
        }
    }

    func testDeliveryToSmtpSinkThroughMX() async throws {
        let directory = temporaryDirectory("postfix")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let dump = directory + "/dump"
        try FileManager.default.createDirectory(atPath: dump, withIntermediateDirectories: true)
        let (sink, port) = try startSink(dump: dump)
        defer { kill(sink.processIdentifier, SIGKILL); sink.waitUntilExit() }

        let store = try SQLiteMailStore(directory: directory + "/store")
        defer { try? store.close() }
        var resolver = StaticResolver()
        try resolver.add(zone: """
            postfix.example. 300 IN MX 10 sink.postfix.example.
            sink.postfix.example. 300 IN A 127.0.0.1
            """)
        let service = QueueDeliveryService(store: store, resolver: resolver,
                                           configuration: QueueConfiguration(hostname: "out.example.net", mxPort: port,
                                                                             ipv6Enabled: false, timeouts: .uniform(.seconds(10))))
        let message = crlf("From: a@example.net\nTo: x@postfix.example\nSubject: to postfix\n\n.dotted line\nbody\n")
        for i in 0 ..< 3 {
            _ = try await service.enqueue(QueueSubmission(sender: "a@example.net",
                                                          recipients: [QueueRecipientInput(address: "x\(i)@postfix.example"),
                                                                       QueueRecipientInput(address: "y\(i)@postfix.example")],
                                                          message: .memory(message)))
        }
        try await service.runOnce()
        let left = try await store.queuedMessages()
        XCTAssertTrue(left.isEmpty, "\(left.flatMap(\.recipients).map { $0.lastReply ?? "" })")
        var files: [String] = []
        for _ in 0 ..< 40 {
            files = dumped(dump)
            if files.count >= 3 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertEqual(files.count, 3)
        for file in files {
            XCTAssertTrue(file.contains("Subject: to postfix"))
            XCTAssertTrue(file.contains("\n.dotted line"), "dot-stuffing undone by a real server")
        }
    }

    func testSmtpSinkRCPTRejectionIsPerRecipient() async throws {
        let directory = temporaryDirectory("postfix-bounce")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let dump = directory + "/dump"
        try FileManager.default.createDirectory(atPath: dump, withIntermediateDirectories: true)
        // -f rcpt: hard-reject RCPT with the -B reply (and no PIPELINING: the one-command-at-a-time path).
        let (sink, port) = try startSink(dump: dump, extraArguments: ["-f", "rcpt", "-B", "550 5.1.1 no such user here"])
        defer { kill(sink.processIdentifier, SIGKILL); sink.waitUntilExit() }
        let client = SMTPClientConfiguration(heloName: "out.example.net", timeouts: .uniform(.seconds(10)))
        let connection = try await SMTPClientConnection.open(hostname: "sink", address: "127.0.0.1", port: port, configuration: client)
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                                message: crlf("Subject: x\n\nbody\n"))
        XCTAssertEqual(results.first?.reply.code, 550)
        XCTAssertEqual(results.first?.reply.enhancedCode, "5.1.1")
        await connection.quit()
    }
}
