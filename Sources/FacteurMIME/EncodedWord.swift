// RFC 2047 encoded words (=?charset?B|Q?text?=) in header values: decoding, with the §6.2 rule that
// whitespace between adjacent encoded words disappears, RFC 2231 §5 language suffixes (=?utf-8*en?Q?…?=),
// and the tolerances real mail needs (words glued to text, split multi-byte characters across words).

/// Decoding of RFC 2047 encoded words.
public enum EncodedWords {
    /// Decodes every encoded word of a header value (unstructured text, or a phrase already taken out of
    /// its structure). Words whose charset is unknown, or whose bytes the charset rejects, stay as written.
    /// Bytes outside encoded words are read as UTF-8 (RFC 6532), or windows-1252 when not valid UTF-8.
    public static func decode(_ text: String) -> String {
        guard text.utf8.contains(ASCII.equals) else { return text }
        return decode(bytes: Array(text.utf8))
    }

    /// Same as `decode(_:)` on raw header bytes.
    public static func decode<C: Collection>(bytes: C) -> String where C.Element == UInt8 {
        let b = Array(bytes)
        var out = ""
        var literalStart = 0          // start of the text not yet written
        var pending: [UInt8] = []     // decoded bytes of adjacent words in one charset, not yet converted
        var pendingCharset = ""
        var pendingRaw = 0..<0        // where those words stand, to write them as is if conversion fails
        var i = 0
        let n = b.count

        func flushPending() {
            guard !pendingRaw.isEmpty else { return }
            if let s = Charset.decode(pending, charset: pendingCharset) {
                out += s
            } else {
                out += Charset.decodeUTF8OrWindows1252(b[pendingRaw])
            }
            pending.removeAll(keepingCapacity: true)
            pendingRaw = 0..<0
        }

        while i + 1 < n {
            guard b[i] == ASCII.equals, b[i + 1] == ASCII.question, let w = parseWord(b, at: i) else {
                i += 1
                continue
            }
            // Text between the previous word and this one: dropped when it is only whitespace
            // and a word came just before (§6.2), written otherwise.
            let between = b[literalStart..<i]
            if !between.isEmpty {
                if pendingRaw.isEmpty || !between.allSatisfy(ASCII.isWhitespace) {
                    flushPending()
                    out += Charset.decodeUTF8OrWindows1252(between)
                }
                // Otherwise: only whitespace between two encoded words, which §6.2 drops.
            }
            guard Charset.isKnown(w.charset) else {
                // Unknown charset: leave this word as written.
                flushPending()
                out += String(decoding: b[i..<w.end], as: UTF8.self)
                i = w.end
                literalStart = i
                continue
            }
            if !pendingRaw.isEmpty && ASCII.lowercased(w.charset) != ASCII.lowercased(pendingCharset) {
                flushPending()
            }
            if pendingRaw.isEmpty {
                pendingCharset = w.charset
                pendingRaw = i..<w.end
            } else {
                pendingRaw = pendingRaw.lowerBound..<w.end
            }
            pending += w.decoded
            i = w.end
            literalStart = i
        }
        flushPending()
        if literalStart < n { out += Charset.decodeUTF8OrWindows1252(b[literalStart...]) }
        return out
    }

    /// Decodes one encoded word standing alone (`=?iso-8859-1?q?caf=E9?=`). Nil if `word` is not exactly
    /// one encoded word, or its charset is unknown.
    public static func decodeWord(_ word: String) -> String? {
        let b = Array(word.utf8)
        guard let w = parseWord(b, at: 0), w.end == b.count else { return nil }
        return Charset.decode(w.decoded, charset: w.charset)
    }

    struct Word {
        var charset: String
        var decoded: [UInt8]
        var end: Int
    }

    /// Longest encoded word we look for. RFC 2047 §2 caps them at 75 characters; broken mailers write longer ones.
    static let maxWordLength = 1_000

    /// Parses `=?charset?enc?text?=` at `start`. The charset is a token; the text may not contain a line
    /// break and ends at the first "?=" (spaces inside are tolerated: some mailers forget to encode them).
    static func parseWord(_ b: [UInt8], at start: Int) -> Word? {
        let n = b.count
        guard start + 1 < n, b[start] == ASCII.equals, b[start + 1] == ASCII.question else { return nil }
        var i = start + 2
        let charsetStart = i
        while i < n, b[i] != ASCII.question {
            guard ASCII.isTokenChar(b[i]) || b[i] == ASCII.asterisk, b[i] < 0x80 else { return nil }
            i += 1
        }
        guard i > charsetStart, i + 2 < n, b[i + 2] == ASCII.question else { return nil }
        var charset = String(decoding: b[charsetStart..<i], as: UTF8.self)
        if let star = charset.firstIndex(of: "*") { charset = String(charset[..<star]) }  // RFC 2231 §5
        let enc = ASCII.lower(b[i + 1])
        guard enc == 0x62 || enc == 0x71 else { return nil }  // "b" or "q"
        let textStart = i + 3
        var j = textStart
        let limit = min(n, start + maxWordLength)
        while j + 1 < limit {
            if b[j] == ASCII.question && b[j + 1] == ASCII.equals { break }
            if b[j] == ASCII.cr || b[j] == ASCII.lf { return nil }
            j += 1
        }
        guard j + 1 < limit, b[j] == ASCII.question, b[j + 1] == ASCII.equals else { return nil }
        let text = b[textStart..<j]
        let decoded = enc == 0x62 ? TransferDecoding.base64(text) : TransferDecoding.qEncoding(text)
        return Word(charset: charset, decoded: decoded, end: j + 2)
    }
}
