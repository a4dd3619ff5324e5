import NIOCore
import XCTest
@testable import FacteurDNS

/// The NIO client against scripted servers on loopback: validation, truncation, retries, EDNS, cache.
final class DNSClientTests: XCTestCase {
    static let good = IPv4Address("192.0.2.1")!
    static let forged = IPv4Address("192.0.2.66")!

    static func aRecord(_ query: DNSMessage, _ address: IPv4Address = good, ttl: UInt32 = 60) -> DNSResourceRecord {
        DNSResourceRecord(name: query.questions[0].name, ttl: ttl, data: .a(address))
    }

    func client(_ servers: [FakeDNSServer], timeout: TimeAmount = .milliseconds(300), attempts: Int = 1,
                trustAD: Bool = false, dnssecOK: Bool = false, cache: DNSCacheConfiguration? = nil,
                clock: any DNSClock = SystemDNSClock()) -> DNSClient {
        DNSClient(configuration: DNSClientConfiguration(servers: servers.map(\.address), timeout: timeout, attempts: attempts,
                                                        dnssecOK: dnssecOK, trustAuthenticData: trustAD, cache: cache),
                  clock: clock)
    }

    func testRepliesThatDoNotMatchAreIgnored() async throws {
        let server = try await FakeDNSServer.start { query, _ in
            let forgedAnswer = [Self.aRecord(query, Self.forged)]
            return [
                .fromServer(FakeDNSServer.reply(to: query, answers: forgedAnswer, id: query.header.id &+ 1)),
                .fromServer(FakeDNSServer.reply(to: query, answers: forgedAnswer,
                                                question: DNSQuestion(name: "other.example", type: .a))),
                .fromOtherPort(FakeDNSServer.reply(to: query, answers: forgedAnswer)),
                .fromServer([0xDE, 0xAD]),
                .fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)])),
            ]
        }
        defer { Task { await server.stop() } }
        let addresses = try await client([server]).a("mx.example.org")
        XCTAssertEqual(addresses, [Self.good], "wrong ID, wrong question, wrong source port and garbage are all dropped")
    }

    func testEachKindOfMismatchAloneEndsInTimeout() async throws {
        // Proves each check on its own: if any one were missing, the forged address would be accepted.
        let forgeries: [@Sendable (DNSMessage) -> FakeReply] = [
            { .fromServer(FakeDNSServer.reply(to: $0, answers: [Self.aRecord($0, Self.forged)], id: $0.header.id ^ 0x5555)) },
            { .fromServer(FakeDNSServer.reply(to: $0, answers: [Self.aRecord($0, Self.forged)],
                                              question: DNSQuestion(name: "other.example", type: .a))) },
            { .fromServer(FakeDNSServer.reply(to: $0, answers: [Self.aRecord($0, Self.forged)],
                                              question: DNSQuestion(name: $0.questions[0].name, type: .aaaa))) },
            { .fromOtherPort(FakeDNSServer.reply(to: $0, answers: [Self.aRecord($0, Self.forged)])) },
        ]
        for (index, forge) in forgeries.enumerated() {
            let server = try await FakeDNSServer.start { query, _ in [forge(query)] }
            let dns = client([server], timeout: .milliseconds(150))
            let error = await expectDNSError { () async throws(DNSError) in try await dns.a("mx.example.org") }
            guard case .timeout = error else { XCTFail("forgery \(index): \(String(describing: error))"); continue }
            await server.stop()
        }
    }

    func testQueryCarriesEDNSAndRandomIDs() async throws {
        let server = try await FakeDNSServer.start { query, _ in
            [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)]))]
        }
        defer { Task { await server.stop() } }
        let dns = client([server], dnssecOK: true)
        for index in 0..<8 {
            _ = try await dns.a(try DNSName("h\(index).example.org"))
        }
        let queries = server.queries.map(\.message)
        XCTAssertEqual(queries.count, 8)
        let first = try XCTUnwrap(queries.first)
        XCTAssertEqual(first.edns?.udpPayloadSize, 1232)
        XCTAssertEqual(first.edns?.dnssecOK, true)
        XCTAssertTrue(first.header.recursionDesired)
        XCTAssertTrue(first.header.authenticData, "RFC 6840 §5.7: AD set in queries")
        XCTAssertGreaterThan(Set(queries.map(\.header.id)).count, 1, "IDs are not constant")
    }

    func testTruncatedUDPAnswerIsRetriedOverTCP() async throws {
        let many = (1...200).map { IPv4Address(bytes: [10, 0, UInt8($0 >> 8), UInt8($0 & 0xFF)])! }
        let server = try await FakeDNSServer.start { query, overTCP in
            if overTCP {
                return [.fromServer(FakeDNSServer.reply(to: query, answers: many.map { Self.aRecord(query, $0) }))]
            }
            return [.fromServer(FakeDNSServer.reply(to: query, truncated: true))]
        }
        defer { Task { await server.stop() } }
        let addresses = try await client([server]).a("big.example.org")
        XCTAssertEqual(addresses.count, 200)
        XCTAssertEqual(server.queries.map(\.overTCP), [false, true])
    }

    func testBrokenTCPAnswerFailsFastAsMalformed() async throws {
        let server = try await FakeDNSServer.start { query, overTCP in
            if overTCP {
                // Our ID and QR, one answer announced, none present.
                let id = query.header.id
                return [.fromServer([UInt8(id >> 8), UInt8(id & 0xFF), 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0])]
            }
            return [.fromServer(FakeDNSServer.reply(to: query, truncated: true))]
        }
        defer { Task { await server.stop() } }
        let started = ContinuousClock.now
        let dns = client([server], timeout: .seconds(5))
        let error = await expectDNSError { () async throws(DNSError) in try await dns.a("broken.example") }
        guard case .malformedResponse = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "no need to wait for the timeout")
    }

    func testRotateSpreadsQueriesOverServers() async throws {
        let first = try await FakeDNSServer.start { query, _ in [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)]))] }
        let second = try await FakeDNSServer.start { query, _ in [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)]))] }
        defer { Task { await first.stop(); await second.stop() } }
        let dns = DNSClient(configuration: DNSClientConfiguration(servers: [first.address, second.address], cache: nil, rotate: true))
        for _ in 0..<40 { _ = try await dns.a("r.example") }
        XCTAssertEqual(first.queries.count + second.queries.count, 40)
        XCTAssertGreaterThan(second.queries.count, 0, "with rotate the second server gets queries too")
        XCTAssertGreaterThan(first.queries.count, 0)
    }

    func testOversizedUDPAnswerIsReadWhole() async throws {
        // 300 A records (~4.8 KB) over UDP although we offered 1232: read, not cut at 2 KB.
        let many = (1...300).map { IPv4Address(bytes: [10, 1, UInt8($0 >> 8), UInt8($0 & 0xFF)])! }
        let server = try await FakeDNSServer.start { query, _ in
            [.fromServer(FakeDNSServer.reply(to: query, answers: many.map { Self.aRecord(query, $0) }))]
        }
        defer { Task { await server.stop() } }
        let addresses = try await client([server]).a("big.example.org")
        XCTAssertEqual(addresses.count, 300)
        XCTAssertEqual(server.queries.map(\.overTCP), [false])
    }

    func testSilentServerTimesOutAndTheNextOneAnswers() async throws {
        let silent = try await FakeDNSServer.start { _, _ in [] }
        let answering = try await FakeDNSServer.start { query, _ in
            [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)]))]
        }
        defer { Task { await silent.stop(); await answering.stop() } }
        let addresses = try await client([silent, answering]).a("mx.example.org")
        XCTAssertEqual(addresses, [Self.good])

        let started = ContinuousClock.now
        let dns = client([silent], timeout: .milliseconds(150), attempts: 3)
        let error = await expectDNSError { () async throws(DNSError) in try await dns.a("mx.example.org") }
        guard case .timeout = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(error?.isTemporary, true)
        XCTAssertEqual(silent.queries.count, 1 + 3, "one try in the first lookup, three attempts in the second")
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(450))
    }

    func testServerFailureAndRefusedMoveToTheNextServer() async throws {
        let failing = try await FakeDNSServer.start { query, _ in [.fromServer(FakeDNSServer.reply(to: query, rcode: .serverFailure))] }
        let refusing = try await FakeDNSServer.start { query, _ in [.fromServer(FakeDNSServer.reply(to: query, rcode: .refused))] }
        let answering = try await FakeDNSServer.start { query, _ in
            [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)]))]
        }
        defer { Task { await failing.stop(); await refusing.stop(); await answering.stop() } }

        let a = try await client([failing, refusing, answering]).a("x.example")
        XCTAssertEqual(a, [Self.good])

        let servfail = await expectDNSError { [self] () async throws(DNSError) in try await client([failing]).a("x.example") }
        guard case .serverFailure = servfail else { return XCTFail("\(String(describing: servfail))") }
        let refused = await expectDNSError { [self] () async throws(DNSError) in try await client([refusing]).a("x.example") }
        guard case .refused = refused else { return XCTFail("\(String(describing: refused))") }
    }

    func testAuthenticDataIsBelievedOnlyWhenTrusted() async throws {
        let server = try await FakeDNSServer.start { query, _ in
            [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)], authenticData: true))]
        }
        defer { Task { await server.stop() } }
        let untrusted = try await client([server]).query(name: "signed.example", type: .a)
        XCTAssertFalse(untrusted.authenticData)
        let trusted = try await client([server], trustAD: true).query(name: "signed.example", type: .a)
        XCTAssertTrue(trusted.authenticData)
    }

    func testFormErrToEDNSIsRetriedWithout() async throws {
        let server = try await FakeDNSServer.start { query, _ in
            if query.edns != nil {
                return [.fromServer(FakeDNSServer.reply(to: query, rcode: .formatError, edns: false))]
            }
            return [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)]))]
        }
        defer { Task { await server.stop() } }
        let a = try await client([server]).a("old.example")
        XCTAssertEqual(a, [Self.good])
        XCTAssertEqual(server.queries.map { $0.message.edns == nil }, [false, true])
    }

    func testClientCacheUsesTheInjectedClock() async throws {
        let soa = DNSResourceRecord(name: "example", ttl: 3600, data: .soa(SOARecord(
            mname: "ns.example", rname: "h.example", serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 30)))
        let server = try await FakeDNSServer.start { query, _ in
            if query.questions[0].name == "gone.example" {
                return [.fromServer(FakeDNSServer.reply(to: query, rcode: .nameError, authority: [soa]))]
            }
            return [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query, ttl: 60)]))]
        }
        defer { Task { await server.stop() } }
        let clock = ManualClock()
        let dns = client([server], cache: DNSCacheConfiguration(), clock: clock)

        _ = try await dns.a("www.example")
        clock.advance(59)
        let cached = try await dns.query(name: "WWW.example", type: .a)
        XCTAssertEqual(cached.records.first?.ttl, 1, "served from the cache with the TTL aged")
        XCTAssertEqual(server.queries.count, 1)
        clock.advance(1)
        _ = try await dns.a("www.example")
        XCTAssertEqual(server.queries.count, 2, "expired: asked again")

        for _ in 0..<2 {
            let error = await expectDNSError { () async throws(DNSError) in try await dns.a("gone.example") }
            guard case .nxdomain(let negative) = error else { return XCTFail("\(String(describing: error))") }
            XCTAssertLessThanOrEqual(negative.negativeTTL ?? 99, 30, "RFC 2308 §5: min(SOA TTL, MINIMUM)")
        }
        XCTAssertEqual(server.queries.count, 3, "NXDOMAIN was cached")
        clock.advance(30)
        _ = await expectDNSError { () async throws(DNSError) in try await dns.a("gone.example") }
        XCTAssertEqual(server.queries.count, 4, "negative entry expired")
        await dns.flushCache()
        _ = try await dns.a("www.example")
        XCTAssertEqual(server.queries.count, 5, "flushed")
    }

    func testCNAMEFollowedAcrossQueries() async throws {
        // The server gives the CNAME alone, without the target's records and without an SOA: the
        // client must ask for the target itself.
        let server = try await FakeDNSServer.start { query, _ in
            let question = query.questions[0]
            if question.name == "alias.example" {
                return [.fromServer(FakeDNSServer.reply(to: query, answers: [
                    DNSResourceRecord(name: "alias.example", ttl: 60, data: .cname("real.example"))]))]
            }
            if question.name == "loop.example" {
                return [.fromServer(FakeDNSServer.reply(to: query, answers: [
                    DNSResourceRecord(name: "loop.example", ttl: 60, data: .cname("loop2.example")),
                    DNSResourceRecord(name: "loop2.example", ttl: 60, data: .cname("loop.example"))]))]
            }
            return [.fromServer(FakeDNSServer.reply(to: query, answers: [Self.aRecord(query)]))]
        }
        defer { Task { await server.stop() } }
        let dns = client([server])
        let answer = try await dns.query(name: "alias.example", type: .a)
        XCTAssertEqual(answer.canonicalName, "real.example")
        XCTAssertEqual(server.queries.map(\.message.questions[0].name), ["alias.example", "real.example"])
        let loop = await expectDNSError { () async throws(DNSError) in try await dns.a("loop.example") }
        guard case .cnameLoop = loop else { return XCTFail("\(String(describing: loop))") }
    }

    func testNoServersIsATransportError() async {
        let dns = DNSClient(configuration: DNSClientConfiguration(servers: []))
        let error = await expectDNSError { () async throws(DNSError) in try await dns.a("x.example") }
        guard case .transport = error else { return XCTFail("\(String(describing: error))") }
    }
}
