@testable import FacteurSMTP
import FacteurNet
import FacteurTestSupport
import Foundation
import Logging
import NIOPosix
import XCTest

final class SMTPFuzzTests: XCTestCase {
    static let seeds = ["EHLO a.example", "HELO x", "MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME SMTPUTF8",
                        "RCPT TO:<\"q\\\"x\"@[192.0.2.1]> NOTIFY=NEVER", "RCPT TO:<Postmaster>", "BDAT 10 LAST", "DATA",
                        "RSET", "VRFY x", "AUTH PLAIN =", "AUTH LOGIN", "AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9eA==", "STARTTLS", "MAIL FROM:<@a,@b:c@d>", "NOOP"]

    func testRandomAndMutatedCommandLinesNeverCrash() {
        fuzz(mode: .inbound)
        fuzz(mode: .submission)
    }

    private func fuzz(mode: SMTPMode) {
        var rng = SeededRandom(seed: 0xFAC7E0)
        let configuration = SMTPSessionConfiguration(hostname: "mx", maxErrors: .max, mode: mode, allowPlaintextAuthWithoutTLS: true)
        var session = SMTPSession(configuration: configuration, clientAddress: "127.0.0.1")
        _ = session.start()
        var parsedOK = 0
        for round in 0..<60_000 {
            var line: [UInt8]
            if round % 3 == 0 {
                line = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                line = Array(Self.seeds[Int.random(in: 0..<Self.seeds.count, using: &rng)].utf8)
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !line.isEmpty {
                    let index = Int.random(in: 0..<line.count, using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: line[index] = UInt8.random(in: 0...255, using: &rng)
                    case 1: line.remove(at: index)
                    case 2: line.insert(Array("<>@:=\" .\\[]".utf8).randomElement(using: &rng)!, at: index)
                    default: line = Array(line[..<index])
                    }
                }
            }
            let parsed = SMTPCommandParser.parse(line)
            if case .success = parsed { parsedOK += 1 }
            for action in session.receive(parsed) {
                // Keep the session moving through every state.
                switch action {
                case .checkRecipient: _ = session.recipientChecked(Bool.random(using: &rng) ? .accepted([]) : .unknownUser)
                case .receiveData: _ = session.messageReceived(ReceivedMessage(size: 1))
                case .receiveChunk: _ = session.chunkReceived(ReceivedMessage(size: 1))
                case .deliver(let transaction): _ = session.deliveryFinished(.stored, transactionID: transaction.id)
                case .startTLS: _ = session.tlsEstablished()
                case .authenticate: _ = session.authenticationFinished(.success(account: "a@b"))
                case .checkSender: _ = session.senderChecked(.allowed)
                case .close: session = SMTPSession(configuration: configuration, clientAddress: "127.0.0.1")
                case .reply: break
                }
            }
        }
        XCTAssertGreaterThan(parsedOK, 1000, "the mutations still reach the parser's deeper paths")
    }
}

final class SMTPSTARTTLSTests: XCTestCase {
    func testCommandsPipelinedWithSTARTTLSAreDiscarded() async throws {
        let directory = NSTemporaryDirectory() + "facteur-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = CertificateFiles(certificatePath: "\(directory)/cert.pem", keyPath: "\(directory)/key.pem")
        XCTAssertTrue(try TLSProvider.ensureSelfSigned(files, hostnames: ["localhost"]))
        XCTAssertFalse(try TLSProvider.ensureSelfSigned(files, hostnames: ["localhost"]), "kept on the next start")
        let tls = try TLSProvider(defaultCertificate: files)
        let listener = try await SMTPListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, session: .init(hostname: "mx.example.org"), spoolDirectory: directory),
            backend: RecordingBackend(), sslContext: tls.context, group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        let client = try TestClient(port: listener.localAddress!.port!)
        XCTAssertEqual(client.code(), "220")
        client.send("EHLO c\r\n")
        XCTAssertTrue(client.reply().contains("250-STARTTLS"))
        client.send("STARTTLS\r\nNOOP\r\nMAIL FROM:<a@example.net>\r\n")
        XCTAssertEqual(client.code(), "220 2.0.0")
        XCTAssertTrue(client.isSilent(for: 0.3), "nothing pipelined after STARTTLS was executed")
        await listener.shutdown(grace: .seconds(1))
    }
}
