// The shared MIME corpus (Fixtures/mime): every message parses, offsets stay in range, and the part
// trees match the structure index generated with Python's email package, except where listed.

import FacteurMIME
import Foundation
import XCTest

final class CorpusTests: XCTestCase {
    /// Our tree in the index's shape: "type/subtype" lowercased, children as `parts`.
    struct Shape: Equatable, CustomStringConvertible {
        var type: String
        var parts: [Shape]
        var description: String { parts.isEmpty ? type : "\(type)[\(parts.map(\.description).joined(separator: ", "))]" }
    }

    static func shape(_ p: BodyPart) -> Shape { Shape(type: p.mimeType, parts: p.children.map(shape)) }

    /// Python hands message/* types other than rfc822 (delivery-status, external-body, partial) a parsed
    /// payload too; IMAP (RFC 3501 §7.4.2) and we encapsulate only message/rfc822 and message/global.
    static func shape(_ n: Fixtures.IndexNode) -> Shape {
        let t = n.type.lowercased()
        let encapsulates = !t.hasPrefix("message/") || t == "message/rfc822" || t == "message/global"
        return Shape(type: t, parts: encapsulates ? (n.parts ?? []).map(shape) : [])
    }

    func testEveryMessageParsesWithOffsetsInRange() throws {
        let messages = try Fixtures.corpusMessages()
        XCTAssertEqual(messages.count, 235)
        for (path, bytes) in messages {
            XCTAssertEqual(Invariants.problems(MessageSummary(parsing: bytes), count: bytes.count), [], path)
        }
    }

    /// Messages where our tree differs from Python's, and why. Each must still differ (so the list stays true).
    static let structureExceptions: [String: String] = [
        "mail-parser/malformed/000.eml":
            "two delimiters in a row: RFC 2046's grammar and Dovecot (test_message_parser_truncated_mime_headers) make an empty part between them; Python skips it",
        "mail-parser/malformed/003.eml":
            "inner multipart reuses the outer boundary: the innermost match wins (RFC 2046 §5.1.2 search order, Dovecot's duplicate_mime_boundary test); Python lets the outer one win",
        "mail-parser/malformed/004.eml":
            "\"--ab\" delimits boundary \"a\": RFC 2046 §5.1.1 only asks the line to begin with the boundary (Dovecot's garbage_suffix test agrees); Python wants the whole line",
        "mail-parser/malformed/005.eml":
            "boundaries \"a--\" and \"a----\": the innermost exact match wins, Python reads \"--a----\" as the outer close delimiter",
        "mail-parser/malformed/007.eml":
            "the inner multipart's header is cut by \"--ab\", which begins with the outer boundary \"a\" (RFC 2046 §5.1.1 prefix rule): Dovecot's continuing_truncated_mime_boundary test gives our three parts; Python reads on",
        "mail-parser/malformed/013.eml": "same boundary at four levels: innermost wins (as Dovecot), Python lets the outer win",
        "mail-parser/malformed/017.eml":
            "\"multipart/mixed\" then boundary= on the next line without \";\": we read the parameter anyway (as mail-parser's own 017.json); Python finds no boundary",
        "mail-parser/malformed/019.eml":
            "first line \"Fro :…\" is an obsolete field with WSP before the colon (RFC 5322 §4.5.3 obs-optional); Python takes the whole message as body",
        "mail-parser/thirdparty/012.eml":
            "boundary parameter folded across two lines: unfolded (RFC 5322 §2.2.3) it is \"foo bar\" and delimits the parts; Python keeps the line break in it",
        "mime4j/ending-boundaries.msg":
            "delimiters followed by text on the same line: prefix match per RFC 2046 §5.1.1 (mime4j's own ending-boundaries.xml agrees); Python wants the whole line",
        "mime4j/very-long-boundary.msg":
            "the boundary ends in spaces; a line missing one of them is body text (mime4j's very-long-boundary.xml agrees); Python strips the boundary's trailing spaces",
        "mime4j/very-very-long-boundary.msg": "same as very-long-boundary (mime4j's very-very-long-boundary.xml agrees)",
        "mime4j/weird-boundary.msg": "same as very-long-boundary (mime4j's weird-boundary.xml agrees)",
        "python-email/msg_15.txt": "inner multipart reuses the outer boundary: innermost wins (as Dovecot); Python lets the outer win",
        "python-email/msg_37.txt": "delimiters in a row make empty parts (RFC 2046 grammar, Dovecot); Python skips them",
        "python-email/msg_39.txt": "inner multiparts reuse their parent's boundary: innermost wins (as Dovecot); Python lets the outer win",
        "ruby-mail/mime_emails/raw_email4.eml":
            "last line \"--boundary-\" begins with the boundary, so it is a delimiter (RFC 2046 §5.1.1 prefix rule, Dovecot) opening an empty part; Python ignores it",
    ]

