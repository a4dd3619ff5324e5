import XCTest
@testable import FacteurDNS

final class DNSNameTests: XCTestCase {
    func testParsesWithAndWithoutFinalDot() throws {
        let a = try DNSName("mail.Example.COM")
        let b = try DNSName("mail.example.com.")
        XCTAssertEqual(a.labels.count, 3)
        XCTAssertEqual(a, b, "RFC 4343: comparison ignores ASCII case")
        XCTAssertEqual(a.hashValue, b.hashValue)
        XCTAssertEqual(a.description, "mail.Example.COM", "the original spelling is kept")
        XCTAssertEqual(a.wireLength, 18)
        XCTAssertEqual(try DNSName("."), .root)
        XCTAssertEqual(DNSName.root.description, ".")
    }

    func testLimits() {
        let label63 = String(repeating: "a", count: 63)
        XCTAssertNoThrow(try DNSName("\(label63).example"))
        XCTAssertThrowsError(try DNSName(String("\(label63)a.example"))) { XCTAssertEqual($0 as? DNSNameError, .labelTooLong) }
        // 4 labels of 63 + 4 length octets + root = 257 > 255; 3 labels of 63 + one of 61 = 255 exactly.
        let tooLong = Array(repeating: label63, count: 4).joined(separator: ".")
        XCTAssertThrowsError(try DNSName(tooLong)) { XCTAssertEqual($0 as? DNSNameError, .nameTooLong) }
        let exact = Array(repeating: label63, count: 3).joined(separator: ".") + "." + String(repeating: "b", count: 61)
        XCTAssertEqual(try DNSName(exact).wireLength, 255)
        XCTAssertThrowsError(try DNSName(String("a..b"))) { XCTAssertEqual($0 as? DNSNameError, .emptyLabel) }
        XCTAssertThrowsError(try DNSName(String(".a"))) { XCTAssertEqual($0 as? DNSNameError, .emptyLabel) }
        XCTAssertThrowsError(try DNSName(String(""))) { XCTAssertEqual($0 as? DNSNameError, .emptyLabel) }
        XCTAssertThrowsError(try DNSName(String("bücher.example"))) { XCTAssertEqual($0 as? DNSNameError, .notASCII) }
        XCTAssertNoThrow(try DNSName("xn--bcher-kva.example"), "A-labels are fine")
    }

    func testEscapes() throws {
        let name = try DNSName(#"a\.b.c\065"#)
        XCTAssertEqual(name.labels, [Array("a.b".utf8), Array("cA".utf8)])
        XCTAssertEqual(name.description, #"a\.b.cA"#)
        XCTAssertEqual(try DNSName(labels: [[0x01, 0x20]]).description, #"\001\032"#)
        XCTAssertThrowsError(try DNSName(String(#"a\"#)))
        XCTAssertThrowsError(try DNSName(String(#"a\25"#)))
        XCTAssertThrowsError(try DNSName(String(#"a\256"#)))
    }

    func testSubdomainParentAndPrepend() throws {
        let host: DNSName = "mx.example.org"
        XCTAssertTrue(host.isSubdomain(of: "EXAMPLE.org"))
        XCTAssertTrue(host.isSubdomain(of: .root))
        XCTAssertFalse(host.isSubdomain(of: "ample.org"))
        XCTAssertEqual(host.parent, "example.org")
        XCTAssertEqual(try host.prepending("_25._tcp"), "_25._tcp.mx.example.org")
    }

    func testReverseNames() {
        XCTAssertEqual(DNSName(reverseOf: IPAddress("192.0.2.10")!).description, "10.2.0.192.in-addr.arpa")
        // RFC 3596 §2.5 example form.
        XCTAssertEqual(DNSName(reverseOf: IPAddress("2001:db8::567:89ab")!).description,
                       "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa")
    }

    func testAddresses() {
        XCTAssertEqual(IPv4Address("192.0.2.1")?.bytes, [192, 0, 2, 1])
        for bad in ["192.0.2", "192.0.2.256", "01.2.3.4", "1.2.3.4.5", "a.b.c.d", ""] {
            XCTAssertNil(IPv4Address(bad), bad)
        }
        XCTAssertEqual(IPv6Address("2001:DB8:0:0:1:0:0:1")?.description, "2001:db8::1:0:0:1", "RFC 5952 §4.2.3: first longest run")
        XCTAssertEqual(IPv6Address("::1")?.description, "::1")
        XCTAssertEqual(IPv6Address("::")?.description, "::")
        XCTAssertEqual(IPv6Address("2001:db8:0:1:1:1:1:1")?.description, "2001:db8:0:1:1:1:1:1", "RFC 5952 §4.2.2: no :: for one group")
        XCTAssertEqual(IPv6Address("::ffff:192.0.2.1")?.bytes.suffix(6), [0xff, 0xff, 192, 0, 2, 1])
        for bad in [":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "g::", "1:2:3:4:5:6:7", ":1::"] {
            XCTAssertNil(IPv6Address(bad), bad)
        }
    }
}
