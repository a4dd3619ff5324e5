// MX routing (RFC 5321 §5.1): preference order, implicit MX, null MX (RFC 7505), IPv6 on/off,
// DNS failures temporary vs permanent; and the source address of outbound connections.

import FacteurDNS
import Foundation
import XCTest
@testable import FacteurQueue

final class RoutingTests: XCTestCase {
    func router(_ zone: String, ipv6: Bool = true, failures: [(StaticResolverFailure, String, DNSRecordType?)] = []) throws -> MXRouter {
        var resolver = StaticResolver()
        try resolver.add(zone: zone)
        for (failure, name, type) in failures { resolver.inject(failure, name: try DNSName(name), type: type) }
        return MXRouter(resolver: resolver, ipv6Enabled: ipv6, port: 2525)
    }

    let zone = """
        example.org. 300 IN MX 20 b.example.org.
        example.org. 300 IN MX 10 a.example.org.
        a.example.org. 300 IN A 192.0.2.1
        a.example.org. 300 IN AAAA 2001:db8::1
        b.example.org. 300 IN A 192.0.2.2
        plain.example. 300 IN A 192.0.2.3
        nomail.example. 300 IN MX 0 .
        """

    func testPreferenceOrderAndIPv6First() async throws {
        let targets = try await router(zone).targets(for: "example.org").get()
        XCTAssertEqual(targets.map(\.hostname), ["a.example.org", "b.example.org"])
        XCTAssertEqual(targets[0].addresses, ["2001:db8::1", "192.0.2.1"])
        XCTAssertEqual(targets[0].port, 2525)
        let v4only = try await router(zone, ipv6: false).targets(for: "example.org").get()
        XCTAssertEqual(v4only[0].addresses, ["192.0.2.1"], "IPv6 switched off")
    }

    func testImplicitMXNullMXAndNXDOMAIN() async throws {
        let implicit = try await router(zone).targets(for: "plain.example").get()
        XCTAssertEqual(implicit.map(\.hostname), ["plain.example"])
        XCTAssertEqual(implicit[0].addresses, ["192.0.2.3"])
        guard case .failure(let null) = try await router(zone).targets(for: "nomail.example") else { return XCTFail() }
        XCTAssertTrue(null.permanent)
        XCTAssertTrue(null.reply.hasPrefix("556 5.1.10"))
        guard case .failure(let missing) = try await router(zone).targets(for: "missing.example") else { return XCTFail() }
        XCTAssertTrue(missing.permanent)
    }

    func testTemporaryDNSFailures() async throws {
        guard case .failure(let mx) = try await router(zone, failures: [(.timeout, "example.org", .mx)]).targets(for: "example.org") else {
            return XCTFail()
        }
        XCTAssertFalse(mx.permanent)
        guard case .failure(let address) = try await router(zone, failures: [(.serverFailure, "a.example.org", nil),
                                                                          (.serverFailure, "b.example.org", nil)])
            .targets(for: "example.org") else { return XCTFail() }
        XCTAssertFalse(address.permanent, "SERVFAIL on every MX host's address is temporary")
        let partial = try await router(zone, failures: [(.serverFailure, "a.example.org", nil)]).targets(for: "example.org").get()
        XCTAssertEqual(partial.map(\.hostname), ["b.example.org"], "the hosts that resolve are still tried")
    }

    func testConfiguredSourceAddress() async throws {
        let directory = temporaryDirectory("source")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory)
        let connection = try await SMTPClientConnection.open(
            hostname: "mx", address: "127.0.0.1", port: listener.localAddress!.port!,
            configuration: SMTPClientConfiguration(heloName: "out.example.net", timeouts: .uniform(.seconds(5)), sourceIPv4: "127.0.0.5"))
        _ = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                      message: crlf("Subject: s\n\nx\n"))
        await connection.quit()
        XCTAssertEqual(backend.last?.0.clientAddress, "127.0.0.5")
        await listener.shutdown(grace: .seconds(1))
    }
}
