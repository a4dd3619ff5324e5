// The outbound TLS policy decision (TransportPolicy.swift): DANE only under a validated MX RRset
// and TLSA RRset (RFC 7672 §2.2), TLSA SERVFAIL making a host unusable, MTA-STS enforce and testing
// (RFC 8461 §5), overrides, REQUIRETLS (RFC 8689 §5) and TLS-Required: No.

import FacteurDNS
import FacteurStore
import Foundation
import XCTest
@testable import FacteurQueue

final class TransportPolicyTests: XCTestCase {
    let zone = """
        example.org. 300 IN MX 10 mx.example.org.
        mx.example.org. 300 IN A 127.0.0.1
        _25._tcp.mx.example.org. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
        """

    func routed(_ resolver: StaticResolver) async throws -> RoutedTargets {
        try await MXRouter(resolver: resolver, ipv6Enabled: false).routedTargets(for: "example.org").get()
    }

    func decide(_ resolver: StaticResolver, sts: MTASTSLookup = .none, demand: MessageTLSDemand = .standard,
                overrides: [String: DomainTLSOverride] = [:]) async throws -> TransportPolicyDecision {
        let policy = TransportPolicyResolver(resolver: resolver, configuration: OutboundTLSConfiguration(overrides: overrides), mtaSTS: nil)
        return await policy.decide(domain: "example.org", routed: try await routed(resolver), sts: sts, demand: demand, now: Date())
    }

    func testDANEOnlyWhenEverythingIsValidated() async throws {
        var secure = StaticResolver(authenticData: true)
        try secure.add(zone: zone)
        let routedSecure = try await routed(secure)
        XCTAssertTrue(routedSecure.mxAuthenticated)
        let decision = try await decide(secure)
        guard case .dane(let records, let names) = decision.targets.first?.policy.requirement else {
            return XCTFail("\(decision.targets)")
        }
        XCTAssertEqual(records.count, 1)
        XCTAssertEqual(names, ["mx.example.org"])
        XCTAssertEqual(decision.targets.first?.policy.policyType, .tlsa)
        XCTAssertTrue(decision.targets.first?.policy.enforced == true)

        var insecure = StaticResolver(authenticData: false)
        try insecure.add(zone: zone)
        let plain = try await decide(insecure)
        XCTAssertEqual(plain.targets.first?.policy, .opportunistic, "unsigned: no DANE")
    }

    func testTLSAServerFailureUnderASecureMXMakesTheHostUnusable() async throws {
        var resolver = StaticResolver(authenticData: true)
        try resolver.add(zone: zone)
        resolver.inject(.serverFailure, name: try DNSName("_25._tcp.mx.example.org"), type: .tlsa)
        let decision = try await decide(resolver)
        XCTAssertTrue(decision.targets.isEmpty)
        XCTAssertFalse(decision.permanent)
        XCTAssertTrue(decision.failureReply?.hasPrefix("451 4.7.5") == true, decision.failureReply ?? "")
        XCTAssertEqual(decision.outcomes.first?.failure, .dnssecInvalid)
    }

    func testMTASTSEnforceAndTesting() async throws {
        var resolver = StaticResolver()
        try resolver.add(zone: zone)
        let matching = MTASTSPolicy(mode: .enforce, mx: ["*.example.org"], maxAge: 86400)
        let good = try await decide(resolver, sts: .policy(matching))
        XCTAssertEqual(good.targets.first?.policy.requirement, .webPKI)
        XCTAssertEqual(good.targets.first?.policy.enforced, true)
        XCTAssertEqual(good.targets.first?.policy.policyType, .sts)

        let other = MTASTSPolicy(mode: .enforce, mx: ["mail.example.com"], maxAge: 86400)
        let held = try await decide(resolver, sts: .policy(other))
        XCTAssertTrue(held.targets.isEmpty, "enforce: a host outside the policy is never used")
        XCTAssertFalse(held.permanent)
        XCTAssertTrue(held.failureReply?.contains("MTA-STS") == true, held.failureReply ?? "")
        XCTAssertEqual(held.outcomes.first?.failure, .validationFailure)

        var testing = other
        testing.mode = .testing
        let tried = try await decide(resolver, sts: .policy(testing))
        XCTAssertEqual(tried.targets.count, 1, "testing: deliver anyway")
        XCTAssertEqual(tried.targets.first?.policy.enforced, false)
        XCTAssertEqual(tried.outcomes.count, 1, "and report the mismatch")

        let exempt = try await decide(resolver, sts: .policy(other), demand: .policyExempt)
        XCTAssertEqual(exempt.targets.first?.policy.requirement, .opportunistic, "TLS-Required: No ignores the policy")
        XCTAssertEqual(exempt.targets.first?.policy.enforced, false)
    }

    func testDANEWinsOverMTASTSAndOverrides() async throws {
        var resolver = StaticResolver(authenticData: true)
        try resolver.add(zone: zone)
        let decision = try await decide(resolver, sts: .policy(MTASTSPolicy(mode: .enforce, mx: ["other.example"], maxAge: 60)),
                                        overrides: ["example.org": .allowPlaintext])
        guard case .dane = decision.targets.first?.policy.requirement else { return XCTFail("\(decision)") }
    }

    func testOverrides() async throws {
        var resolver = StaticResolver()
        try resolver.add(zone: zone)
        let tls = try await decide(resolver, overrides: ["example.org": .requireTLS])
        XCTAssertEqual(tls.targets.first?.policy.requirement, .encrypted)
        XCTAssertEqual(tls.targets.first?.policy.enforced, true)
        let verified = try await decide(resolver, overrides: ["example.org": .requireVerified])
        XCTAssertEqual(verified.targets.first?.policy.requirement, .webPKI)
        let plain = try await decide(resolver, overrides: ["example.org": .allowPlaintext])
        XCTAssertEqual(plain.targets.first?.policy.requirement, .plaintextOnly)
    }

    func testREQUIRETLSNeedsAnAuthenticatedMX() async throws {
        var insecure = StaticResolver()
        try insecure.add(zone: zone)
        let refused = try await decide(insecure, demand: .requireTLS)
        XCTAssertTrue(refused.targets.isEmpty)
        XCTAssertTrue(refused.permanent)
        XCTAssertTrue(refused.failureReply?.hasPrefix("550 5.7.30") == true, refused.failureReply ?? "")
        // Listed by MTA-STS (even in testing): the MX counts as authenticated, WebPKI is then required.
        let listed = try await decide(insecure, sts: .policy(MTASTSPolicy(mode: .testing, mx: ["mx.example.org"], maxAge: 60)),
                                      demand: .requireTLS)
        XCTAssertEqual(listed.targets.first?.policy.requirement, .webPKI)
        XCTAssertEqual(listed.targets.first?.policy.enforced, true)
        // A DNSSEC-validated MX without TLSA: WebPKI.
        var signed = StaticResolver(authenticData: true)
        try signed.add(zone: "example.org. 300 IN MX 10 mx.example.org.\nmx.example.org. 300 IN A 127.0.0.1")
        let pkix = try await decide(signed, demand: .requireTLS)
        XCTAssertEqual(pkix.targets.first?.policy.requirement, .webPKI)
    }
}
