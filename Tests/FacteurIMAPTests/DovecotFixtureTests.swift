// Facteur's FETCH BODYSTRUCTURE and ENVELOPE (RFC 9051 §7.5.2, RFC 3501 §7.4.2) compared byte for
// byte with the reference Dovecot's answers for the same messages, recorded in Fixtures/dovecot
// (see its README: origin, recording, and every difference with who is right).

import FacteurIdentity
@testable import FacteurIMAP
import FacteurStore
import Foundation
import NIOConcurrencyHelpers
import XCTest

/// Collects the server's bytes untouched (the shared Transcript decodes them as UTF-8, which
/// would hide differences in 8-bit header bytes).
final class ByteTranscript: IMAPOutput {
    private let bytes = NIOLockedValueBox<[UInt8]>([])
    func write(_ data: [UInt8]) async { bytes.withLockedValue { $0.append(contentsOf: data) } }
    func take() -> [UInt8] { bytes.withLockedValue { b in defer { b.removeAll() }; return b } }
}

final class DovecotFixtureTests: IMAPStoreTestCase {
    struct Fixture {
        var name: String
        var source: String
        var message: [UInt8]
        var dovecot: [UInt8]
        /// Facteur's reviewed answer where it differs from Dovecot's without being wrong
        /// (responses/NAME.facteur.txt).
        var accepted: [UInt8]?
        var number: String { String(name.prefix(3)) }
    }

    /// Fixture number -> the codes of its differences from Dovecot, explained in Fixtures/dovecot/README.md.
    /// E = equivalent by the RFCs (only the representation differs), D = Dovecot is wrong: Facteur must
    /// answer responses/NAME.facteur.txt byte for byte. F = Facteur is wrong (or, on malformed input the RFCs
    /// leave open, Dovecot's recovery is the better one): an expected failure, asserted to still differ so a
    /// fix shows up here (then record the fixture as equal and drop its entry).
    static let differences: [String: [String]] = [
        "001": ["E1"], "002": ["E1"], "003": ["E3"], "004": ["E1"], "005": ["E1"], "006": ["E1"], "007": ["E1"],
        "008": ["E1"], "009": ["E1"], "010": ["E1"], "011": ["D3"], "012": ["E1"], "013": ["F2"],
        "014": ["E4", "E3"], "015": ["E1"], "016": ["E1"], "017": ["D1"], "018": ["E1"], "019": ["E1"],
        "020": ["D1"], "022": ["D1"], "023": ["D1", "D2", "F2"], "024": ["E3"], "025": ["D1"], "026": ["D1"],
        "027": ["D1"], "029": ["E1"], "030": ["D1"], "031": ["D1"], "032": ["D1", "D2"], "033": ["D1"],
        "034": ["D1"], "035": ["E1"], "036": ["E1"], "037": ["D1"], "038": ["D1"], "039": ["F2"], "040": ["F2"],
        "041": ["D1"], "042": ["E1"], "043": ["E1"], "045": ["E1"], "047": ["E1"], "049": ["E1"], "050": ["E1"],
        "051": ["E2"], "052": ["D1"], "053": ["E1"], "054": ["E1"], "055": ["E1"],
        "059": ["E3"], "060": ["E1"], "063": ["E1"]
    ]

