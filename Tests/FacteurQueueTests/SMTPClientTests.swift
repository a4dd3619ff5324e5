// The SMTP client: reply parsing, dot-stuffing, and whole sessions against Facteur's own SMTP
// server (PIPELINING, CHUNKING, STARTTLS) and scripted servers (HELO fallback, no PIPELINING,
// SMTPUTF8 missing, SIZE, timeouts, a connection dropped mid-DATA, garbage).

import FacteurSMTP
import Foundation
import NIOCore
import XCTest
@testable import FacteurQueue

final class SMTPReplyParserTests: XCTestCase {
    func testMultilineReplyAndEnhancedCode() throws {
        var parser = SMTPReplyParser()
        XCTAssertNil(try parser.feed(Array("250-mx.example.org hello".utf8)))
        XCTAssertNil(try parser.feed(Array("250-PIPELINING".utf8)))
        let reply = try parser.feed(Array("250 SIZE 1000".utf8))
        XCTAssertEqual(reply?.code, 250)
        XCTAssertEqual(reply?.lines, ["mx.example.org hello", "PIPELINING", "SIZE 1000"])
        let ext = SMTPServerExtensions(ehloReply: reply!)
        XCTAssertTrue(ext.has("pipelining"))
        XCTAssertEqual(ext.maximumSize, 1000)
        let rejection = try parser.feed(Array("550 5.1.1 no such user".utf8))
        XCTAssertEqual(rejection?.enhancedCode, "5.1.1")
        XCTAssertTrue(rejection?.isPermanent == true)
        XCTAssertEqual(rejection?.description, "550 5.1.1 no such user")
        let bare = try parser.feed(Array("354".utf8))
        XCTAssertEqual(bare?.code, 354)
        XCTAssertNil(bare?.enhancedCode)
    }

    func testGarbageIsAnError() {
        var parser = SMTPReplyParser()
        XCTAssertThrowsError(try parser.feed(Array("hello there".utf8)))
        XCTAssertThrowsError(try parser.feed(Array("999 nope".utf8)))
        XCTAssertThrowsError(try parser.feed(Array("250x".utf8)))
        var mixed = SMTPReplyParser()
        XCTAssertNil(try mixed.feed(Array("250-a".utf8)))
        XCTAssertThrowsError(try mixed.feed(Array("550 b".utf8)), "a code change inside a reply")
        var long = SMTPReplyParser()
        XCTAssertThrowsError(try long.feed(Array(repeating: UInt8(ascii: "2"), count: 5000)))
        var many = SMTPReplyParser()
        XCTAssertThrowsError(try (0 ... SMTPReplyParser.maxLines).forEach { _ in _ = try many.feed(Array("250-x".utf8)) },
                             "endless continuation lines are cut off")
    }

    func testDotStuffing() {
        XCTAssertEqual(SMTPClientConnection.dotStuffed(crlf(".a\n..b\nc.\n.\n")), crlf("..a\n...b\nc.\n..\n"))
        XCTAssertEqual(SMTPClientConnection.dotStuffed(Array("no final newline".utf8)), crlf("no final newline\n"))
    }

    func testRetryScheduleDoublesUpToTheCeiling() {
        let schedule = RetrySchedule(first: 60, factor: 2, maximum: 600)
        XCTAssertEqual(schedule.delay(afterAttempts: 1), 60)
        XCTAssertEqual(schedule.delay(afterAttempts: 2), 120)
        XCTAssertEqual(schedule.delay(afterAttempts: 4), 480)
        XCTAssertEqual(schedule.delay(afterAttempts: 5), 600)
        XCTAssertEqual(schedule.delay(afterAttempts: 10_000), 600, "no overflow")
    }
}

