import FacteurTestSupport
import XCTest
@testable import FacteurDNS

/// Builds messages byte by byte, as RFC 1035 §4.1 lays them out, for hand-made responses.
struct PacketBuilder {
    var bytes: [UInt8] = []
    mutating func u16(_ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    mutating func u32(_ v: UInt32) { bytes += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    mutating func label(_ s: String) { bytes.append(UInt8(s.utf8.count)); bytes += Array(s.utf8) }
    mutating func name(_ labels: [String]) { labels.forEach { label($0) }; bytes.append(0) }
    mutating func pointer(_ offset: Int) { bytes += [0xC0 | UInt8(offset >> 8), UInt8(offset & 0xFF)] }
    mutating func header(id: UInt16 = 0x1234, flags: UInt16 = 0x8180, qd: UInt16 = 1, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) {
        u16(id); u16(flags); u16(qd); u16(an); u16(ns); u16(ar)
    }
}

final class DNSWireTests: XCTestCase {
    /// A response to `example.com MX` whose answer names point back at the question (RFC 1035 §4.1.4).
    func compressedMXResponse() -> [UInt8] {
        var p = PacketBuilder()
        p.header(an: 2)
        p.name(["example", "com"])               // offset 12
        p.u16(15); p.u16(1)
        p.pointer(12); p.u16(15); p.u16(1); p.u32(300)
        p.u16(9); p.u16(10); p.label("mail"); p.pointer(12)   // 10 mail.example.com
        p.pointer(12); p.u16(15); p.u16(1); p.u32(200)
        p.u16(10); p.u16(5); p.label("mail2"); p.pointer(12)  // 5 mail2.example.com
        return p.bytes
    }

    func testDecodesCompressedNames() throws {
        let message = try DNSMessage(decoding: compressedMXResponse())
        XCTAssertEqual(message.header.id, 0x1234)
        XCTAssertTrue(message.header.isResponse)
        XCTAssertTrue(message.header.recursionAvailable)
        XCTAssertEqual(message.responseCode, .noError)
        XCTAssertEqual(message.questions, [DNSQuestion(name: "example.com", type: .mx)])
        XCTAssertEqual(message.answers.map(\.data), [
            .mx(MXRecord(preference: 10, exchange: "mail.example.com")),
            .mx(MXRecord(preference: 5, exchange: "mail2.example.com")),
        ])
        XCTAssertEqual(message.answers.map(\.ttl), [300, 200])
    }

    func testRoundTripsEveryRecordType() throws {
        let records: [DNSResourceRecord] = [
            .init(name: "example.org", ttl: 60, data: .a(IPv4Address("192.0.2.1")!)),
            .init(name: "example.org", ttl: 60, data: .aaaa(IPv6Address("2001:db8::1")!)),
            .init(name: "example.org", ttl: 60, data: .ns("ns1.example.org")),
            .init(name: "www.example.org", ttl: 60, data: .cname("example.org")),
            .init(name: "1.2.0.192.in-addr.arpa", ttl: 60, data: .ptr("example.org")),
            .init(name: "example.org", ttl: 60, data: .mx(MXRecord(preference: 0, exchange: .root))),
            .init(name: "example.org", ttl: 60, data: .txt(TXTRecord(strings: [Array("v=spf1 ".utf8), [], Array("-all".utf8)]))),
            .init(name: "example.org", ttl: 60, data: .soa(SOARecord(mname: "ns1.example.org", rname: "hostmaster.example.org",
                                                                  serial: 2024010101, refresh: 7200, retry: 900, expire: 1209600, minimum: 300))),
            .init(name: "_25._tcp.mx.example.org", ttl: 60, data: .tlsa(TLSARecord(certificateUsage: 3, selector: 1, matchingType: 1,
                                                                                 certificateAssociationData: Array(0..<32)))),
            .init(name: "example.org", ttl: 60, data: .unknown(type: DNSRecordType(rawValue: 99), rdata: [1, 2, 3])),
        ]
        var message = DNSMessage(header: DNSHeader(id: 7, isResponse: true, authoritativeAnswer: true, truncated: true,
                                                   recursionDesired: false, recursionAvailable: true, authenticData: true,
                                                   checkingDisabled: true, rcodeLow: 3),
                                 questions: [DNSQuestion(name: "example.org", type: .any)],
                                 answers: Array(records[0..<5]), authority: Array(records[5..<8]), additional: Array(records[8...]),
                                 edns: EDNSOptions(udpPayloadSize: 1232, extendedRCode: 1, dnssecOK: true,
                                                   options: [EDNSOption(code: 10, data: [9, 9, 9, 9, 9, 9, 9, 9])]))
        let decoded = try DNSMessage(decoding: try message.encoded())
        XCTAssertEqual(decoded, message)
        XCTAssertEqual(decoded.responseCode, DNSResponseCode(rawValue: 0x13), "RFC 6891 §6.1.3: 8 high bits from OPT")
        message.edns = nil
        XCTAssertEqual(try DNSMessage(decoding: try message.encoded()), message)
    }

    func testQueryLayout() throws {
        let query = DNSMessage.query(id: 0xBEEF, question: DNSQuestion(name: "a.b", type: .txt),
                                     edns: EDNSOptions(udpPayloadSize: 1232, dnssecOK: true), authenticData: true)
        let bytes = try query.encoded()
        // ID, flags RD+AD, 1 question, 0, 0, 1 additional (OPT).
        XCTAssertEqual(Array(bytes[0..<12]), [0xBE, 0xEF, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1])
        XCTAssertEqual(Array(bytes[12..<21]), [1, 0x61, 1, 0x62, 0, 0, 16, 0, 1])
        // OPT: root, type 41, class = 1232, TTL with DO (0x00008000), RDLENGTH 0.
        XCTAssertEqual(Array(bytes[21...]), [0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0])
    }

    func testTruncatedAtEveryLengthThrows() throws {
        let full = compressedMXResponse()
        for length in 0..<full.count {
            XCTAssertThrowsError(try DNSMessage(decoding: Array(full.prefix(length))), "prefix \(length)")
        }
        XCTAssertThrowsError(try DNSMessage(decoding: full + [0])) { XCTAssertEqual($0 as? DNSWireError, .trailingBytes) }
    }

    func testPointerLoopsAndForwardPointersAreRejected() {
        // Question name is a pointer to itself.
        var selfLoop = PacketBuilder()
        selfLoop.header()
        selfLoop.pointer(12); selfLoop.u16(1); selfLoop.u16(1)
        XCTAssertThrowsError(try DNSMessage(decoding: selfLoop.bytes)) { XCTAssertEqual($0 as? DNSWireError, .badPointer) }

        // Two pointers pointing at each other: the second one points forward.
        var pair = PacketBuilder()
        pair.header()
        pair.label("a"); pair.pointer(17)          // 12: "a" then pointer to 17
        pair.u16(1); pair.u16(1)                   // (pointer at 14..15, type/class at 16..19)
        XCTAssertThrowsError(try DNSMessage(decoding: pair.bytes)) { XCTAssertEqual($0 as? DNSWireError, .badPointer) }

        // Pointer beyond the message.
        var outside = PacketBuilder()
        outside.header()
        outside.bytes += [0xFF, 0xFF]; outside.u16(1); outside.u16(1)
        XCTAssertThrowsError(try DNSMessage(decoding: outside.bytes))

        // Reserved label types 01 and 10.
        var reserved = PacketBuilder()
        reserved.header()
        reserved.bytes += [0x41, 0]; reserved.u16(1); reserved.u16(1)
        XCTAssertThrowsError(try DNSMessage(decoding: reserved.bytes)) { XCTAssertEqual($0 as? DNSWireError, .badLabelType) }
    }

    func testPointerChainsStillObeyTheNameLimit() {
        // A question with one 60-octet label, then four more "label + pointer to the previous name"
        // runs: the last one spells 5 labels of 60 octets, 5*61+1 = 306 > 255, through backward pointers.
        let label = String(repeating: "x", count: 60)
        var r = PacketBuilder()
        r.header(qd: 1, an: 2)
        r.name([label]); r.u16(1); r.u16(1)       // question at 12, one 60-octet label
        // Record 1 (an unknown type) carries the runs in its RDATA, each pointing at the previous one.
        r.pointer(12); r.u16(99); r.u16(1); r.u32(0); r.u16(4 * (61 + 2))
        var chainStart = 12
        for _ in 0..<4 {
            let here = r.bytes.count
            r.label(label); r.pointer(chainStart)
            chainStart = here
        }
        // Record 2's owner is the last run.
        r.pointer(chainStart); r.u16(1); r.u16(1); r.u32(0); r.u16(4); r.bytes += [1, 2, 3, 4]
        XCTAssertThrowsError(try DNSMessage(decoding: r.bytes)) {
            XCTAssertEqual($0 as? DNSWireError, .badName(.nameTooLong))
        }
    }

    func testRDataLengthsAreChecked() {
        func response(type: UInt16, rdata: [UInt8]) -> [UInt8] {
            var p = PacketBuilder()
            p.header(an: 1)
            p.name(["x"]); p.u16(type); p.u16(1)
            p.pointer(12); p.u16(type); p.u16(1); p.u32(60); p.u16(UInt16(rdata.count)); p.bytes += rdata
            return p.bytes
        }
        XCTAssertThrowsError(try DNSMessage(decoding: response(type: 1, rdata: [1, 2, 3])))
        XCTAssertThrowsError(try DNSMessage(decoding: response(type: 28, rdata: [UInt8](repeating: 0, count: 15))))
        XCTAssertThrowsError(try DNSMessage(decoding: response(type: 16, rdata: [5, 0x61])), "TXT string longer than RDATA")
        XCTAssertThrowsError(try DNSMessage(decoding: response(type: 15, rdata: [0, 1, 1, 0x61])), "MX name runs past RDATA")
        XCTAssertThrowsError(try DNSMessage(decoding: response(type: 5, rdata: [1, 0x61, 0, 0])), "CNAME with slack")
        XCTAssertThrowsError(try DNSMessage(decoding: response(type: 52, rdata: [3, 1])))
        XCTAssertNoThrow(try DNSMessage(decoding: response(type: 16, rdata: [])), "empty TXT RDATA is tolerated")
        // RFC 2181 §8: TTL with the top bit set reads as zero.
        var p = PacketBuilder()
        p.header(an: 1)
        p.name(["x"]); p.u16(1); p.u16(1)
        p.pointer(12); p.u16(1); p.u16(1); p.u32(0x8000_0001); p.u16(4); p.bytes += [1, 2, 3, 4]
        XCTAssertEqual(try DNSMessage(decoding: p.bytes).answers.first?.ttl, 0)
    }

    func testOPTRules() throws {
        var two = PacketBuilder()
        two.header(ar: 2)
        two.name(["x"]); two.u16(1); two.u16(1)
        for _ in 0..<2 { two.bytes.append(0); two.u16(41); two.u16(1232); two.u32(0); two.u16(0) }
        XCTAssertThrowsError(try DNSMessage(decoding: two.bytes)) { XCTAssertEqual($0 as? DNSWireError, .badOPT) }

        var inAnswer = PacketBuilder()
        inAnswer.header(an: 1)
        inAnswer.name(["x"]); inAnswer.u16(1); inAnswer.u16(1)
        inAnswer.bytes.append(0); inAnswer.u16(41); inAnswer.u16(1232); inAnswer.u32(0); inAnswer.u16(0)
        XCTAssertThrowsError(try DNSMessage(decoding: inAnswer.bytes)) { XCTAssertEqual($0 as? DNSWireError, .badOPT) }
    }

    func testHugeCountsAreRefusedBeforeReading() {
        var p = PacketBuilder()
        p.header(qd: 0, an: 0xFFFF)
        XCTAssertThrowsError(try DNSMessage(decoding: p.bytes)) { XCTAssertEqual($0 as? DNSWireError, .tooManyRecords) }
    }

    func testEncodingRejectsOversizedFields() {
        let record = DNSResourceRecord(name: "x", ttl: 1, data: .txt(TXTRecord(strings: [[UInt8](repeating: 0x61, count: 256)])))
        let message = DNSMessage(header: DNSHeader(id: 1), answers: [record])
        XCTAssertThrowsError(try message.encoded()) { XCTAssertEqual($0 as? DNSWireError, .badRData(.txt)) }
        let big = DNSResourceRecord(name: "x", ttl: 1, data: .unknown(type: DNSRecordType(rawValue: 99), rdata: [UInt8](repeating: 0, count: 40000)))
        XCTAssertThrowsError(try DNSMessage(header: DNSHeader(id: 1), answers: [big, big]).encoded()) {
            XCTAssertEqual($0 as? DNSWireError, .messageTooLarge)
        }
    }

    func testTXTKeepsStringsAndJoinsThem() {
        let long = String(repeating: "k", count: 300)
        let txt = TXTRecord(text: "v=DKIM1; p=" + long)
        XCTAssertEqual(txt.strings.map(\.count), [255, 56])
        XCTAssertEqual(txt.text, "v=DKIM1; p=" + long, "RFC 7208 §3.3: joined without spaces")
    }

    /// Mutated valid messages and random bytes: the decoder may throw, but must never trap or hang,
    /// and whatever it accepts must encode again.
    func testSeededFuzzNeverCrashes() throws {
        var rng = SeededRandom(seed: 0xFACE_7E0D)
        let seeds: [[UInt8]] = [
            compressedMXResponse(),
            try DNSMessage(header: DNSHeader(id: 1, isResponse: true),
                           questions: [DNSQuestion(name: "example.org", type: .txt)],
                           answers: [.init(name: "example.org", ttl: 5, data: .txt(TXTRecord(text: "hello"))),
                                     .init(name: "example.org", ttl: 5, data: .soa(SOARecord(mname: "a", rname: "b", serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5)))],
                           edns: EDNSOptions()).encoded(),
        ]
        var accepted = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 10 == 0 {
                bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = seeds[round % seeds.count]
                for _ in 0..<Int.random(in: 1...6, using: &rng) {
                    let at = Int.random(in: 0..<bytes.count, using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                    case 1: bytes[at] = 0xC0 | UInt8.random(in: 0...0x3F, using: &rng)
                    case 2: bytes.removeSubrange(at...)
                    default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                    }
                    if bytes.isEmpty { break }
                }
            }
            if let message = try? DNSMessage(decoding: bytes) {
                accepted += 1
                // Names and records decoded from garbage are still valid values: they encode.
                XCTAssertNoThrow(try message.encoded())
            }
        }
        XCTAssertGreaterThan(accepted, 0, "some mutations are still valid messages")
    }
}
