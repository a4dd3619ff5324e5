// The full-text index behind IMAP SEARCH BODY and TEXT (RFC 9051 §6.4.4): an SQLite FTS5 table
// with one row per blob, holding the decoded text of the message's header and of its text parts,
// written in the same group-commit transaction as the blob (no extra fsync before the 250), built
// for older blobs by migration v5-fulltext, and removed with the blob by a trigger.
//
// Semantics. RFC 9051 §6.4.4 asks for a case-insensitive substring match, so word tokenizers
// (unicode61, porter) do not fit: BODY "port" must find "report". We use FTS5's `trigram`
// tokenizer, which indexes every 3-character sequence, and store the text already normalised
// (`FullText.normalize`: Unicode case folding, diacritics removed, every run of white space and
// control characters turned into one space). The needle is normalised the same way; then a
// phrase query of its trigrams is exactly "the normalised needle is a substring of the normalised
// text" — no confirmation against the message is needed. Needles shorter than 3 characters
// cannot use the trigram index; they are matched with `instr()` on the stored normalised text of
// the mailbox's messages (still never reading a blob). Folding white space means a search for
// "see you" also finds "see\r\n you", which clients expect of a text search.
//
// What is indexed. The header column: the top-level header, RFC 2047 words decoded. The body
// column: every text/* part (inline or attached), transfer-decoded (RFC 2045 §6.7, §6.8) and
// charset-converted (RFC 2046 §4.1.2), HTML tags crudely removed; the header of every encapsulated
// message (message/rfc822, RFC 2046 §5.2.1); the file name of every other part. The content of
// non-text attachments (images, PDFs, archives) is not indexed: a byte scan of their base64 only
// ever matched by accident. TEXT also looks at the per-recipient header prefix (Return-Path,
// Received…), which lives in the message row, not the blob.

import FacteurMIME
import Foundation
import GRDB

/// Hard limits of the full-text index.
enum FullTextLimits {
    /// Normalised header text kept per blob (octets of UTF-8).
    static let maxHeaderBytes = 256 * 1024
    /// Normalised body text kept per blob: a search finds words in the first 2 MiB of text.
    static let maxBodyBytes = 2 * 1024 * 1024
    /// Needles per call; longer searches are answered by a scan.
    static let maxNeedles = 64
    /// Octets per needle (IMAP lines are bounded well below this anyway).
    static let maxNeedleBytes = 4 * 1024
    /// Blobs indexed per batch by the backfill.
    static let backfillBatch = 64
}

// MARK: - Normalisation and text extraction

enum FullText {
    /// Case-folded, without diacritics, white space and control characters collapsed to one
    /// space. The index stores text in this form; needles are put in it before matching.
    static func normalize(_ text: String) -> String {
        normalizeASCII(text) ?? normalizeUnicode(text)
    }

