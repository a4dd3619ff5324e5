import FacteurTestSupport
import Foundation
import NIOCore
import NIOPosix
import XCTest
@testable import FacteurDNS

/// The DNS client's zone, served by FacteurTestSupport's `UnboundProcess` (a real unbound on a
/// free loopback port, local data only, nothing forwarded).
final class UnboundServer: @unchecked Sendable {
    let unbound: UnboundProcess
    var port: Int { unbound.port }

    static let longTXTFirst = String(repeating: "a", count: 255)
    static let longTXTSecond = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
    /// Enough A records that the answer (about 16 octets each) passes 1232 octets: UDP must truncate.
    static let manyCount = 120

    private init(unbound: UnboundProcess) { self.unbound = unbound }

    static func executable() -> String? { UnboundProcess.executable() }

    static var zones: [String: [String]] {
        var test = [
            "example.test. 300 IN MX 20 mx2.example.test.",
            "example.test. 300 IN MX 10 mx1.example.test.",
            "example.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"",
            "long.example.test. 300 IN TXT \"\(longTXTFirst)\" \"\(longTXTSecond)\"",
            "mx1.example.test. 300 IN A 192.0.2.1",
            "mx1.example.test. 300 IN AAAA 2001:db8::1",
            "mx2.example.test. 300 IN A 192.0.2.2",
            "alias.example.test. 300 IN CNAME mx1.example.test.",
            "_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ]
        for index in 1...manyCount { test.append("many.example.test. 300 IN A 10.0.\(index / 256).\(index % 256)") }
        return ["example.test": test, "2.0.192.in-addr.arpa": ["1.2.0.192.in-addr.arpa. 300 IN PTR mx1.example.test."]]
    }

    static func start(executable: String) async throws -> UnboundServer {
        var lastError: (any Error)?
        for _ in 0..<3 {
            guard let port = UnboundProcess.freePort() else { break }
            do {
                return UnboundServer(unbound: try UnboundProcess(executable: executable, port: port, zones: zones))
            } catch {
                lastError = error
            }
        }
        throw UnboundStartError(log: "\(lastError.map { "\($0)" } ?? "no free port")")
    }

    func client(timeout: TimeAmount = .seconds(2), extraServersFirst: [SocketAddress] = [],
                cache: DNSCacheConfiguration? = nil) throws -> DNSClient {
        DNSClient(configuration: DNSClientConfiguration(
            servers: extraServersFirst + [try SocketAddress(ipAddress: "127.0.0.1", port: port)],
            timeout: timeout, attempts: 1, cache: cache))
    }

    func stop() { unbound.stop() }

    func removeFiles() {}
}

struct UnboundStartError: Error, CustomStringConvertible {
    var log: String
    var description: String { "unbound did not start: \(log)" }
}

/// The NIO client against the real unbound.
final class UnboundTests: XCTestCase {
    nonisolated(unsafe) static var server: UnboundServer?
    nonisolated(unsafe) static var startError: (any Error)?

    override class func tearDown() {
        server?.stop()
        server?.removeFiles()
        server = nil
        super.tearDown()
    }

    /// The shared unbound, started on first use. Skips when unbound is missing, unless
    /// FACTEUR_REQUIRE_ALL=1 says every test must really run.
    func unbound() async throws -> UnboundServer {
        guard let executable = UnboundServer.executable() else {
            let message = "unbound is not installed (apt-get install -y unbound); real-DNS tests skipped"
            if ProcessInfo.processInfo.environment["FACTEUR_REQUIRE_ALL"] == "1" {
                throw UnboundStartError(log: message + ", but FACTEUR_REQUIRE_ALL=1 requires it")
            }
            throw XCTSkip(message)
        }
        if let server = Self.server { return server }
        if let error = Self.startError { throw error }
        do {
            let server = try await UnboundServer.start(executable: executable)
            Self.server = server
            return server
        } catch {
            Self.startError = error
            throw error
        }
    }

