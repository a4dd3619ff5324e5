// Character classes of IMAP's formal syntax (RFC 9051 §9), shared by the parser and the
// response writer.

enum IMAPGrammar {
    /// CHAR: 7-bit, not NUL.
    static func isChar(_ b: UInt8) -> Bool { b >= 0x01 && b <= 0x7F }
    static func isCTL(_ b: UInt8) -> Bool { b < 0x20 || b == 0x7F }

    /// ATOM-CHAR = <any CHAR except atom-specials>; atom-specials = "(" / ")" / "{" / SP / CTL /
    /// list-wildcards / quoted-specials / resp-specials.
    static func isAtomChar(_ b: UInt8) -> Bool {
        guard isChar(b), !isCTL(b) else { return false }
        switch b {
        case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "{"), UInt8(ascii: " "),
             UInt8(ascii: "%"), UInt8(ascii: "*"), UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "]"):
            return false
        default:
            return true
        }
    }

    /// ASTRING-CHAR = ATOM-CHAR / resp-specials
    static func isAStringChar(_ b: UInt8) -> Bool { isAtomChar(b) || b == UInt8(ascii: "]") }

    /// list-char = ATOM-CHAR / list-wildcards / resp-specials
    static func isListChar(_ b: UInt8) -> Bool {
        isAStringChar(b) || b == UInt8(ascii: "%") || b == UInt8(ascii: "*")
    }

    /// TEXT-CHAR inside a quoted string: any CHAR except CR and LF (RFC 9051 allows UTF-8 too
    /// when UTF8=ACCEPT is on; we accept 8-bit bytes in quoted strings always and let the
    /// session decide).
    static func isQuotedChar(_ b: UInt8) -> Bool { b != 0x0D && b != 0x0A && b != 0x00 }

    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
}