    static func directory() throws -> URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw XCTSkip("the Fixtures resource is not in the test bundle")
        }
        return url.appendingPathComponent("dovecot")
    }

    static func load() throws -> [Fixture] {
        let dir = try directory()
        let manifest = try String(contentsOf: dir.appendingPathComponent("manifest.tsv"), encoding: .utf8)
        var fixtures: [Fixture] = []
        for row in manifest.split(separator: "\n") where !row.isEmpty {
            let fields = row.split(separator: "\t").map(String.init)
            guard fields.count == 2 else { throw StoreError.invalid("manifest row \(row)") }
            let name = fields[0]
            let message = try Data(contentsOf: dir.appendingPathComponent("messages/\(name).eml"))
            let response = try Data(contentsOf: dir.appendingPathComponent("responses/\(name).txt"))
            let accepted = try? Data(contentsOf: dir.appendingPathComponent("responses/\(name).facteur.txt"))
            fixtures.append(Fixture(name: name, source: fields[1], message: Array(message), dovecot: Array(response),
                                    accepted: accepted.map(Array.init)))
        }
        return fixtures
    }

    /// One command line through the framer, parser and runner; returns what the server wrote.
    func exchange(_ line: String, session: inout IMAPSession, output: ByteTranscript) async -> [UInt8] {
        var framer = IMAPCommandFramer()
        framer.append(Array((line + "\r\n").utf8))
        guard case .command(let bytes) = framer.next(), case .command(let command) = IMAPParser().parse(bytes) else {
            XCTFail("could not frame or parse \(line)")
            return []
        }
        _ = await runner.run(command, session: &session, output: output)
        return output.take()
    }

    func testFetchBodyStructureAndEnvelopeMatchDovecot() async throws {
        let fixtures = try Self.load()
        XCTAssertGreaterThanOrEqual(fixtures.count, 30, "the brief asks for at least 30 messages")
        for fixture in fixtures {
            // The bytes as recorded, no per-recipient prefix: Dovecot got them by APPEND.
            let result = try await store.deliver(Delivery(message: .memory(fixture.message), recipients: [
                DeliveryRecipient(accountID: account.id, mailbox: "INBOX", headerPrefix: [], flags: []),
            ], internalDate: Date(timeIntervalSince1970: 1_700_000_000)))
            guard case .stored = result.outcomes.first else {
                XCTFail("\(fixture.name): not stored: \(result.outcomes)")
                return
            }
        }
        // IMAP4rev1 (no ENABLE), as Dovecot 2.3 speaks it.
        var session = IMAPSession(configuration: IMAPSessionConfiguration(hostname: "mail.example.org", tlsAvailable: true,
                                                                          implicitTLS: true),
                                  clientAddress: "192.0.2.1")
        let output = ByteTranscript()
        let login = await exchange("a1 LOGIN alice@example.org secret", session: &session, output: output)
        XCTAssertTrue(login.starts(with: Array("a1 OK".utf8)), String(decoding: login, as: UTF8.self))
        let select = await exchange("a2 SELECT INBOX", session: &session, output: output)
        XCTAssertTrue(String(decoding: select, as: UTF8.self).contains("* \(fixtures.count) EXISTS"))

        var equalToDovecot = 0
        for (index, fixture) in fixtures.enumerated() {
            let msn = index + 1
            let reply = await exchange("f\(msn) FETCH \(msn) (BODYSTRUCTURE ENVELOPE)", session: &session, output: output)
            guard let end = Self.range(of: Array("f\(msn) OK".utf8), in: reply) else {
                XCTFail("\(fixture.name): no tagged OK: \(String(decoding: reply, as: UTF8.self))")
                continue
            }
            let facteur = Array(reply[..<end])
            let label = "\(fixture.name) (\(fixture.source))"
            let codes = Self.differences[fixture.number] ?? []
            // After a reviewed change: FACTEUR_RECORD_ACCEPTED=DIR writes Facteur's answers for the fixtures
            // with only E/D differences into DIR (copy the ones you reviewed into Fixtures/dovecot/responses).
            if let dir = ProcessInfo.processInfo.environment["FACTEUR_RECORD_ACCEPTED"], !codes.isEmpty,
               !codes.contains(where: { $0.hasPrefix("F") }) {
                try Data(facteur).write(to: URL(fileURLWithPath: dir).appendingPathComponent("\(fixture.name).facteur.txt"))
            }
            if codes.isEmpty {
                XCTAssertNil(fixture.accepted, "\(label): has a .facteur.txt but no listed difference")
                if facteur == fixture.dovecot {
                    equalToDovecot += 1
                } else {
                    XCTFail("\(label): Facteur differs from Dovecot\n" + Self.describeDifference(facteur, fixture.dovecot))
                }
            } else if codes.contains(where: { $0.hasPrefix("F") }) {
                XCTAssertNotEqual(facteur, fixture.dovecot,
                                  "\(label): listed as Facteur differing (\(codes)) but now equals Dovecot: update `differences` and the README")
            } else {
                guard let accepted = fixture.accepted else {
                    XCTFail("\(label): differences \(codes) need responses/\(fixture.name).facteur.txt")
                    continue
                }
                XCTAssertNotEqual(accepted, fixture.dovecot, "\(label): the .facteur.txt equals Dovecot's answer; drop it")
                if facteur != accepted {
                    XCTFail("\(label): Facteur's answer changed from the reviewed one (\(codes))\n"
                            + Self.describeDifference(facteur, accepted))
                }
            }
        }
        let listed = fixtures.filter { Self.differences[$0.number] != nil }.count
        XCTAssertEqual(equalToDovecot + listed, fixtures.count)
        XCTAssertEqual(Set(Self.differences.keys).subtracting(fixtures.map(\.number)), [], "differences listed for unknown fixtures")
    }

    static func range(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for start in 0 ... (haystack.count - needle.count) where haystack[start] == needle[0] {
            if (start == 0 || haystack[start - 1] == 0x0A), Array(haystack[start ..< start + needle.count]) == needle {
                return start
            }
        }
        return nil
    }

    /// The first differing offset, with some context from both sides.
    static func describeDifference(_ got: [UInt8], _ want: [UInt8]) -> String {
        let first = zip(got, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, want.count)
        func around(_ b: [UInt8]) -> String {
            let start = max(0, first - 60)
            return String(decoding: b[start ..< min(b.count, first + 80)], as: UTF8.self).debugDescription
        }
        return "first difference at byte \(first):\n  facteur: \(around(got))\n  dovecot: \(around(want))\n"
            + "  facteur full: \(String(decoding: got, as: UTF8.self).debugDescription)\n"
            + "  expected full: \(String(decoding: want, as: UTF8.self).debugDescription)"
    }
}
