import XCTest
@testable import FacteurDNS

final class StaticResolverTests: XCTestCase {
    func zone() throws -> StaticResolver {
        var resolver = StaticResolver(negativeTTL: 120)
        try resolver.add(zone: """
            ; a small zone
            example.org.        300 IN MX  20 mx2.example.org.
            example.org.        300 IN MX  10 mx1.example.org.
            example.org.        300 IN TXT "v=spf1 " "ip4:192.0.2.0/24 -all"
            mx1.example.org.    300 IN A    192.0.2.1
            mx1.example.org.    300 IN AAAA 2001:db8::1
            mx2.example.org.    300 A 192.0.2.2
            www.example.org.    60  IN CNAME web.example.org.
            web.example.org.    30  IN CNAME mx1.example.org.
            loop1.example.org.  IN CNAME loop2.example.org.
            loop2.example.org.  IN CNAME loop1.example.org.
            dangling.example.org. IN CNAME nowhere.example.org.
            nullmx.example.net. IN MX 0 .
            _25._tcp.mx1.example.org. IN TLSA 3 1 1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
            1.2.0.192.in-addr.arpa. IN PTR mx1.example.org.
            deep.sub.example.org. IN A 192.0.2.3
            """)
        return resolver
    }

    func testConvenienceLookups() async throws {
        let dns = try zone()
        let mx = try await dns.mx("example.org")
        XCTAssertEqual(mx.map(\.preference), [10, 20], "sorted by preference (RFC 5321 §5.1)")
        XCTAssertEqual(mx.first?.exchange, "mx1.example.org")
        let a = try await dns.a("mx1.example.org")
        XCTAssertEqual(a, [IPv4Address("192.0.2.1")!])
        let aaaa = try await dns.aaaa("MX1.example.org")
        XCTAssertEqual(aaaa, [IPv6Address("2001:db8::1")!])
        let txt = try await dns.txt("example.org")
        XCTAssertEqual(txt.first?.strings.count, 2)
        XCTAssertEqual(txt.first?.text, "v=spf1 ip4:192.0.2.0/24 -all")
        let ptr = try await dns.ptr(IPAddress("192.0.2.1")!)
        XCTAssertEqual(ptr, ["mx1.example.org"])
        let tlsa = try await dns.tlsa(host: "mx1.example.org", port: 25)
        XCTAssertEqual(tlsa.records.first?.certificateUsage, 3)
        XCTAssertEqual(tlsa.records.first?.certificateAssociationData.count, 32)
        XCTAssertFalse(tlsa.authenticData)
        let nullMX = try await dns.mx("nullmx.example.net")
        XCTAssertTrue(nullMX.first?.isNullMX ?? false)
        let text = try await dns.query("mx2.example.org.", type: .a)
        XCTAssertEqual(text.records.count, 1)
    }

    func testCNAMEChainIsFollowed() async throws {
        let answer = try await zone().query(name: "www.example.org", type: .a)
        XCTAssertEqual(answer.name, "www.example.org")
        XCTAssertEqual(answer.canonicalName, "mx1.example.org")
        XCTAssertEqual(answer.cnameChain.map(\.name), ["www.example.org", "web.example.org"])
        XCTAssertEqual(answer.records.map(\.data), [.a(IPv4Address("192.0.2.1")!)])
        XCTAssertEqual(answer.ttl, 30, "the chain's smallest TTL")
        let cname = try await zone().query(name: "www.example.org", type: .cname)
        XCTAssertEqual(cname.records.map(\.data), [.cname("web.example.org")], "asking for CNAME itself does not follow")
    }

    func testCNAMELoopAndLength() async throws {
        let dns = try zone()
        let loop = await expectDNSError { () async throws(DNSError) in try await dns.query(name: "loop1.example.org", type: .a) }
        guard case .cnameLoop = loop else { return XCTFail("\(String(describing: loop))") }
        XCTAssertEqual(loop?.isTemporary, false)
        var long = StaticResolver()
        for index in 0...DNSLimits.maxCNAMEChain {
            long.add(DNSResourceRecord(name: try DNSName("c\(index).example"), ttl: 60, data: .cname(try DNSName("c\(index + 1).example"))))
        }
        long.add(DNSResourceRecord(name: try DNSName("c\(DNSLimits.maxCNAMEChain + 1).example"), ttl: 60, data: .a(IPv4Address("192.0.2.9")!)))
        let tooLong = await expectDNSError { () async throws(DNSError) in try await long.query(name: "c0.example", type: .a) }
        guard case .cnameChainTooLong = tooLong else { return XCTFail("\(String(describing: tooLong))") }
        // One link fewer resolves.
        let short = try await long.query(name: "c1.example", type: .a)
        XCTAssertEqual(short.cnameChain.count, DNSLimits.maxCNAMEChain)
    }