final class SMTPClientSessionTests: XCTestCase {
    var directory = ""
    override func setUp() { directory = temporaryDirectory("smtp-client") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    let config = SMTPClientConfiguration(heloName: "out.example.net", timeouts: .uniform(.seconds(5)))
    let message = crlf("From: a@example.net\nTo: b@example.org\nSubject: hi\n\n.leading dot\nbody\n")

    func testFacteurServerWithPipeliningChunkingAndPerRecipientReplies() async throws {
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory)
        let connection = try await SMTPClientConnection.open(hostname: "mx.example.org", address: "127.0.0.1",
                                                             port: listener.localAddress!.port!, configuration: config)
        let ext = await connection.extensions
        XCTAssertTrue(ext.has("PIPELINING") && ext.has("CHUNKING"))
        let envelope = SMTPClientEnvelope(sender: "a@example.net", recipients: [
            .init(address: "b@example.org"), .init(address: "nobody@example.org"), .init(address: "full@example.org")])
        let results = try await connection.send(envelope, message: message)
        XCTAssertEqual(results.map(\.reply.code), [250, 550, 452])
        XCTAssertEqual(results[1].reply.enhancedCode, "5.1.1")
        XCTAssertEqual(backend.count, 1)
        XCTAssertEqual(backend.last?.1, message, "BDAT carries the bytes unchanged")
        XCTAssertEqual(backend.last?.0.recipients.map(\.mailbox.description), ["b@example.org"])

        // Reuse: a second message on the same connection.
        let second = try await connection.send(SMTPClientEnvelope(sender: "", recipients: [.init(address: "c@example.org")]),
                                               message: message)
        XCTAssertEqual(second.map(\.reply.code), [250])
        XCTAssertEqual(backend.count, 2)
        XCTAssertNil(backend.last?.0.sender, "null reverse-path")
        await connection.quit()
        await listener.shutdown(grace: .seconds(1))
    }

