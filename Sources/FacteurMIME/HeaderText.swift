// Writing header fields safely (RFC 5322 §2.2, §2.2.3) and MIME tokens (RFC 2045 §5.1): what
// every message Facteur composes itself (DSNs, DMARC and TLS reports) needs when a value comes
// from outside — a report ID, a domain — and must not inject a line break or a special.

public enum HeaderText {
    /// The value with CR, LF and other controls removed: no header injection.
    public static func headerSafe(_ value: String) -> String {
        String(String.UnicodeScalarView(value.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
    }

    /// Printable ASCII only (others become "?"), for a us-ascii text part.
    public static func asciiSafe(_ value: String) -> String {
        String(String.UnicodeScalarView(value.unicodeScalars.map { ($0.value >= 0x20 && $0.value < 0x7F) ? $0 : "?" }))
    }

    /// RFC 2045 token characters only (no specials, space or controls), and no "!", which report
    /// file names use as their separator (RFC 7489 §7.2.1.1, RFC 8460 §5.3).
    public static func tokenSafe(_ value: String) -> String {
        let specials = Set("()<>@,;:\\\"/[]?=! ".unicodeScalars)
        return String(String.UnicodeScalarView(value.unicodeScalars.filter {
            $0.value > 0x20 && $0.value < 0x7F && !specials.contains($0)
        }))
    }

    /// RFC 5322 §2.2.3: a header line folded at spaces so that lines stay within 78 characters
    /// where the words allow; the continuation lines start with the space they were folded at.
    public static func fold(_ line: String) -> [String] {
        var out: [String] = []
        var current = ""
        for (i, word) in line.split(separator: " ", omittingEmptySubsequences: false).enumerated() {
            if i == 0 {
                current = String(word)
            } else if current.count + 1 + word.count > 78 {
                out.append(current)
                current = " " + word
            } else {
                current += " " + word
            }
        }
        out.append(current)
        return out
    }
}