    func testNegativeOutcomesAreDistinct() async throws {
        let dns = try zone()
        let missing = await expectDNSError { () async throws(DNSError) in try await dns.query(name: "missing.example.org", type: .mx) }
        guard case .nxdomain(let negative) = missing else { return XCTFail("\(String(describing: missing))") }
        XCTAssertEqual(negative.negativeTTL, 120)
        XCTAssertEqual(missing?.isNotFound, true)
        XCTAssertEqual(missing?.isTemporary, false)

        let noMX = await expectDNSError { () async throws(DNSError) in try await dns.mx("mx1.example.org") }
        guard case .noData(let noData) = noMX else { return XCTFail("\(String(describing: noMX))") }
        XCTAssertEqual(noData.name, "mx1.example.org")

        let nonTerminal = await expectDNSError { () async throws(DNSError) in try await dns.a("sub.example.org") }
        guard case .noData = nonTerminal else { return XCTFail("empty non-terminal is no data, got \(String(describing: nonTerminal))") }

        let dangling = await expectDNSError { () async throws(DNSError) in try await dns.a("dangling.example.org") }
        guard case .nxdomain(let end) = dangling else { return XCTFail("\(String(describing: dangling))") }
        XCTAssertEqual(end.name, "dangling.example.org")
        XCTAssertEqual(end.canonicalName, "nowhere.example.org", "RFC 6604: the RCODE is about the chain's end")
    }

    func testInjectedFailures() async throws {
        var dns = try zone()
        dns.inject(.timeout, name: "example.org", type: .mx)
        dns.inject(.serverFailure, name: "mx1.example.org")
        dns.inject(.refused, name: "mx2.example.org", type: .aaaa)
        let resolver = dns
        let timeout = await expectDNSError { () async throws(DNSError) in try await resolver.mx("example.org") }
        guard case .timeout = timeout else { return XCTFail("\(String(describing: timeout))") }
        XCTAssertEqual(timeout?.isTemporary, true)
        let txt = try await resolver.txt("example.org")
        XCTAssertEqual(txt.count, 1, "only MX fails")
        let servfail = await expectDNSError { () async throws(DNSError) in try await resolver.a("mx1.example.org") }
        guard case .serverFailure = servfail else { return XCTFail("\(String(describing: servfail))") }
        let chained = await expectDNSError { () async throws(DNSError) in try await resolver.a("www.example.org") }
        guard case .serverFailure = chained else { return XCTFail("failure at the chain's end, got \(String(describing: chained))") }
        let refused = await expectDNSError { () async throws(DNSError) in try await resolver.aaaa("mx2.example.org") }
        guard case .refused = refused else { return XCTFail("\(String(describing: refused))") }
        let a = try await resolver.a("mx2.example.org")
        XCTAssertEqual(a.count, 1)
    }

    func testAuthenticDataIsReported() async throws {
        var dns = try zone()
        dns.authenticData = true
        let tlsa = try await dns.tlsa(host: "mx1.example.org", port: 25)
        XCTAssertTrue(tlsa.authenticData)
    }

    func testPresentationErrors() {
        XCTAssertThrowsError(try DNSResourceRecord(presentation: "x.example. IN A 300.1.1.1"))
        XCTAssertThrowsError(try DNSResourceRecord(presentation: "x.example. IN HINFO a b")) {
            XCTAssertEqual($0 as? DNSPresentationError, .unsupportedType("HINFO"))
        }
        XCTAssertThrowsError(try DNSResourceRecord(presentation: #"x.example. TXT "unterminated"#))
        XCTAssertThrowsError(try DNSResourceRecord(presentation: "x..example. A 192.0.2.1"))
        XCTAssertEqual(try DNSResourceRecord(presentation: #"x.example. 5 TXT "a \"q\" b""#).data,
                       .txt(TXTRecord(strings: [Array(#"a "q" b"#.utf8)])))
    }
}