    func testSTARTTLSWithFacteurServer() async throws {
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory, tls: true)
        let connection = try await SMTPClientConnection.open(hostname: "localhost", address: "127.0.0.1",
                                                             port: listener.localAddress!.port!, configuration: config)
        let tls = await connection.tlsActive
        XCTAssertTrue(tls, "opportunistic STARTTLS with an unverified certificate")
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                                message: message)
        XCTAssertEqual(results.map(\.reply.code), [250])
        XCTAssertEqual(backend.last?.0.receivedProtocol.hasSuffix("S"), true, "the server saw TLS")
        await connection.quit()
        await listener.shutdown(grace: .seconds(1))
    }

    func testWithoutPipeliningOrChunkingUsesDataWithDotStuffing() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript(ehlo: ["8BITMIME"]))
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port, configuration: config)
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")],
                                                                   has8BitData: true), message: message)
        XCTAssertEqual(results.map(\.reply.code), [250])
        XCTAssertEqual(server.messages.first, message, "the server's un-stuffing restores the bytes")
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("MAIL") }, ["MAIL FROM:<a@example.net> BODY=8BITMIME"])
        XCTAssertTrue(server.commands.contains("DATA"))
        await connection.quit()
        await server.stop()
    }

    func testHELOFallbackWhenEHLOIsUnknown() async throws {
        let server = try await ScriptedSMTPServer { event in
            if case .command(let c) = event, c.hasPrefix("EHLO") { return .reply("502 5.5.2 what?") }
            if case .command(let c) = event, c.hasPrefix("HELO") { return .reply("250 old.example") }
            return acceptingScript()(event)
        }
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port, configuration: config)
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                                message: message)
        XCTAssertEqual(results.map(\.reply.code), [250])
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("MAIL") }, ["MAIL FROM:<a@example.net>"], "no ESMTP parameters after HELO")
        await connection.quit()
        await server.stop()
    }

    func testMessageNeedingSMTPUTF8FailsPermanentlyWithoutIt() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript())
        let connection = try await SMTPClientConnection.open(hostname: "legacy.example", address: "127.0.0.1", port: server.port,
                                                             configuration: config)
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "josé@example.org")],
                                                                   requiresSMTPUTF8: true), message: message)
        XCTAssertEqual(results.first?.reply.code, 553)
        XCTAssertEqual(results.first?.local, true)
        XCTAssertTrue(results.first?.reply.description.contains("SMTPUTF8") == true)
        XCTAssertFalse(server.commands.contains { $0.hasPrefix("MAIL") }, "nothing sent")
        await connection.quit()
        await server.stop()
    }

    func testSIZELimitIsRespected() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript(ehlo: ["SIZE 10"]))
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port, configuration: config)
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                                message: message)
        XCTAssertEqual(results.first?.reply.code, 552)
        XCTAssertEqual(results.first?.reply.enhancedCode, "5.3.4")
        await connection.quit()
        await server.stop()
    }

    func testAllRecipientsRefusedWithPipelinedDataClosesTheEmptyMessage() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript(ehlo: ["PIPELINING"], rcpt: { _ in "550 5.1.1 unknown" }))
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port, configuration: config)
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                                message: message)
        XCTAssertEqual(results.map(\.reply.code), [550])
        XCTAssertEqual(server.messages, [[]], "an empty message ended the pipelined DATA")
        // The connection is still usable after RSET.
        let again = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "c@example.org")]),
                                              message: message)
        XCTAssertEqual(again.map(\.reply.code), [550])
        XCTAssertTrue(server.commands.contains("RSET"))
        await connection.quit()
        await server.stop()
    }

    func testHangingServerTimesOut() async throws {
        let server = try await ScriptedSMTPServer { event in
            if case .command(let c) = event, c.hasPrefix("MAIL") { return .hang }
            return acceptingScript()(event)
        }
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port,
                                                             configuration: .init(heloName: "x", timeouts: .uniform(.milliseconds(300))))
        do {
            _ = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                          message: message)
            XCTFail("no timeout")
        } catch let error as SMTPClientError {
            guard case .timeout = error else { return XCTFail("\(error)") }
        }
        let usable = await connection.isUsable
        XCTAssertFalse(usable)
        await server.stop()
    }

    func testDroppedMidDataIsAnErrorNotADelivery() async throws {
        let server = try await ScriptedSMTPServer { event in
            if case .message = event { return .close }
            return acceptingScript(ehlo: ["8BITMIME"])(event)
        }
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port, configuration: config)
        do {
            _ = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                          message: message)
            XCTFail("a dropped connection counted as delivered")
        } catch let error as SMTPClientError {
            guard case .connectionClosed = error else { return XCTFail("\(error)") }
        }
        await server.stop()
    }

    func testGarbageGreetingAndRefusedGreeting() async throws {
        let garbage = try await ScriptedSMTPServer(greeting: "hello, I am not SMTP") { _ in .hang }
        do {
            _ = try await SMTPClientConnection.open(hostname: "g", address: "127.0.0.1", port: garbage.port, configuration: config)
            XCTFail("garbage accepted")
        } catch let error as SMTPClientError {
            guard case .protocolViolation = error else { return XCTFail("\(error)") }
        }
        await garbage.stop()
        let refusing = try await ScriptedSMTPServer(greeting: "554 5.7.1 go away") { _ in .hang }
        do {
            _ = try await SMTPClientConnection.open(hostname: "r", address: "127.0.0.1", port: refusing.port, configuration: config)
            XCTFail("refusal accepted")
        } catch let error as SMTPClientError {
            XCTAssertTrue(error.isPermanent)
        }
        await refusing.stop()
    }

    func testConnectFailureAndDSNParametersOnlyWhenAnnounced() async throws {
        do {
            _ = try await SMTPClientConnection.open(hostname: "none", address: "127.0.0.1", port: 1, configuration: config)
            XCTFail("connected to a closed port")
        } catch let error as SMTPClientError {
            guard case .connectFailed = error else { return XCTFail("\(error)") }
        }
        let server = try await ScriptedSMTPServer(script: acceptingScript(ehlo: ["PIPELINING", "DSN", "SMTPUTF8"]))
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port, configuration: config)
        _ = try await connection.send(SMTPClientEnvelope(sender: "a@example.net",
                                                         recipients: [.init(address: "b@example.org", notify: "FAILURE,DELAY",
                                                                            originalRecipient: "rfc822;b@example.org")],
                                                         requiresSMTPUTF8: true, envelopeID: "abc", ret: "HDRS"), message: message)
        XCTAssertTrue(server.commands.contains("MAIL FROM:<a@example.net> SMTPUTF8 RET=HDRS ENVID=abc"), "\(server.commands)")
        XCTAssertTrue(server.commands.contains("RCPT TO:<b@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@example.org"))
        await connection.quit()
        await server.stop()
    }
}
