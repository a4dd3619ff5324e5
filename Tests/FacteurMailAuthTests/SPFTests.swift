// SPF beyond the suite: RFC 7208 §7.4's macro examples, the HELO identity, IPv4-mapped clients,
// the processing limits, and record parsing.

import FacteurDNS
@testable import FacteurMailAuth
import Synchronization
import XCTest

/// Counts the questions it forwards.
final class CountingResolver: DNSResolver {
    let inner: StaticResolver
    let count = Mutex(0)
    init(_ inner: StaticResolver) { self.inner = inner }
    func query(name: DNSName, type: DNSRecordType) async throws(DNSError) -> DNSAnswer {
        count.withLock { $0 += 1 }
        return try await inner.query(name: name, type: type)
    }
}

final class SPFTests: XCTestCase {
    func expand(_ text: String, ip: String = "192.0.2.3", domain: String = "email.example.com") async throws -> String {
        let spec = try SPFMacroString(parsing: Array(text.utf8), allowExplanationLetters: true)
        let verifier = SPFVerifier(resolver: StaticResolver(), receivingDomain: "mx.example.org", clock: { 1_234 })
        let state = SPFEvaluation(verifier: verifier, ip: try XCTUnwrap(IPAddress(ip)),
                                  sender: "strong-bad@email.example.com", helo: "mail.example.com")
        return try await state.expand(spec, domain: domain, forDomain: false)
    }