    /// `normalize` for any text (Foundation's folding, then white space collapsed).
    static func normalizeUnicode(_ text: String) -> String {
        let folded = text.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil)
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        for scalar in folded.unicodeScalars {
            if scalar.properties.isWhitespace || scalar.properties.generalCategory == .control {
                pendingSpace = true
                continue
            }
            if pendingSpace {
                out.append(" ")
                pendingSpace = false
            }
            out.append(scalar)
        }
        if pendingSpace { out.append(" ") }
        return String(out)
    }

    /// The same for pure ASCII text (most mail, every header prefix), octet by octet: folding is
    /// then lowercasing, and white space or control is 0x00–0x20 and 0x7F. Nil when not ASCII.
    private static func normalizeASCII(_ text: String) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        var pendingSpace = false
        for byte in text.utf8 {
            if byte >= 0x80 { return nil }
            if byte <= 0x20 || byte == 0x7F {
                pendingSpace = true
                continue
            }
            if pendingSpace {
                out.append(0x20)
                pendingSpace = false
            }
            out.append(byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte)
        }
        if pendingSpace { out.append(0x20) }
        return String(decoding: out, as: UTF8.self)
    }

    /// At most `maxBytes` octets of `text`, cut at a scalar boundary.
    static func prefix(_ text: String, maxBytes: Int) -> String {
        guard text.utf8.count > maxBytes else { return text }
        var end = text.utf8.index(text.utf8.startIndex, offsetBy: max(maxBytes, 0))
        while end > text.utf8.startIndex, end.samePosition(in: text.unicodeScalars) == nil {
            end = text.utf8.index(before: end)
        }
        return String(text.unicodeScalars[..<end])
    }

    /// Whether normalised `text` contains normalised `needle`, octet for octet (what `instr()`
    /// and the trigram index do; no grapheme or canonical-equivalence rules).
    static func contains(_ text: String, _ needle: String) -> Bool {
        needle.isEmpty || text.utf8.firstRange(of: needle.utf8) != nil
    }

    /// A crude HTML-to-text: tags and comments dropped (block-level tags become a space),
    /// `script` and `style` content dropped, the common entities and numeric references decoded.
    static func stripHTML(_ html: String) -> String {
        let s = Array(html.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        var skipping: String?  // inside <script> or <style>: the name whose closing tag ends it
        func isLetter(_ c: Unicode.Scalar) -> Bool { ("a" ... "z").contains(c) || ("A" ... "Z").contains(c) }
        func starts(_ text: String, at k: Int) -> Bool {
            var k = k
            for c in text.unicodeScalars {
                guard k < s.count, s[k] == c else { return false }
                k += 1
            }
            return true
        }
        while i < s.count {
            let c = s[i]
            if c == "<", i + 1 < s.count, isLetter(s[i + 1]) || s[i + 1] == "/" || s[i + 1] == "!" {
                if starts("<!--", at: i) {
                    var k = i + 4
                    while k < s.count, !starts("-->", at: k) { k += 1 }
                    i = k + 3
                    continue
                }
                var j = i + 1
                let closing = s[j] == "/"
                if closing || s[j] == "!" { j += 1 }
                var name = ""
                while j < s.count, name.unicodeScalars.count < 16, isLetter(s[j]) || ("0" ... "9").contains(s[j]) {
                    name.unicodeScalars.append(s[j])
                    j += 1
                }
                name = name.lowercased()
                // The tag ends at the next '>' (a '>' inside a quoted attribute is rare enough).
                while j < s.count, s[j] != ">" { j += 1 }
                i = j + 1
                if let element = skipping {
                    if closing, name == element { skipping = nil }
                    continue
                }
                if !closing, name == "script" || name == "style" { skipping = name }
                if Self.blockTags.contains(name) { out.append(" ") }
                continue
            }
            if skipping != nil {
                i += 1
                continue
            }
            if c == "&" {
                var j = i + 1
                var entity = ""
                while j < s.count, j - i <= 10, s[j] != ";", s[j] != "&", s[j] != "<", !s[j].properties.isWhitespace {
                    entity.unicodeScalars.append(s[j])
                    j += 1
                }
                if j < s.count, s[j] == ";", let decoded = Self.entity(entity) {
                    out.append(decoded)
                    i = j + 1
                    continue
                }
            }
            out.append(c)
            i += 1
        }
        return String(out)
    }

    private static let blockTags: Set<String> = [
        "br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "table", "h1", "h2", "h3", "h4", "h5", "h6",
        "blockquote", "pre", "hr", "title", "body", "head", "html", "section", "article", "header", "footer",
    ]

    private static func entity(_ name: String) -> Unicode.Scalar? {
        switch name {
        case "amp": return "&"
        case "lt": return "<"
        case "gt": return ">"
        case "quot": return "\""
        case "apos": return "'"
        case "nbsp": return " "
        default: break
        }
        guard name.hasPrefix("#") else { return nil }
        let digits = name.dropFirst()
        let value: UInt32?
        if digits.first == "x" || digits.first == "X" {
            value = UInt32(digits.dropFirst(), radix: 16)
        } else {
            value = UInt32(digits, radix: 10)
        }
        return value.flatMap(Unicode.Scalar.init)
    }
}

/// The text of one blob as the index stores it (already normalised).
struct FullTextDocument: Sendable, Equatable {
    var header: String
    var body: String

    /// Extracts the text of a stored message (`bytes`: the blob) using its parsed structure.
    init(message bytes: UnsafeRawBufferPointer, summary: MessageSummary) {
        var extractor = Extractor(bytes: bytes)
        let root = summary.body
        header = FullText.prefix(FullText.normalize(extractor.headerText(of: root)), maxBytes: FullTextLimits.maxHeaderBytes)
        extractor.walk(root, depth: 0)
        body = FullText.prefix(FullText.normalize(extractor.body), maxBytes: FullTextLimits.maxBodyBytes)
    }

    init(message bytes: [UInt8], summary: MessageSummary) {
        self = bytes.withUnsafeBytes { FullTextDocument(message: $0, summary: summary) }
    }

    init(message data: Data, summary: MessageSummary) {
        self = data.withUnsafeBytes { FullTextDocument(message: $0, summary: summary) }
    }

