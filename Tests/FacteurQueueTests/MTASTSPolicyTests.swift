// MTA-STS (RFC 8461): the TXT record (§3.1), the policy file (§3.2) with its malformed cases,
// MX pattern matching (§4.1), and the cache's behaviour when the TXT id changes or a fetch fails
// (§5.1) through a policy source double.

import FacteurDNS
import Foundation
import XCTest
@testable import FacteurQueue

final class MTASTSPolicyTests: XCTestCase {
    func testTXTRecord() {
        XCTAssertEqual(MTASTSRecord("v=STSv1; id=20160831085700Z;")?.id, "20160831085700Z")
        XCTAssertEqual(MTASTSRecord("v=STSv1;id=abc123")?.id, "abc123")
        XCTAssertEqual(MTASTSRecord("v=STSv1; id=abc; ext=1")?.id, "abc", "extensions are ignored")
        XCTAssertNil(MTASTSRecord("v=STSv2; id=abc"))
        XCTAssertNil(MTASTSRecord("v=STSv1"), "id is required")
        XCTAssertNil(MTASTSRecord("v=STSv1; id=has-dash"), "id is alphanumeric")
        XCTAssertNil(MTASTSRecord("v=STSv1; id=" + String(repeating: "a", count: 33)), "id is at most 32 characters")
        XCTAssertEqual(MTASTSRecord.select(["spf stuff", "v=STSv1; id=1"])?.id, "1")
        XCTAssertNil(MTASTSRecord.select(["v=STSv1; id=1", "v=STSv1; id=2"]), "two records: no policy")
    }

    func testPolicyParsing() throws {
        let text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com.\r\nmax_age: 604800\r\n"
        let policy = try MTASTSPolicy.parse(Array(text.utf8))
        XCTAssertEqual(policy.mode, .enforce)
        XCTAssertEqual(policy.mx, ["mail.example.com", "*.example.net", "backupmx.example.com"])
        XCTAssertEqual(policy.maxAge, 604800)
        // LF line ends, spaces around the colon, unknown keys: all fine.
        let loose = try MTASTSPolicy.parse(Array("version:STSv1\nmode : testing\nmx:MX.Example.COM\nmax_age:  86400\nfoo: bar\n".utf8))
        XCTAssertEqual(loose.mode, .testing)
        XCTAssertEqual(loose.mx, ["mx.example.com"])
        let none = try MTASTSPolicy.parse(Array("version: STSv1\nmode: none\nmax_age: 86400\n".utf8))
        XCTAssertEqual(none.mode, .none, "mode none needs no mx")
    }

    func testMalformedPoliciesAreRejected() {
        let cases = [
            "mode: enforce\nmx: a.example\nmax_age: 1\n",                                  // no version
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",                  // wrong version
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",                   // bad mode
            "version: STSv1\nmode: enforce\nmax_age: 1\n",                                 // no mx
            "version: STSv1\nmode: enforce\nmx: a.example\n",                              // no max_age
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",           // over a year
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -5\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n",        // 11 digits
            "version: STSv1\nmode: enforce\nmx: mail.*.example\nmax_age: 1\n",            // wildcard not leftmost
            "version: STSv1\nmode: enforce\nmx: *example.com\nmax_age: 1\n",              // partial-label wildcard
            "version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n",  // twice
            "version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n",                   // no colon
        ]
        for text in cases {
            XCTAssertThrowsError(try MTASTSPolicy.parse(Array(text.utf8)), text)
        }
        let huge = [UInt8](repeating: 0x61, count: MTASTSPolicy.maxBodySize + 1)
        XCTAssertThrowsError(try MTASTSPolicy.parse(huge))
        XCTAssertThrowsError(try MTASTSPolicy.parse([0xFF, 0xFE, 0x0A]))
    }

    func testMXMatching() {
        let policy = MTASTSPolicy(mode: .enforce, mx: ["mail.example.com", "*.example.net"], maxAge: 86400)
        XCTAssertTrue(policy.matches(mxHost: "mail.example.com"))
        XCTAssertTrue(policy.matches(mxHost: "MAIL.example.com."))
        XCTAssertTrue(policy.matches(mxHost: "mx1.example.net"))
        XCTAssertFalse(policy.matches(mxHost: "example.net"), "the wildcard needs a label")
        XCTAssertFalse(policy.matches(mxHost: "a.b.example.net"), "the wildcard is one label only")
        XCTAssertFalse(policy.matches(mxHost: "xexample.net"))
        XCTAssertFalse(policy.matches(mxHost: "mail.example.com.evil.org"))
        XCTAssertEqual(policy.policyStrings, ["version: STSv1", "mode: enforce", "mx: mail.example.com", "mx: *.example.net", "max_age: 86400"])
    }

    func testCacheKeepsAValidPolicyWhenTheFetchFailsAndPersistsIt() async throws {
        let directory = temporaryDirectory("mta-sts-cache")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/mta-sts-cache.json"
        // Seed the durable cache as a previous run would have left it.
        let entry = MTASTSPolicyCache.Entry(id: "old", policy: MTASTSPolicy(mode: .enforce, mx: ["mx.example.org"], maxAge: 86400),
                                            fetched: Date() - 3600)
        try JSONEncoder().encode(["example.org": entry]).write(to: URL(fileURLWithPath: file))
        var resolver = StaticResolver()
        // The TXT id changed, and mta-sts.example.org has no address: the fetch fails.
        try resolver.add(zone: "_mta-sts.example.org. 300 IN TXT \"v=STSv1; id=new\"")
        let cache = MTASTSPolicyCache(resolver: resolver, cacheFile: file, port: 1)
        let lookup = await cache.lookup(domain: "example.org")
        XCTAssertEqual(lookup, .policy(entry.policy), "§5.1: a valid cached policy survives a failed refresh")
        // Without anything cached the failure is reported.
        let other = MTASTSPolicyCache(resolver: try {
            var r = StaticResolver(); try r.add(zone: "_mta-sts.example.com. 300 IN TXT \"v=STSv1; id=1\""); return r
        }(), cacheFile: nil, port: 1)
        let failed = await other.lookup(domain: "example.com")
        guard case .failed(.stsPolicyFetchError, _) = failed else { return XCTFail("\(failed)") }
        // No TXT record and no cache: no policy.
        let absent = await other.lookup(domain: "example.net")
        XCTAssertEqual(absent, .none)
        // An expired cache entry is not used.
        let stale = MTASTSPolicyCache.Entry(id: "x", policy: entry.policy, fetched: Date() - 86400 * 2)
        try JSONEncoder().encode(["example.org": stale]).write(to: URL(fileURLWithPath: file))
        let fresh = MTASTSPolicyCache(resolver: StaticResolver(), cacheFile: file, port: 1)
        let expired = await fresh.lookup(domain: "example.org")
        XCTAssertEqual(expired, .none)
    }
}