    /// RFC 7208 §7.4, every example.
    func testRFCMacroExamples() async throws {
        let examples: [(String, String)] = [
            ("%{s}", "strong-bad@email.example.com"), ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"), ("%{d4}", "email.example.com"), ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"), ("%{d1}", "com"), ("%{dr}", "com.example.email"), ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"), ("%{l-}", "strong.bad"), ("%{lr}", "strong-bad"), ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
            ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
            ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
            ("%{c} %{r} %{t} %{h} %%%_%-", "192.0.2.3 mx.example.org 1234 mail.example.com % %20"),
            ("%{S}", "strong-bad%40email.example.com"),
        ]
        for (macro, want) in examples {
            let got = try await expand(macro)
            XCTAssertEqual(got, want, macro)
        }
        let v6 = try await expand("%{ir}.%{v}._spf.%{d2}", ip: "2001:db8::cb01")
        XCTAssertEqual(v6, "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com")
    }

    func zone(_ text: String) throws -> StaticResolver {
        var resolver = StaticResolver()
        try resolver.add(zone: text)
        return resolver
    }

    func testHELOIdentityAndMappedAddresses() async throws {
        let resolver = try zone("""
            mail.example.com. 300 IN TXT "v=spf1 a -all"
            mail.example.com. 300 IN A 192.0.2.10
            example.com. 300 IN TXT "v=spf1 ip6:2001:db8::/32 ip4:198.51.100.0/24 ~all"
            """)
        let spf = SPFVerifier(resolver: resolver)
        let helo = await spf.checkHELO(ip: .v4(IPv4Address("192.0.2.10")!), helo: "mail.example.com")
        XCTAssertEqual(helo.result, .pass)
        let heloFail = await spf.checkHELO(ip: .v4(IPv4Address("192.0.2.11")!), helo: "mail.example.com")
        XCTAssertEqual(heloFail.result, .fail)
        // Null reverse-path: the HELO identity is checked (RFC 7208 §2.4).
        let bounce = await spf.checkMailFrom(ip: .v4(IPv4Address("192.0.2.10")!), mailFrom: "", helo: "mail.example.com")
        XCTAssertEqual(bounce.result, .pass)
        // ::ffff:198.51.100.7 is the IPv4 client 198.51.100.7.
        let mapped = await spf.checkMailFrom(ip: .v6(IPv6Address("::ffff:198.51.100.7")!), mailFrom: "a@example.com", helo: "x")
        XCTAssertEqual(mapped.result, .pass)
        let v6 = await spf.checkMailFrom(ip: .v6(IPv6Address("2001:db8::1")!), mailFrom: "a@example.com", helo: "x")
        XCTAssertEqual(v6.result, .pass)
        let other = await spf.checkMailFrom(ip: .v4(IPv4Address("203.0.113.1")!), mailFrom: "a@example.com", helo: "x")
        XCTAssertEqual(other.result, .softfail)
        XCTAssertEqual(other.domain, "example.com")
        // A single-label HELO is not checked.
        let bare = await spf.checkHELO(ip: .v4(IPv4Address("192.0.2.10")!), helo: "localhost")
        XCTAssertEqual(bare.result, .none)
    }

    func testLookupLimits() async throws {
        XCTAssertEqual(SPFLimits.maxDNSLookups, 10)
        XCTAssertEqual(SPFLimits.maxVoidLookups, 2)
        // Ten includes are allowed, the eleventh is a permerror.
        var lines = ""
        for i in 0..<11 { lines += "i\(i).example.com. 300 IN TXT \"v=spf1 ?all\"\n" }
        let ten = (0..<10).map { "include:i\($0).example.com" }.joined(separator: " ")
        let eleven = (0..<11).map { "include:i\($0).example.com" }.joined(separator: " ")
        // Two void lookups are allowed, the third is a permerror.
        lines += "void2.example.com. 300 IN TXT \"v=spf1 a:n1.example.com a:n2.example.com -all\"\n"
        lines += "void3.example.com. 300 IN TXT \"v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com -all\"\n"
        var resolver = try zone(lines)
        // Longer than one 255-octet character-string: split, as publishers do (RFC 7208 §3.3).
        for (name, body) in [("ten.example.com", ten), ("eleven.example.com", eleven)] {
            let text = Array("v=spf1 \(body) -all".utf8)
            let strings = stride(from: 0, to: text.count, by: 200).map { Array(text[$0..<min(text.count, $0 + 200)]) }
            resolver.add(DNSResourceRecord(name: try DNSName(name), ttl: 300, data: .txt(TXTRecord(strings: strings))))
        }
        let spf = SPFVerifier(resolver: resolver)
        let ip = IPAddress.v4(IPv4Address("192.0.2.1")!)
        let r10 = await spf.checkMailFrom(ip: ip, mailFrom: "a@ten.example.com", helo: "h.example.com")
        XCTAssertEqual(r10.result, .fail)
        let r11 = await spf.checkMailFrom(ip: ip, mailFrom: "a@eleven.example.com", helo: "h.example.com")
        XCTAssertEqual(r11.result, .permerror)
        let v2 = await spf.checkMailFrom(ip: ip, mailFrom: "a@void2.example.com", helo: "h.example.com")
        XCTAssertEqual(v2.result, .fail)
        let v3 = await spf.checkMailFrom(ip: ip, mailFrom: "a@void3.example.com", helo: "h.example.com")
        XCTAssertEqual(v3.result, .permerror)
    }

    func testRecordParsing() throws {
        let record = try SPFRecord(parsing: Array("v=spf1 -ip4:192.0.2.0/24 a:mail.%{d}/28//64 ~mx include:_spf.example.net redirect=x.example.org exp=why.%{d} unknown=thing".utf8))
        XCTAssertEqual(record.directives.count, 4)
        XCTAssertEqual(record.directives[0].qualifier, .fail)
        XCTAssertEqual(record.directives[0].mechanism, .ip4([192, 0, 2, 0], prefix: 24))
        if case .a(_, let c4, let c6) = record.directives[1].mechanism {
            XCTAssertEqual([c4, c6], [28, 64])
        } else {
            XCTFail("not an a mechanism")
        }
        XCTAssertNotNil(record.redirect)
        XCTAssertNotNil(record.explanation)
        for bad in ["v=spf1 ip4:192.0.2.0/33", "v=spf1 a:example", "v=spf1 redirect=a.example redirect=b.example",
                    "v=spf1 %{x}.example.com", "v=spf1 exists:%{d0}.example.com", "v=spf1 ip4:1.2.3", "v=spf1 foo"] {
            XCTAssertThrowsError(try SPFRecord(parsing: Array(bad.utf8)), bad)
        }
        XCTAssertFalse(SPFRecord.isSPF(Array("v=spf10 -all".utf8)))
        XCTAssertTrue(SPFRecord.isSPF(Array("V=SPF1".utf8)))
    }

    /// %{p} costs the PTR validation once per check, however often it appears (hostile records).
    func testPMacroIsLookedUpOnce() async throws {
        let macros = String(repeating: "%{p}", count: 50)
        var resolver = try zone("""
            1.2.0.192.in-addr.arpa. 300 IN PTR host.example.com.
            host.example.com. 300 IN A 192.0.2.1
            """)
        resolver.add(DNSResourceRecord(name: try DNSName("example.com"), ttl: 300,
                                       data: .txt(TXTRecord(text: "v=spf1 exists:\(macros).example.com ptr -all"))))
        let counting = CountingResolver(resolver)
        let outcome = await SPFVerifier(resolver: counting).checkMailFrom(
            ip: .v4(IPv4Address("192.0.2.1")!), mailFrom: "a@example.com", helo: "h.example.com")
        XCTAssertEqual(outcome.result, .pass)
        // TXT, PTR, A of host, the exists query.
        XCTAssertLessThanOrEqual(counting.count.withLock { $0 }, 4)
    }
}