    init(header: String, body: String) {
        self.header = header
        self.body = body
    }

    private struct Extractor {
        let bytes: UnsafeRawBufferPointer
        var body = ""
        /// Raw text budget: normalisation only shrinks text, so stopping here loses nothing kept.
        var budget = FullTextLimits.maxBodyBytes * 2

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        /// `bytes[offset ..< offset + length]`, clamped to the blob (offsets come from our parser,
        /// but the blob is hostile input all the same).
        func slice(_ offset: Int, _ length: Int) -> Slice<UnsafeRawBufferPointer> {
            let start = min(max(offset, 0), bytes.count)
            let (sum, overflow) = start.addingReportingOverflow(max(length, 0))
            let end = overflow ? bytes.count : min(sum, bytes.count)
            return bytes[start ..< end]
        }

        func headerText(of part: BodyPart) -> String {
            EncodedWords.decode(bytes: slice(part.headerOffset, part.headerLength))
        }

        mutating func append(_ text: String) {
            guard budget > 0 else { return }
            let kept = FullText.prefix(text, maxBytes: budget)
            budget -= kept.utf8.count
            body += kept
            body += " "
        }

        mutating func walk(_ part: BodyPart, depth: Int) {
            guard depth <= MIMELimits.maxNestingDepth, budget > 0 else { return }
            let type = part.type.lowercased()
            if part.isMultipart {
                for child in part.children { walk(child, depth: depth + 1) }
            } else if type == "message", let inner = part.children.first {
                append(headerText(of: inner))
                walk(inner, depth: depth + 1)
            } else if type == "text" {
                // Raw octets needed for `budget` text octets: at most 4/3 of them for base64,
                // 3 for quoted-printable; more is never decoded.
                let (raw, overflow) = budget.multipliedReportingOverflow(by: 3)
                let encoded = slice(part.bodyOffset, min(part.bodyLength, overflow ? Int.max : raw))
                let decoded = TransferDecoding.decode(encoded, encoding: part.encoding)
                let charset = part.parameter("charset")
                let text = charset.flatMap { Charset.decode(decoded, charset: $0) } ?? Charset.decodeUTF8OrWindows1252(decoded)
                append(part.subtype.lowercased() == "html" ? FullText.stripHTML(text) : text)
            } else {
                // A non-text attachment: only its name is searchable.
                // Parameters are kept as written: decode RFC 2231 `filename*=utf-8''…` here.
                let names = (part.disposition?.parameters.rfc2231Decoded ?? []).filter { $0.name.lowercased() == "filename" }
                    + part.parameters.rfc2231Decoded.filter { $0.name.lowercased() == "name" }
                for name in names { append(EncodedWords.decode(name.value)) }
            }
        }
    }
}

// MARK: - Schema (migration v5-fulltext)

