// Hostile input: random bytes, mutated corpus messages, pathological nesting. Nothing may crash, hang,
// or put an offset outside the input. Deterministic (seeded) and bounded in time.

import FacteurMIME
import FacteurTestSupport
import Foundation
import XCTest

final class FuzzTests: XCTestCase {
    /// Time each test may spend on its random cases (the fixed cases always run).
    let budget: TimeInterval = 2.5

    /// Runs every parser of the module on `bytes` and checks the summary's invariants.
    func exercise(_ bytes: [UInt8], _ label: @autoclosure () -> String) {
        let s = MessageSummary(parsing: bytes)
        let problems = Invariants.problems(s, count: bytes.count)
        if !problems.isEmpty { XCTFail("\(label()): \(problems.prefix(3))") }
        let header = MessageHeader(parsing: bytes)
        XCTAssertLessThanOrEqual(header.bodyOffset, bytes.count)
        for f in header.fields.prefix(50) {
            XCTAssertLessThanOrEqual(f.range.upperBound, bytes.count)
            _ = AddressList(parsingBytes: f.rawValue)
            _ = ContentType(parsingBytes: f.rawValue)
            _ = MailDate(parsing: f.value)
            _ = EncodedWords.decode(bytes: f.rawValue)
        }
        let body = bytes[min(s.body.bodyOffset, bytes.count)...]
        _ = TransferDecoding.base64(body)
        _ = TransferDecoding.quotedPrintable(body)
    }

    /// Bytes drawn mostly from what MIME parsers react to.
    func randomMessage(_ rng: inout SeededRandom) -> [UInt8] {
        let pieces = ["\r\n", "\n", "\r", "--", "--b", "--b--", "--a", ":", " ", "\t", "=?utf-8?B?", "=?x?Q?", "?=", "\"", "(", ")",
                      "<", ">", "@", ",", ";", "Content-Type: multipart/mixed; boundary=b", "Content-Type: message/rfc822",
                      "Content-Type: multipart/digest; boundary=a", "boundary=", "*0*=", "'", "%", "From: ", "Date: ",
                      "Content-Transfer-Encoding: base64", "x", "\u{0}", "é", "\u{FF}", "\r\n\r\n"]
        var out: [UInt8] = []
        let n = Int.random(in: 0..<200, using: &rng)
        for _ in 0..<n {
            if Bool.random(using: &rng) {
                out += Array(pieces[Int.random(in: 0..<pieces.count, using: &rng)].utf8)
            } else {
                out.append(UInt8.random(in: 0...255, using: &rng))
            }
        }
        return out
    }

    func testRandomBytes() {
        var rng = SeededRandom(seed: 0xFACE7E0A)
        let deadline = Date().addingTimeInterval(budget)
        var runs = 0
        while Date() < deadline || runs < 200 {
            let bytes = Bool.random(using: &rng)
                ? randomMessage(&rng)
                : (0..<Int.random(in: 0..<400, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            exercise(bytes, "random case \(runs)")
            runs += 1
        }
        print("fuzz: \(runs) random inputs")
    }

    func testMutatedCorpus() throws {
        let corpus = try Fixtures.corpusMessages().map(\.bytes)
        var rng = SeededRandom(seed: 2045)
        let deadline = Date().addingTimeInterval(budget)
        var runs = 0

        // Truncated at every few offsets: every message, a prefix every 1/8th of it and near the ends.
        for (i, m) in corpus.enumerated() {
            let step = max(1, m.count / 8)
            for cut in Set(Array(stride(from: 0, to: m.count, by: step)) + [1, 2, m.count - 1, m.count - 2]) where cut >= 0 && cut <= m.count {
                exercise(Array(m[..<cut]), "message \(i) cut at \(cut)")
                runs += 1
            }
        }

        while Date() < deadline || runs < 3_000 {
            var m = corpus[Int.random(in: 0..<corpus.count, using: &rng)]
            guard !m.isEmpty else { continue }
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:  // flip bytes
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    m[Int.random(in: 0..<m.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            case 1:  // duplicate a "--" line (boundary) somewhere else
                let lines = m.split(separator: 0x0A, omittingEmptySubsequences: false)
                if let dash = lines.filter({ $0.starts(with: [0x2D, 0x2D]) }).randomElement(using: &rng) {
                    let at = Int.random(in: 0...m.count, using: &rng)
                    m.insert(contentsOf: [0x0A] + Array(dash) + [0x0A], at: at)
                }
            case 2:  // cut a random range out
                let a = Int.random(in: 0..<m.count, using: &rng)
                let b = min(m.count, a + Int.random(in: 1...64, using: &rng))
                m.removeSubrange(a..<b)
            default:  // truncate
                m = Array(m[..<Int.random(in: 0...m.count, using: &rng)])
            }
            exercise(m, "mutation \(runs)")
            runs += 1
        }
        print("fuzz: \(runs) corpus mutations")
    }

    func testDeepNesting() {
        let levels = 10_000
        // 10,000 nested multiparts, each with its own boundary.
        var multipart = ""
        for i in 0..<levels { multipart += "Content-Type: multipart/mixed; boundary=\"b\(i)\"\r\n\r\n--b\(i)\r\n" }
        multipart += "Content-Type: text/plain\r\n\r\nbottom\r\n"
        for i in stride(from: levels - 1, through: 0, by: -1) { multipart += "--b\(i)--\r\n" }
        exercise(Array(multipart.utf8), "deep multipart")
        // 10,000 nested message/rfc822 parts.
        exercise(Array((String(repeating: "Content-Type: message/rfc822\r\n\r\n", count: levels) + "body").utf8), "deep message")
        // 10,000 nested multiparts sharing one boundary, and a digest of empty parts.
        exercise(Array((String(repeating: "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n", count: levels)).utf8), "same boundary")
        exercise(Array(("Content-Type: multipart/digest; boundary=d\r\n\r\n" + String(repeating: "--d\r\n", count: 20_000)).utf8), "digest")
        // Deeply nested comments, quotes and groups in fields.
        let parens = String(repeating: "(", count: 100_000)
        exercise(Array("From: \(parens)a@b\r\nDate: \(parens)\r\nContent-Type: text/plain; a=\(parens)\r\n\r\n".utf8), "parentheses")
        exercise(Array(("To: " + String(repeating: "g:", count: 50_000) + "\r\n\r\n").utf8), "groups")
        exercise(Array(("Subject: " + String(repeating: "=?utf-8?Q?a?= ", count: 20_000) + "\r\n\r\n").utf8), "words")
        // One huge line and many empty lines.
        exercise([UInt8](repeating: 0x41, count: 1_000_000), "one long line")
        exercise([UInt8](repeating: 0x0A, count: 1_000_000), "only line feeds")
        exercise(Array(("Content-Type: multipart/mixed; boundary=b\r\n\r\n" + String(repeating: "--b\r\n", count: 300_000)).utf8), "delimiters")
    }
}
