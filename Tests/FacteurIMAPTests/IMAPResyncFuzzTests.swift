// Seeded mutation fuzzing of the commands added for CONDSTORE/QRESYNC (RFC 7162) and QUOTA
// (RFC 9208), run through the parser and the runner against a real store: nothing may crash,
// and the session must still answer afterwards.

import FacteurIdentity
@testable import FacteurIMAP
import FacteurStore
import Foundation
import XCTest

final class IMAPResyncFuzzTests: IMAPStoreTestCase {
    static let seeds = [
        "f1 SELECT INBOX (QRESYNC (UV 3 1:5,7 (1:3 1,3:4)))",
        "f2 EXAMINE INBOX (CONDSTORE QRESYNC (UV 1))",
        "f3 UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 2 VANISHED)",
        "f4 FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
        "f5 STORE 1:* (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Seen)",
        "f6 UID STORE 2,4 (UNCHANGEDSINCE 0) FLAGS (\\Deleted)",
        "f7 SEARCH RETURN (MIN MAX ALL) OR MODSEQ 2 NOT MODSEQ 5",
        "f8 STATUS INBOX (HIGHESTMODSEQ DELETED-STORAGE MESSAGES)",
        "f9 GETQUOTAROOT INBOX",
        "f10 GETQUOTA \"\"",
        "f11 SETQUOTA \"\" (STORAGE 10 MESSAGE 5)",
        "f12 ENABLE QRESYNC CONDSTORE",
        "f13 UID EXPUNGE 1:3",
        "f14 EXPUNGE",
        "f15 CLOSE",
        "f16 UNSELECT",
    ]

    func testMutatedResyncCommandsNeverCrash() async throws {
        for _ in 0 ..< 6 { try await deliver(Self.simple) }
        let inbox = try await store.mailbox(accountID: account.id, name: "INBOX")
        let uidValidity = try XCTUnwrap(inbox).uidValidity
        var generator = SplitMix64(seed: 0x7162_9208)
        let specials: [String] = ["0", "1", "4294967295", "4294967296", "9223372036854775807", "99999999999999999999", "*", "$",
                                  "(", ")", " ", "\"", "{5}", "~{1+}", "1:*", "*:1"]
        var c = await loggedIn()
        _ = await c.send("a0 ENABLE QRESYNC\r\na1 SELECT INBOX\r\n")
        var answered = 0, succeeded = 0
        for round in 0 ..< 1500 {
            var text = Self.seeds[Int(generator.next() % UInt64(Self.seeds.count))].replacingOccurrences(of: "UV", with: "\(uidValidity)")
            var bytes = Array(text.utf8)
            for _ in 0 ..< Int(generator.next() % 4) {
                guard !bytes.isEmpty else { break }
                let at = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 5 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: generator.next() % 128)
                case 1: bytes.remove(at: at)
                case 2: bytes.insert(contentsOf: Array(specials[Int(generator.next() % UInt64(specials.count))].utf8), at: at)
                case 3: bytes = Array(bytes[..<at])
                default: bytes.insert(contentsOf: bytes[at...].prefix(8), at: at)
                }
            }
            // Keep it one line: a CR or LF inside would split it, a literal would wait for data.
            bytes.removeAll { $0 == 0x0D || $0 == 0x0A || $0 == UInt8(ascii: "{") }
            text = String(decoding: bytes, as: UTF8.self)
            let reply = await c.send(text + "\r\n")
            if !reply.isEmpty { answered += 1 }
            if reply.contains(" OK ") { succeeded += 1 }
            if c.next == .close { break }
            if c.session.state != .selected {
                _ = await c.send("r\(round) SELECT INBOX\r\n")
            }
            if round % 100 == 0, let id = c.session.selected?.id, try await store.messages(mailboxID: id).count < 3 {
                for _ in 0 ..< 4 { try await deliver(Self.simple) }
            }
        }
        XCTAssertGreaterThan(answered, 1000, "the mutated commands were answered")
        XCTAssertGreaterThan(succeeded, 300, "many mutations still reach the runner, not only the parser")
        let noop = await c.send("zz NOOP\r\n")
        XCTAssertTrue(noop.hasSuffix("zz OK NOOP completed\r\n") || c.next == .close, noop)
    }
}