enum FullTextSchema {
    /// `fulltext_blob` maps a blob to its FTS5 row (`docID`); deleting the blob cascades to the
    /// mapping, whose trigger deletes the FTS5 row: the index row goes when the blob goes,
    /// whatever code path deletes it. Then every blob a message references is indexed.
    static func v5(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE fulltext_blob (
                docID  INTEGER PRIMARY KEY,
                blobID TEXT NOT NULL UNIQUE REFERENCES blob(id) ON DELETE CASCADE
            );
            CREATE VIRTUAL TABLE fulltext USING fts5(header, body, tokenize = 'trigram case_sensitive 1');
            CREATE TRIGGER fulltext_blob_deleted AFTER DELETE ON fulltext_blob BEGIN
                DELETE FROM fulltext WHERE rowid = old.docID;
            END;
            """)
        try backfill(db)
    }

    /// Indexes the blobs messages reference that have no index row yet, in batches so that only
    /// a batch of blobs is in memory at once. Large blobs are read from blobs/ (memory-mapped).
    static func backfill(_ db: Database) throws {
        _ = try backfill(db, mailboxID: nil, limit: Int.max)
    }

    /// Indexes up to `limit` unindexed blobs (of one mailbox's messages, or of any), returns how many.
    static func backfill(_ db: Database, mailboxID: Int64?, limit: Int) throws -> Int {
        // The blob files sit beside the database file (see BlobLayout).
        let file = try Row.fetchAll(db, sql: "PRAGMA database_list").first { $0["name"] == "main" }?["file"] as String?
        let directory = URL(fileURLWithPath: file ?? ".").deletingLastPathComponent().path
        let files = BlobFiles(root: directory + "/" + BlobLayout.blobDirectoryName)
        var after = ""
        var indexed = 0
        while indexed < limit {
            let ids = try String.fetchAll(db, sql: """
                SELECT id FROM blob WHERE id > ?
                AND EXISTS (SELECT 1 FROM message WHERE message.blobID = blob.id AND (?1 IS NULL OR message.mailboxID = ?1))
                AND NOT EXISTS (SELECT 1 FROM fulltext_blob WHERE fulltext_blob.blobID = blob.id)
                ORDER BY id LIMIT ?
                """.replacingOccurrences(of: "?1", with: mailboxID.map(String.init) ?? "NULL"),
                arguments: [after, min(FullTextLimits.backfillBatch, limit - indexed)])
            guard let last = ids.last else { return indexed }
            after = last
            indexed += ids.count
            for id in ids {
                guard let row = try Row.fetchOne(db, sql: "SELECT data, summary FROM blob WHERE id = ?", arguments: [id]) else {
                    continue
                }
                let summaryBytes: [UInt8] = (row["summary"] as Data?).map { Array($0) } ?? []
                let summary = (try? SummaryCodec.decode(summaryBytes)) ?? MessageSummary(parsing: [UInt8]())
                let document: FullTextDocument
                if let data = row["data"] as Data? {
                    document = FullTextDocument(message: data, summary: summary)
                } else if let data = try? Data(contentsOf: URL(fileURLWithPath: files.path(for: id)), options: .alwaysMapped) {
                    document = FullTextDocument(message: data, summary: summary)
                } else {
                    // The file is gone (GC will drop the row): an empty document keeps the index
                    // complete, and reading the message fails anyway.
                    document = FullTextDocument(header: "", body: "")
                }
                try SQLiteMailStore.indexFullText(blobID: id, document, in: db)
            }
        }
        return indexed
    }
}

// MARK: - Store: indexing and queries

extension MailStore {
    /// Stores without a full-text index answer nil: the caller scans.
    public func fullTextCandidates(mailboxID: Int64, body: [String], text: [String]) async throws -> Set<UInt32>? {
        nil
    }
}

extension SQLiteMailStore {
    /// Adds the blob's row unless it has one (a blob shared by many messages is indexed once).
    /// Runs inside the caller's transaction: in delivery, the group commit.
    static func indexFullText(blobID: String, _ document: FullTextDocument, in db: Database) throws {
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO fulltext_blob (blobID) VALUES (?)").execute(arguments: [blobID])
        guard db.changesCount == 1 else { return }
        let docID = db.lastInsertedRowID
        try db.cachedStatement(sql: "INSERT INTO fulltext (rowid, header, body) VALUES (?, ?, ?)")
            .execute(arguments: [docID, document.header, document.body])
    }

    /// The UIDs in the mailbox whose message matches every `body` needle (SEARCH BODY) and every
    /// `text` needle (SEARCH TEXT), case-insensitively as substrings (see the top of this file).
    /// Nil when the index cannot answer: a message of the mailbox has no index row, or too many
    /// needles. Never reads a blob.
    /// Indexes blobs delivered since the last pass, `FullTextLimits.backfillBatch` per write
    /// transaction so that deliveries interleave; returns how many were indexed.
    @discardableResult
    public func indexPendingFullText(mailboxID: Int64? = nil, limit: Int = 10_000) async throws -> Int {
        var total = 0
        while total < limit {
            let done = try await write { db in try FullTextSchema.backfill(db, mailboxID: mailboxID, limit: FullTextLimits.backfillBatch) }
            total += done
            if done < FullTextLimits.backfillBatch { break }
        }
        return total
    }

    public func fullTextCandidates(mailboxID: Int64, body: [String], text: [String]) async throws -> Set<UInt32>? {
        guard body.count + text.count <= FullTextLimits.maxNeedles,
              !(body + text).contains(where: { $0.utf8.count > FullTextLimits.maxNeedleBytes }) else { return nil }
        // Messages not indexed yet (delivered since the last background pass) are indexed now.
        try await indexPendingFullText(mailboxID: mailboxID, limit: Int.max)
        let bodyNeedles = body.map(FullText.normalize)
        let textNeedles = text.map(FullText.normalize)
        return try await read { db in
            let unindexed = try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM message m WHERE m.mailboxID = ?
                    AND NOT EXISTS (SELECT 1 FROM fulltext_blob k WHERE k.blobID = m.blobID))
                """, arguments: [mailboxID]) ?? true
            if unindexed { return nil }
            var result = Set(try Int64.fetchAll(db, sql: "SELECT uid FROM message WHERE mailboxID = ?", arguments: [mailboxID])
                .compactMap { UInt32(exactly: $0) })
            for needle in bodyNeedles where !result.isEmpty {
                result.formIntersection(try Self.indexMatches(db, mailboxID: mailboxID, needle: needle, column: "body"))
            }
            for needle in textNeedles where !result.isEmpty {
                var matches = try Self.indexMatches(db, mailboxID: mailboxID, needle: needle, column: nil)
                matches.formUnion(try Self.prefixMatches(db, mailboxID: mailboxID, needle: needle))
                result.formIntersection(matches)
            }
            return result
        }
    }

    /// UIDs whose indexed text (one column, or both when `column` is nil) contains `needle`.
    private static func indexMatches(_ db: Database, mailboxID: Int64, needle: String, column: String?) throws -> Set<UInt32> {
        if needle.isEmpty {
            return Set(try Int64.fetchAll(db, sql: "SELECT uid FROM message WHERE mailboxID = ?", arguments: [mailboxID])
                .compactMap { UInt32(exactly: $0) })
        }
        let uids: [Int64]
        if needle.unicodeScalars.count >= 3 {
            // A phrase of the needle's trigrams; inside an FTS5 string only '"' is special.
            let phrase = "\"" + needle.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            let query = column.map { "{\($0)} : " + phrase } ?? phrase
            // Driven by the mailbox: the unary `+` keeps SQLite from probing the blob index once
            // per (message, match) pair; each message costs one lookup and one list test.
            uids = try Int64.fetchAll(db, sql: """
                SELECT m.uid FROM message m JOIN fulltext_blob k ON k.blobID = m.blobID
                WHERE m.mailboxID = ? AND +k.docID IN (SELECT rowid FROM fulltext WHERE fulltext MATCH ?)
                """, arguments: [mailboxID, query])
        } else {
            // Too short for trigrams: look through the mailbox's stored text.
            let condition = column.map { "instr(f.\($0), ?1) > 0" } ?? "(instr(f.header, ?1) > 0 OR instr(f.body, ?1) > 0)"
            uids = try Int64.fetchAll(db, sql: """
                SELECT m.uid FROM message m JOIN fulltext_blob k ON k.blobID = m.blobID JOIN fulltext f ON f.rowid = k.docID
                WHERE m.mailboxID = ?2 AND \(condition)
                """, arguments: [needle, mailboxID])
        }
        return Set(uids.compactMap { UInt32(exactly: $0) })
    }

    /// UIDs whose per-recipient header prefix contains `needle` (already normalised).
    ///
    /// Prefixes are nearly always ASCII, and for ASCII text `normalize` only lowercases and
    /// collapses white space: a needle of printable ASCII without a space is then in the
    /// normalised prefix exactly when it is in `lower(prefix)`, which SQLite checks. Other
    /// prefixes (8-bit, or with encoded words) and other needles are normalised here.
    private static func prefixMatches(_ db: Database, mailboxID: Int64, needle: String) throws -> Set<UInt32> {
        var found = Set<UInt32>()
        let simple = !needle.isEmpty && needle.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
        // GLOB class of every character that is not ASCII (or that is NUL).
        let nonASCII = "*[^\u{01}-\u{7F}]*"
        let rows: RowCursor
        if simple {
            rows = try Row.fetchCursor(db, sql: """
                SELECT uid, prefix, CAST(prefix AS TEXT) GLOB ?1 OR instr(prefix, '=?') > 0 AS complex FROM message
                WHERE mailboxID = ?2 AND length(prefix) > 0
                AND (instr(lower(CAST(prefix AS TEXT)), ?3) > 0 OR CAST(prefix AS TEXT) GLOB ?1 OR instr(prefix, '=?') > 0)
                """, arguments: [nonASCII, mailboxID, needle])
        } else {
            rows = try Row.fetchCursor(db, sql: "SELECT uid, prefix, 1 FROM message WHERE mailboxID = ? AND length(prefix) > 0",
                                       arguments: [mailboxID])
        }
        while let row = try rows.next() {
            guard let uid = UInt32(exactly: row[0] as Int64), let prefix = row[1] as Data? else { continue }
            let complex: Bool = row[2]
            if !complex || FullText.contains(FullText.normalize(EncodedWords.decode(bytes: prefix)), needle) { found.insert(uid) }
        }
        return found
    }
}
