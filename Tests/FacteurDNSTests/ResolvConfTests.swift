import XCTest
@testable import FacteurDNS

final class ResolvConfTests: XCTestCase {
    func testParsesNameserversAndOptions() {
        let conf = ResolvConf(parsing: """
            # generated
            search example.org
            nameserver 192.0.2.53
            nameserver fe80::1%eth0 ; link-local with scope
            nameserver not-an-address
            nameserver 198.51.100.53
            nameserver 203.0.113.53
            options ndots:2 timeout:3 attempts:4 trust-ad rotate
            """)
        XCTAssertEqual(conf.nameservers.map(\.description), ["192.0.2.53", "fe80::1", "198.51.100.53"],
                       "at most three servers, bad lines skipped, %scope dropped")
        XCTAssertEqual(conf.timeoutSeconds, 3)
        XCTAssertEqual(conf.attempts, 4)
        XCTAssertTrue(conf.trustAD)
        XCTAssertTrue(conf.rotate)
    }

    func testDefaultsAndClamps() throws {
        let empty = ResolvConf(parsing: "")
        XCTAssertEqual(empty.timeoutSeconds, 5)
        XCTAssertEqual(empty.attempts, 2)
        XCTAssertFalse(empty.trustAD)
        let clamped = ResolvConf(parsing: "options timeout:999 attempts:0\r\nnameserver 127.0.0.1\r\n")
        XCTAssertEqual(clamped.timeoutSeconds, 30)
        XCTAssertEqual(clamped.attempts, 1)
        XCTAssertEqual(clamped.nameservers.map(\.description), ["127.0.0.1"], "CRLF lines are read too")
        let config = try DNSClientConfiguration(resolvConf: empty)
        XCTAssertEqual(config.servers.first?.ipAddress, "127.0.0.1", "no nameserver line: the local host")
        XCTAssertEqual(config.servers.first?.port, 53)
    }

    func testLoadsAFileAndToleratesAMissingOne() throws {
        let path = NSTemporaryDirectory() + "resolv-\(UUID().uuidString).conf"
        try "nameserver 10.0.0.1\noptions attempts:3\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let conf = ResolvConf.load(path: path)
        XCTAssertEqual(conf.nameservers.map(\.description), ["10.0.0.1"])
        XCTAssertEqual(conf.attempts, 3)
        XCTAssertEqual(ResolvConf.load(path: path + ".missing").nameservers, [])
    }
}
