// What the outbound throughput work changed must keep the queue's promises: enqueue returns
// exactly what was committed; outcomes written through the group commit (many lanes, one
// fsync) are all there after the store is reopened; a claim holds only what it says; a session
// kept open between passes is reused, replaced when dead, and closed when idle.

import FacteurDNS
import FacteurStore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import XCTest
@testable import FacteurQueue

final class QueueThroughputTests: XCTestCase {
    var directory = ""
    var store: SQLiteMailStore!
    let clock = TestClock()

    override func setUp() async throws {
        directory = temporaryDirectory("queue-throughput")
        store = try SQLiteMailStore(directory: directory + "/store")
    }

    override func tearDown() async throws {
        try? store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    let message = crlf("From: a@example.net\nTo: b@example.org\nSubject: hello\n\nbody\n")

    func submission(_ recipients: [String]) -> QueueSubmission {
        QueueSubmission(sender: "a@example.net", recipients: recipients.map { QueueRecipientInput(address: $0) },
                        message: .memory(message))
    }

    // MARK: Store

    /// enqueue no longer reads its rows back: what it returns must equal what a read finds.
    func testEnqueueReturnsExactlyTheCommittedRows() async throws {
        var input = submission(["b@example.org", "c@Example.COM"])
        input.recipients[0].notify = [.success, .failure]
        input.recipients[1].originalRecipient = "rfc822;c@example.com"
        input.envelopeID = "env-42"
        input.ret = .full
        input.account = "a@example.net"
        input.tlsDemand = .requireTLS
        input.message = .memory(crlf("From: a@example.net\nSubject: caf\u{E9}\n\nbody \u{E9}\n"))
        let now = Date(timeIntervalSince1970: 1_800_000_123.25)
        let returned = try await store.enqueue(input, now: now, times: QueueTimes(lifetime: 3600, delayWarning: 600))
        let read = try await store.queuedMessage(id: returned.id)
        XCTAssertEqual(returned, read)
        XCTAssertEqual(returned.recipients.map(\.domain), ["example.org", "example.com"])
        XCTAssertTrue(returned.has8BitData)
        XCTAssertEqual(returned.tlsDemand, .requireTLS)
        let noWarning = try await store.enqueue(submission(["d@example.org"]), now: now,
                                                times: QueueTimes(lifetime: 60, delayWarning: nil))
        let readAgain = try await store.queuedMessage(id: noWarning.id)
        XCTAssertEqual(noWarning, readAgain)
        XCTAssertNil(noWarning.warnAt)
    }

    /// Outcomes of many lanes at once go through the group commit (fewer transactions than
    /// records) and each one is durable when its call returns: a second store opened on the same
    /// files, as after a crash, sees every one of them.
    func testConcurrentOutcomesShareCommitsAndAreAllThereAfterReopening() async throws {
        let now = clock.now
        for i in 0 ..< 40 { _ = try await store.enqueue(submission(["r\(i)@example.org", "s\(i)@example.com"]), now: now) }
        let claims = try await store.claimQueueWork(now: now, owner: "w", lease: 60, limit: 1000)
        XCTAssertEqual(claims.count, 80)
        let store = self.store!
        let before = store.stats.commits
        try await withThrowingTaskGroup(of: Void.self) { group in
            for claim in claims {
                group.addTask {
                    let outcome: QueueAttemptOutcome = claim.domain == "example.org"
                        ? .delivered(reply: "250 2.0.0 ok \(claim.message.id)", host: "mx.example.org")
                        : .deferred(reply: "451 4.7.1 later", host: "mx.example.com", nextAttempt: now.addingTimeInterval(300))
                    try await store.recordQueueAttempt(owner: "w", claim.recipients.map { ($0.id, outcome) }, now: now)
                }
            }
            try await group.waitForAll()
        }
        XCTAssertLessThan(store.stats.commits - before, 80, "several outcome records per transaction")

        // Another store on the same files, without closing the first: only what was committed shows.
        let reopened = try SQLiteMailStore(directory: directory + "/store")
        defer { try? reopened.close() }
        let queued = try await reopened.queuedMessages()
        XCTAssertEqual(queued.count, 40)
        for message in queued {
            let org = try XCTUnwrap(message.recipients.first { $0.domain == "example.org" })
            let com = try XCTUnwrap(message.recipients.first { $0.domain == "example.com" })
            XCTAssertEqual(org.state, .delivered)
            XCTAssertEqual(org.lastReply, "250 2.0.0 ok \(message.id)")
            XCTAssertEqual(org.attempts, 1)
            XCTAssertEqual(com.state, .deferred)
            XCTAssertEqual(com.nextAttempt, now.addingTimeInterval(300))
        }
        // The claims were released with the outcomes: the deferred ones are claimable when due.
        let due = try await reopened.claimQueueWork(now: now.addingTimeInterval(301), owner: "x", lease: 60, limit: 1000)
        XCTAssertEqual(due.count, 40)
        XCTAssertTrue(due.allSatisfy { $0.domain == "example.com" && $0.recipients.count == 1 })
    }

    /// A claim holds the due, unheld recipients of one (message, domain) group, and carries the
    /// whole message (every recipient, in order) for the DSN and the log.
    func testClaimHoldsOnlyWhatIsDueAndCarriesTheWholeMessage() async throws {
        let now = clock.now
        let queued = try await store.enqueue(submission(["a1@example.org", "b@example.com", "a2@example.org", "a3@example.org"]),
                                             now: now)
        let first = try await store.claimQueueWork(now: now, owner: "w", lease: 60, limit: 1)
        let held = try XCTUnwrap(first.first)
        XCTAssertEqual(first.count, 1)
        XCTAssertEqual(held.message.recipients.map(\.address), queued.recipients.map(\.address))
        XCTAssertEqual(held.recipients.map(\.address), queued.recipients.filter { $0.domain == held.domain }.map(\.address))
        // Another worker gets the other domain only: the first group is held.
        let byOther = try await store.claimQueueWork(now: now, owner: "other", lease: 60, limit: 10)
        let otherGroup = try XCTUnwrap(byOther.first)
        XCTAssertEqual(byOther.count, 1)
        XCTAssertNotEqual(otherGroup.domain, held.domain)
        XCTAssertEqual(otherGroup.message.recipients.count, 4)
        // a1 fails for now, everyone else is delivered.
        for (owner, claim) in [("w", held), ("other", otherGroup)] {
            try await store.recordQueueAttempt(owner: owner, claim.recipients.map { r in
                (r.id, r.address == "a1@example.org"
                    ? .deferred(reply: "451 later", host: nil, nextAttempt: now.addingTimeInterval(100))
                    : .delivered(reply: "250 ok", host: nil))
            }, now: now)
        }
        let nothing = try await store.claimQueueWork(now: now, owner: "third", lease: 60, limit: 10)
        XCTAssertEqual(nothing, [], "nothing due")
        let later = try await store.claimQueueWork(now: now.addingTimeInterval(101), owner: "third", lease: 60, limit: 10)
        XCTAssertEqual(later.map { $0.recipients.map(\.address) }, [["a1@example.org"]])
        XCTAssertEqual(later.first?.message.recipients.count, 4)
        XCTAssertEqual(later.first?.message.recipients.filter { $0.state == .delivered }.count, 3)
    }

    // MARK: The client's send path

    /// Stuffing into the outgoing buffer a line at a time gives the same octets as the byte-wise
    /// reference (RFC 5321 §4.5.2), edge cases included.
    func testDotStuffingIntoTheBufferMatchesTheReference() {
        let cases: [[UInt8]] = [
            [], Array(".".utf8), crlf("\n"), crlf(".\n"), crlf(".a\n..b\nc.\n.\n"), Array("no final newline".utf8),
            crlf("a\n.") , Array("a\r\n.b\rc\n.d\r".utf8), Array("x\n.y\n".utf8),
            crlf(String(repeating: "line .with dots.\n.leading\n", count: 500)),
        ]
        for message in cases {
            var buffer = ByteBufferAllocator().buffer(capacity: 0)
            SMTPClientConnection.writeDotStuffed(message, into: &buffer)
            XCTAssertEqual(buffer.readBytes(length: buffer.readableBytes), SMTPClientConnection.dotStuffed(message),
                           "\(String(decoding: message.prefix(40), as: UTF8.self).debugDescription)")
        }
    }

    // MARK: Sessions kept between passes

    let zone = """
        example.org. 300 IN MX 10 mx.example.org.
        mx.example.org. 300 IN A 127.0.0.1
        """

    func service(port: Int, idle: Duration) throws -> QueueDeliveryService {
        var resolver = StaticResolver()
        try resolver.add(zone: zone)
        var configuration = QueueConfiguration(hostname: "out.example.net", mxPort: port, ipv6Enabled: false,
                                               timeouts: .uniform(.seconds(5)), maxConcurrentPerDestination: 1)
        configuration.connectionIdleTime = idle
        return QueueDeliveryService(store: store, resolver: resolver, configuration: configuration, clock: clock.function)
    }

    func enqueue(_ service: QueueDeliveryService) async throws {
        _ = try await service.enqueue(submission(["b@example.org"]))
    }

    func testTheNextPassReusesTheSessionAndAnIdleOneIsClosed() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript())
        let service = try service(port: server.port, idle: .seconds(1))
        try await enqueue(service)
        try await service.runOnce()
        try await enqueue(service)
        try await service.runOnce()
        XCTAssertEqual(server.messages.count, 2)
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("EHLO") }.count, 1, "the second pass used the first pass's session")
        XCTAssertFalse(server.commands.contains("QUIT"), "kept open between passes")
        XCTAssertEqual(service.connections.idleCount, 1)
        // Idle for longer than connectionIdleTime: QUIT.
        let deadline = Date().addingTimeInterval(5)
        while !server.commands.contains("QUIT"), Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertTrue(server.commands.contains("QUIT"), "an idle session is closed")
        XCTAssertEqual(service.connections.idleCount, 0)
        try await enqueue(service)
        try await service.runOnce()
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("EHLO") }.count, 2, "a new session after the idle one closed")
        await service.closeIdleConnections()
        await server.stop()
    }

    func testNoSessionIsKeptWhenTheIdleTimeIsZero() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript())
        let service = try service(port: server.port, idle: .zero)
        for _ in 0 ..< 2 {
            try await enqueue(service)
            try await service.runOnce()
        }
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("EHLO") }.count, 2)
        XCTAssertEqual(service.connections.idleCount, 0)
        await server.stop()
    }

    /// A kept session the server dropped meanwhile is not used: the message goes over a new one,
    /// delivered once.
    func testADeadKeptSessionIsReplaced() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript())
        let service = try service(port: server.port, idle: .seconds(30))
        try await enqueue(service)
        try await service.runOnce()
        XCTAssertEqual(service.connections.idleCount, 1)
        // Close it under the cache's feet (as a server's idle timeout would), then put it back.
        let key = try XCTUnwrap(service.connections.keys.first)
        let kept = try XCTUnwrap(service.connections.take(key))
        await kept.close()
        service.connections.keep(kept, key: key)
        try await enqueue(service)
        try await service.runOnce()
        XCTAssertEqual(server.messages.count, 2)
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("EHLO") }.count, 2)
        let left = try await store.queuedMessages()
        XCTAssertEqual(left, [], "both delivered once and removed")
        await service.closeIdleConnections()
        await server.stop()
    }

    func testTheCacheIsBoundedAndKeepsNoBrokenSession() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript())
        let cache = SMTPConnectionCache(idleLimit: .seconds(30), capacity: 2)
        var opened: [SMTPClientConnection] = []
        for _ in 0 ..< 3 {
            opened.append(try await SMTPClientConnection.open(hostname: "mx.example.org", address: "127.0.0.1", port: server.port,
                                                              configuration: SMTPClientConfiguration(heloName: "out.example.net")))
        }
        await cache.park(opened[0], key: "a")
        await cache.park(opened[1], key: "b")
        await cache.park(opened[2], key: "b")
        XCTAssertEqual(cache.idleCount, 2, "the longest idle one was let go")
        XCTAssertNil(cache.take("a"))
        XCTAssertTrue(cache.take("b") === opened[2], "the most recently parked first")
        await opened[2].close()
        await cache.park(opened[2], key: "b")
        XCTAssertEqual(cache.idleCount, 1, "a closed session is not kept")
        await cache.closeAll()
        XCTAssertEqual(cache.idleCount, 0)
        let stillUsable = await opened[1].isUsable
        XCTAssertFalse(stillUsable, "closed with QUIT")
        let none = SMTPConnectionCache(idleLimit: .seconds(30), capacity: 0)
        let another = try await SMTPClientConnection.open(hostname: "mx.example.org", address: "127.0.0.1", port: server.port,
                                                          configuration: SMTPClientConfiguration(heloName: "out.example.net"))
        none.keep(another, key: "a")
        XCTAssertEqual(none.idleCount, 0, "a cache of no room keeps nothing")
        await server.stop()
    }
}
