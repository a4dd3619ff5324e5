// The publicsuffix.org test vectors (Fixtures/psl/test_psl.txt, CC0) against the Debian copy of the
// list, plus the rule kinds, sections, Punycode (RFC 3492 §7.1 samples) and malformed input.

@testable import FacteurMailAuth
import Foundation
import XCTest

/// Fixture files of the mail-auth tests (shared with the DMARC tests).
enum DMARCFixtures {
    static func url(_ path: String) throws -> URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw XCTSkip("Fixtures missing")
        }
        return url.appendingPathComponent(path)
    }

    static func publicSuffixList() throws -> PublicSuffixList {
        try PublicSuffixList(contentsOf: url("psl/public_suffix_list.dat").path)
    }
}

final class PublicSuffixListTests: XCTestCase {
    /// `checkPublicSuffix('input', 'expected');` → (input, expected); `null` → nil.
    static func vectors(_ text: String) -> [(input: String?, expected: String?)] {
        func argument(_ raw: Substring) -> String? {
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            if trimmed == "null" { return nil }
            return String(trimmed.dropFirst().dropLast()) // the quotes
        }
        var vectors: [(String?, String?)] = []
        // Lines commented out upstream (`//checkPublicSuffix('local', …)`, a TLD not on the list) are skipped.
        for line in text.split(separator: "\n") where line.hasPrefix("checkPublicSuffix(") {
            let inside = line.dropFirst("checkPublicSuffix(".count).prefix { $0 != ")" }
            let parts = inside.split(separator: ",", maxSplits: 1)
            guard parts.count == 2 else { continue }
            vectors.append((argument(parts[0]), argument(parts[1])))
        }
        return vectors
    }

    func testPublicSuffixListVectors() throws {
        let list = try DMARCFixtures.publicSuffixList()
        XCTAssertGreaterThan(list.ruleCount, 9000)
        let text = try String(contentsOf: DMARCFixtures.url("psl/test_psl.txt"), encoding: .utf8)
        let vectors = Self.vectors(text)
        XCTAssertEqual(vectors.count, 78, "every active checkPublicSuffix line is read")
        var failures: [String] = []
        for (input, expected) in vectors {
            let actual = input.flatMap { list.registrableDomain($0) }
            if actual != expected {
                failures.append("\(input ?? "null"): expected \(expected ?? "null") got \(actual ?? "null")")
            }
        }
        XCTAssertTrue(failures.isEmpty, failures.joined(separator: "\n"))
    }

    func testRuleKinds() {
        let list = PublicSuffixList(parsing: """
        // ===BEGIN ICANN DOMAINS===
        com
        uk
        co.uk
        *.ck
        !www.ck
        *.kawasaki.jp
        !city.kawasaki.jp
        公司.cn
        cn
        // ===END ICANN DOMAINS===
        // ===BEGIN PRIVATE DOMAINS===
        blogspot.com   trailing words are not part of the rule
        // ===END PRIVATE DOMAINS===
        """)
        XCTAssertEqual(list.ruleCount, 10)
        XCTAssertEqual(list.publicSuffix("www.example.co.uk"), "co.uk")
        XCTAssertEqual(list.registrableDomain("www.example.co.uk"), "example.co.uk")
        XCTAssertNil(list.registrableDomain("co.uk"))
        XCTAssertTrue(list.isPublicSuffix("co.uk"))
        // Wildcard: any label under ck is a suffix; exception: www.ck is registrable.
        XCTAssertEqual(list.publicSuffix("mail.foo.ck"), "foo.ck")
        XCTAssertEqual(list.registrableDomain("mail.foo.ck"), "mail.foo.ck")
        XCTAssertEqual(list.registrableDomain("mail.www.ck"), "www.ck")
        XCTAssertEqual(list.publicSuffix("www.ck"), "ck")
        XCTAssertEqual(list.registrableDomain("a.b.city.kawasaki.jp"), "city.kawasaki.jp")
        XCTAssertEqual(list.registrableDomain("a.b.other.kawasaki.jp"), "b.other.kawasaki.jp")
        // Unlisted TLD: the implicit rule "*".
        XCTAssertEqual(list.registrableDomain("a.b.example"), "b.example")
        // Private section, on by default, off on request.
        XCTAssertEqual(list.registrableDomain("x.alice.blogspot.com"), "alice.blogspot.com")
        let icannOnly = PublicSuffixList(parsing: "com\n// ===BEGIN PRIVATE DOMAINS===\nblogspot.com\n", includePrivateDomains: false)
        XCTAssertEqual(icannOnly.registrableDomain("x.alice.blogspot.com"), "blogspot.com")
        // IDN rules match U-labels and A-labels alike; the answer keeps the form given.
        XCTAssertEqual(list.registrableDomain("www.食狮.公司.cn"), "食狮.公司.cn")
        XCTAssertEqual(list.registrableDomain("www.xn--85x722f.xn--55qx5d.cn"), "xn--85x722f.xn--55qx5d.cn")
        // Case and a final dot.
        XCTAssertEqual(list.registrableDomain("WWW.Example.CO.UK."), "example.co.uk")
    }