    func testStructureMatchesIndex() throws {
        let index = try Fixtures.index()
        var compared = 0
        for (path, bytes) in try Fixtures.corpusMessages() {
            guard let entry = index[path] else {
                XCTFail("\(path) missing from the index")
                continue
            }
            XCTAssertEqual(entry.bytes, bytes.count, path)
            let summary = MessageSummary(parsing: bytes)
            let ours = Self.shape(summary.body)
            let theirs = Self.shape(entry.structure)
            if let reason = Self.structureExceptions[path] {
                XCTAssertNotEqual(ours, theirs, "\(path) now matches Python; drop its exception (\(reason))")
                continue
            }
            XCTAssertEqual(ours, theirs, path)
            if ours == theirs {
                compared += 1
                checkDetails(summary.body, entry.structure, path: path)
            }
        }
        XCTAssertEqual(compared, 235 - Self.structureExceptions.count)
    }

    /// Charset, transfer encoding and file name of every part, where Python's value is a clean one.
    func checkDetails(_ ours: BodyPart, _ theirs: Fixtures.IndexNode, path: String) {
        if let charset = theirs.charset, let mine = ours.parameter("charset") {
            XCTAssertEqual(mine.lowercased(), charset.lowercased(), "\(path): charset")
        }
        if let cte = theirs.cte, !cte.contains(where: { " ;/".contains($0) }) {
            XCTAssertEqual(ours.encoding.lowercased(), cte.lowercased(), "\(path): encoding")
        }
        // Python leaves RFC 2047 words in file names and mangles non-UTF-8 bytes into U+FFFD.
        if let name = theirs.filename, !name.contains("\u{FFFD}") {
            XCTAssertEqual(ours.fileName, EncodedWords.decode(name), "\(path): file name")
        }
        let theirParts = theirs.parts ?? []
        if ours.children.count == theirParts.count {
            for (o, t) in zip(ours.children, theirParts) { checkDetails(o, t, path: path) }
        }
    }

    /// Messages whose offsets differ from mail-parser's expectations, and why.
    static let offsetExceptions: [String: String] = [
        "mail-parser/malformed/001.eml":
            "\"--ab\" ends the inner multipart (boundary \"a\") and opens a second outer part: Dovecot's truncated_mime_headers2 test and Python agree with us",
        "mail-parser/malformed/004.eml": "Dovecot's garbage_suffix_mime_boundary test has exactly our offsets (the part starts after \"--ab\\n\", at 50)",
        "mail-parser/malformed/007.eml": "Dovecot's continuing_truncated_mime_boundary test has exactly our three parts",
        "mail-parser/malformed/008.eml": "\"--ab\" is the outer boundary exactly, so it ends the inner multipart; Python agrees with us",
        "mail-parser/malformed/009.eml": "an outer delimiter ends the inner multipart and opens another outer part; Python agrees with us",
        "mail-parser/malformed/011.eml": "an outer delimiter ends the inner multipart and opens another outer part; Python agrees with us",
        "mail-parser/malformed/012.eml":
            "an outer delimiter inside an encapsulated message still ends it (RFC 2046 §5.1.2); mail-parser ignores outer boundaries there, Python agrees with us",
        "mail-parser/malformed/013.eml": "same boundary at several levels: innermost wins, as Dovecot",
        "mail-parser/malformed/014.eml": "a delimiter at the very end opens an empty last part (RFC 2046, Dovecot); Python agrees with us",
        "mail-parser/malformed/016.eml": "boundaries longer than 70 characters still delimit (mail-parser truncates them); Python agrees with us",
        "mail-parser/malformed/019.eml": "fuzzed message; \"--Boundary42\" is not \"boundary42\" (boundaries are case-sensitive), so our parts differ",
        "mail-parser/rfc/008.eml":
            "base64-encoded message/rfc822: we (like Python and Dovecot) parse the bytes as stored; mail-parser decodes them first",
        "mail-parser/thirdparty/005.eml": "\"invalid--1--\": a delimiter must start a line (RFC 2046 §5.1.1), so the last part runs to the end",
        "mail-parser/thirdparty/011.eml":
            "blank line right before a delimiter: its line break belongs to the delimiter, so the header ends before it (Dovecot's truncated_mime_headers2 test)",
        "mail-parser/thirdparty/015.eml":
            "multipart headers cut short by the outer boundary, inside message/rfc822 parts: we keep the three messages; Python agrees with us",
    ]