    func testMXAddressesAndReverse() async throws {
        let dns = try await unbound().client()
        let mx = try await dns.mx(DNSName("example.test"))
        XCTAssertEqual(mx.map(\.preference), [10, 20])
        XCTAssertEqual(mx.map(\.exchange.description), ["mx1.example.test", "mx2.example.test"])
        let a = try await dns.a(DNSName("mx1.example.test"))
        XCTAssertEqual(a.map(\.description), ["192.0.2.1"])
        let aaaa = try await dns.aaaa(DNSName("mx1.example.test"))
        XCTAssertEqual(aaaa.map(\.description), ["2001:db8::1"])
        let ptr = try await dns.ptr(IPAddress("192.0.2.1")!)
        XCTAssertEqual(ptr.map(\.description), ["mx1.example.test"])
        let tlsa = try await dns.tlsa(host: DNSName("mx1.example.test"), port: 25)
        XCTAssertEqual(tlsa.records.first?.certificateUsage, 3)
        XCTAssertEqual(tlsa.records.first?.certificateAssociationData.first, 0x00)
        XCTAssertEqual(tlsa.records.first?.certificateAssociationData.count, 32)
        XCTAssertFalse(tlsa.authenticData, "local data is not DNSSEC-validated, and AD is not trusted by default")
    }

    func testTXTSplitIntoStringsIsJoined() async throws {
        let dns = try await unbound().client()
        let txt = try await dns.txt(DNSName("long.example.test"))
        XCTAssertEqual(txt.count, 1)
        XCTAssertEqual(txt.first?.strings.map(\.count), [255, UnboundServer.longTXTSecond.utf8.count])
        XCTAssertEqual(txt.first?.text, UnboundServer.longTXTFirst + UnboundServer.longTXTSecond, "RFC 7208 §3.3")
        let spf = try await dns.txt(DNSName("EXAMPLE.test"))
        XCTAssertEqual(spf.first?.text, "v=spf1 ip4:192.0.2.0/24 -all")
    }

    func testTruncatedUDPFallsBackToTCP() async throws {
        let server = try await unbound()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: server.port)
        // First, show that this answer really does not fit over UDP.
        let question = DNSQuestion(name: DNSName("many.example.test"), type: .a)
        let udp = try await DNSTransport.udp(query: .query(id: 4242, question: question), server: address,
                                             timeout: .seconds(2), group: MultiThreadedEventLoopGroup.singleton)
        XCTAssertTrue(udp.truncated, "the UDP reply must have TC set")
        // Then the client gets all of it (over TCP).
        let addresses = try await server.client().a(DNSName("many.example.test"))
        XCTAssertEqual(addresses.count, UnboundServer.manyCount)
        XCTAssertEqual(Set(addresses).count, UnboundServer.manyCount)
    }

    func testCNAME() async throws {
        let answer = try await unbound().client().query(name: DNSName("alias.example.test"), type: .a)
        XCTAssertEqual(answer.canonicalName.description, "mx1.example.test")
        XCTAssertEqual(answer.cnameChain.count, 1)
        XCTAssertEqual(answer.records.map(\.data), [.a(IPv4Address("192.0.2.1")!)])
    }

    func testNXDOMAINNoDataAndRefusedStayDistinct() async throws {
        let dns = try await unbound().client(cache: DNSCacheConfiguration())
        let nx = await expectDNSError { () async throws(DNSError) in try await dns.mx(DNSName("missing.example.test")) }
        guard case .nxdomain(let negative) = nx else { return XCTFail("\(String(describing: nx))") }
        XCTAssertNotNil(negative.negativeTTL)
        XCTAssertLessThanOrEqual(negative.negativeTTL ?? 0, 60, "RFC 2308 §5: bounded by the SOA MINIMUM")

        let noData = await expectDNSError { () async throws(DNSError) in try await dns.mx(DNSName("mx1.example.test")) }
        guard case .noData(let empty) = noData else { return XCTFail("\(String(describing: noData))") }
        XCTAssertEqual(empty.name.description, "mx1.example.test")

        let refused = await expectDNSError { () async throws(DNSError) in try await dns.a(DNSName("example.com")) }
        guard case .refused = refused else { return XCTFail("\(String(describing: refused))") }
        XCTAssertEqual(refused?.isTemporary, true)
    }

    func testDeadServerFirstThenUnbound() async throws {
        let silent = try await FakeDNSServer.start { _, _ in [] }
        defer { Task { await silent.stop() } }
        let dns = try await unbound().client(timeout: .milliseconds(300), extraServersFirst: [silent.address])
        let a = try await dns.a(DNSName("mx2.example.test"))
        XCTAssertEqual(a.map(\.description), ["192.0.2.2"])
        XCTAssertEqual(silent.queries.count, 1)
    }

    func testConfigurationFromResolvConf() async throws {
        let server = try await unbound()
        let conf = ResolvConf(parsing: "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
        let dns = DNSClient(configuration: try DNSClientConfiguration(resolvConf: conf, port: server.port))
        let mx = try await dns.mx(DNSName("example.test"))
        XCTAssertEqual(mx.count, 2)
    }
}