    func testMalformedNames() {
        let list = PublicSuffixList(parsing: "com\n")
        for bad in ["", ".", ".example.com", "a..com", "example.com..", String(repeating: "a", count: 64) + ".com",
                    Array(repeating: "a", count: 200).joined(separator: "."), "a b.com", "a\u{0}.com"] {
            XCTAssertNil(list.registrableDomain(bad), "\(bad.prefix(40))")
            XCTAssertNil(list.publicSuffix(bad), "\(bad.prefix(40))")
        }
    }

    func testPunycodeSamples() {
        // RFC 3492 §7.1 (A) Arabic (Egyptian) and (L) Japanese, and the suffix-list IDNs.
        let samples: [(String, String)] = [
            ("\u{0644}\u{064A}\u{0647}\u{0645}\u{0627}\u{0628}\u{062A}\u{0643}\u{0644}\u{0645}\u{0648}\u{0634}\u{0639}\u{0631}\u{0628}\u{064A}\u{061F}",
             "egbpdaj6bu4bxfgehfvwxn"),
            ("3\u{5E74}B\u{7D44}\u{91D1}\u{516B}\u{5148}\u{751F}", "3B-ww4c5e180e575a65lsy2b"),
            ("食狮", "85x722f"), ("公司", "55qx5d"), ("中国", "fiqs8s"), ("bücher", "bcher-kva"),
        ]
        for (unicode, expected) in samples {
            XCTAssertEqual(Punycode.encode(unicode.unicodeScalars.map(\.value)), expected, unicode)
        }
        XCTAssertEqual(Punycode.aLabel("Bücher"), "xn--bcher-kva")
        XCTAssertEqual(Punycode.aLabel("EXAMPLE"), "example")
        XCTAssertNil(Punycode.aLabel(String(repeating: "é", count: 80)), "A-label over 63 octets")
        XCTAssertEqual(PublicSuffixList.asciiDomain("Exämple.COM."), "xn--exmple-cua.com")
        XCTAssertNil(PublicSuffixList.asciiDomain("exa mple.com"))
    }

    func testLoadErrors() {
        XCTAssertThrowsError(try PublicSuffixList(contentsOf: "/nonexistent/psl.dat")) { error in
            guard case PublicSuffixListError.unreadable = error else { return XCTFail("\(error)") }
        }
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-empty-\(UUID()).dat")
        _ = FileManager.default.createFile(atPath: empty.path, contents: Data("// only comments\n".utf8))
        defer { try? FileManager.default.removeItem(at: empty) }
        XCTAssertThrowsError(try PublicSuffixList(contentsOf: empty.path)) { error in
            XCTAssertEqual(error as? PublicSuffixListError, .empty)
        }
    }
}