    /// Offsets of every part against mail-parser's expectations (`*.json`), for the files with LF line ends
    /// (mail-parser's offsets are those of the LF file; the CRLF files cannot be compared).
    func testOffsetsMatchMailParser() throws {
        var compared = 0
        for (path, bytes) in try Fixtures.corpusMessages() where path.hasPrefix("mail-parser/") && !bytes.contains(0x0D) {
            let jsonURL = Fixtures.mimeCorpus.appendingPathComponent(path.replacingOccurrences(of: ".eml", with: ".json"))
            guard let object = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL)) as? [String: Any],
                  let theirs = MailParserPart.tree(object) else {
                XCTFail("\(path): unreadable mail-parser expectation")
                continue
            }
            var diffs: [String] = []
            compare(MessageSummary(parsing: bytes).body, theirs, "root", &diffs)
            if let reason = Self.offsetExceptions[path] {
                XCTAssertFalse(diffs.isEmpty, "\(path) now matches mail-parser; drop its exception (\(reason))")
            } else {
                XCTAssertEqual(diffs, [], path)
                compared += 1
            }
        }
        XCTAssertEqual(compared, 30)
    }

    func compare(_ ours: BodyPart, _ theirs: MailParserPart, _ where_: String, _ diffs: inout [String]) {
        if ours.headerOffset != theirs.headerOffset || ours.bodyOffset != theirs.bodyOffset
            || (!ours.isMultipart && ours.bodyOffset + ours.bodyLength != theirs.end) {
            diffs.append("\(where_) ours \(ours.headerOffset)/\(ours.bodyOffset)/\(ours.bodyOffset + ours.bodyLength) theirs \(theirs.headerOffset)/\(theirs.bodyOffset)/\(theirs.end)")
        }
        guard ours.children.count == theirs.children.count else {
            diffs.append("\(where_) children \(ours.children.count) vs \(theirs.children.count)")
            return
        }
        for (n, (o, t)) in zip(ours.children, theirs.children).enumerated() { compare(o, t, "\(where_).\(n + 1)", &diffs) }
    }
}

/// mail-parser's expected output (`*.json` beside each `.eml`): byte offsets of every part.
struct MailParserPart {
    var headerOffset: Int
    var bodyOffset: Int
    var end: Int
    var isMultipart: Bool
    var children: [MailParserPart]

    /// Reads the parts tree of one message object ({"parts": [...]}, part 0 the root).
    static func tree(_ message: [String: Any]) -> MailParserPart? {
        guard let parts = message["parts"] as? [[String: Any]], !parts.isEmpty else { return nil }
        func node(_ i: Int, _ depth: Int) -> MailParserPart? {
            guard i < parts.count, depth < 100 else { return nil }
            let p = parts[i]
            guard let h = p["offset_header"] as? Int, let b = p["offset_body"] as? Int, let e = p["offset_end"] as? Int,
                  let body = p["body"] as? [String: Any] else { return nil }
            var children: [MailParserPart] = []
            var multipart = false
            if let indexes = body["Multipart"] as? [Int] {
                multipart = true
                children = indexes.compactMap { node($0, depth + 1) }
            } else if let inner = body["Message"] as? [String: Any], let root = tree(inner) {
                children = [root]
            }
            return MailParserPart(headerOffset: h, bodyOffset: b, end: e, isMultipart: multipart, children: children)
        }
        return node(0, 0)
    }
}
