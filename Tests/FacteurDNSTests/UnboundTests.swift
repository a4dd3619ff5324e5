import Foundation
import NIOCore
import NIOPosix
import XCTest
@testable import FacteurDNS

/// A real unbound (Debian's `unbound` package) on a free loopback port, serving local-data only:
/// no recursion (everything outside the local zones is refused), no remote control, no daemon.
final class UnboundServer: @unchecked Sendable {
    let process: Process
    let directory: URL
    let port: Int

    static let longTXTFirst = String(repeating: "a", count: 255)
    static let longTXTSecond = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
    /// Enough A records that the answer (about 16 octets each) passes 1232 octets: UDP must truncate.
    static let manyCount = 120

    private init(process: Process, directory: URL, port: Int) {
        self.process = process
        self.directory = directory
        self.port = port
    }

    /// FACTEUR_UNBOUND names the binary when it is elsewhere (or, set to a missing path, shows the skip).
    static func executable() -> String? {
        if let path = ProcessInfo.processInfo.environment["FACTEUR_UNBOUND"] {
            return FileManager.default.isExecutableFile(atPath: path) ? path : nil
        }
        for path in ["/usr/sbin/unbound", "/usr/local/sbin/unbound", "/opt/homebrew/sbin/unbound"]
        where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        return nil
    }

    static func config(directory: URL, port: Int) -> String {
        var lines = [
            "server:",
            "  interface: 127.0.0.1",
            "  port: \(port)",
            "  do-daemonize: no",
            "  chroot: \"\"",
            "  username: \"\"",
            "  directory: \"\(directory.path)\"",
            "  pidfile: \"\(directory.path)/unbound.pid\"",
            "  use-syslog: no",
            "  logfile: \"\"",
            "  verbosity: 1",
            "  num-threads: 1",
            "  do-ip6: no",
            "  do-not-query-localhost: no",
            "  access-control: 127.0.0.0/8 allow",
            "  module-config: \"iterator\"",
            // Nothing leaves the machine: every name outside the local zones is refused.
            "  local-zone: \".\" refuse",
            "  local-zone: \"example.test.\" static",
            "  local-data: \"example.test. 3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\"",
            "  local-data: \"example.test. 300 IN MX 20 mx2.example.test.\"",
            "  local-data: \"example.test. 300 IN MX 10 mx1.example.test.\"",
            "  local-data: 'example.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"'",
            "  local-data: 'long.example.test. 300 IN TXT \"\(longTXTFirst)\" \"\(longTXTSecond)\"'",
            "  local-data: \"mx1.example.test. 300 IN A 192.0.2.1\"",
            "  local-data: \"mx1.example.test. 300 IN AAAA 2001:db8::1\"",
            "  local-data: \"mx2.example.test. 300 IN A 192.0.2.2\"",
            "  local-data: \"alias.example.test. 300 IN CNAME mx1.example.test.\"",
            "  local-data: \"_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"",
            "  local-zone: \"2.0.192.in-addr.arpa.\" static",
            "  local-data: \"2.0.192.in-addr.arpa. 3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\"",
            "  local-data-ptr: \"192.0.2.1 mx1.example.test.\"",
        ]
        for index in 1...manyCount {
            lines.append("  local-data: \"many.example.test. 300 IN A 10.0.\(index / 256).\(index % 256)\"")
        }
        lines += ["remote-control:", "  control-enable: no", ""]
        return lines.joined(separator: "\n")
    }

    /// A port free for both UDP and TCP on 127.0.0.1 right now.
    static func freePort() async throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        for _ in 0..<20 {
            let udp = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
            let port = udp.localAddress!.port!
            let tcp = try? await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: port).get()
            try? await tcp?.close()
            try? await udp.close()
            if tcp != nil { return port }
        }
        throw XCTSkip("no free port found")
    }

    static func start(executable: String) async throws -> UnboundServer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-unbound-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var lastLog = ""
        for _ in 0..<3 {
            let port = try await freePort()
            let configPath = directory.appendingPathComponent("unbound.conf")
            try config(directory: directory, port: port).write(to: configPath, atomically: true, encoding: .utf8)
            let logPath = directory.appendingPathComponent("unbound.log")
            _ = FileManager.default.createFile(atPath: logPath.path, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["-d", "-c", configPath.path]
            let log = try FileHandle(forWritingTo: logPath)
            process.standardOutput = log
            process.standardError = log
            try process.run()
            let server = UnboundServer(process: process, directory: directory, port: port)
            // Ready when it answers the zone's SOA.
            let probe = DNSClient(configuration: DNSClientConfiguration(
                servers: [try SocketAddress(ipAddress: "127.0.0.1", port: port)], timeout: .milliseconds(200), cache: nil))
            for _ in 0..<50 where process.isRunning {
                if (try? await probe.query(name: DNSName("example.test"), type: .soa)) != nil {
                    return server
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            lastLog = (try? String(contentsOf: logPath, encoding: .utf8)) ?? ""
            server.stop()
        }
        throw UnboundStartError(log: lastLog)
    }

    func client(timeout: TimeAmount = .seconds(2), extraServersFirst: [SocketAddress] = [],
                cache: DNSCacheConfiguration? = nil) throws -> DNSClient {
        DNSClient(configuration: DNSClientConfiguration(
            servers: extraServersFirst + [try SocketAddress(ipAddress: "127.0.0.1", port: port)],
            timeout: timeout, attempts: 1, cache: cache))
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    func removeFiles() {
        try? FileManager.default.removeItem(at: directory)
    }
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
