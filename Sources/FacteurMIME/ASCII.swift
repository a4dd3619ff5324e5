// Byte-level helpers shared by the RFC 5322 / MIME parsers: named ASCII constants and
// case-insensitive comparisons on bytes, so that nothing builds a String just to look at it.

enum ASCII {
    static let tab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let dquote: UInt8 = 0x22
    static let percent: UInt8 = 0x25
    static let apostrophe: UInt8 = 0x27
    static let openParen: UInt8 = 0x28
    static let closeParen: UInt8 = 0x29
    static let asterisk: UInt8 = 0x2A
    static let comma: UInt8 = 0x2C
    static let hyphen: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let slash: UInt8 = 0x2F
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
    static let lessThan: UInt8 = 0x3C
    static let equals: UInt8 = 0x3D
    static let greaterThan: UInt8 = 0x3E
    static let question: UInt8 = 0x3F
    static let at: UInt8 = 0x40
    static let openBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let closeBracket: UInt8 = 0x5D
    static let underscore: UInt8 = 0x5F

    /// WSP (RFC 5234): space or horizontal tab.
    @inline(__always) static func isWSP(_ b: UInt8) -> Bool { b == space || b == tab }

    /// Whitespace as it may appear inside an unfolded or folded value.
    @inline(__always) static func isWhitespace(_ b: UInt8) -> Bool { b == space || b == tab || b == cr || b == lf }

    @inline(__always) static func lower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b }

    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    @inline(__always) static func isAlpha(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }

    /// Value of a hexadecimal digit, either case, or nil.
    @inline(__always) static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }

    /// RFC 2045 §5.1 token character: any CHAR except SPACE, CTLs and tspecials.
    /// Bytes above 0x7F are accepted too (RFC 6532 lets UTF-8 in; real mail has worse).
    @inline(__always) static func isTokenChar(_ b: UInt8) -> Bool {
        if b >= 0x80 { return true }
        if b <= 0x20 || b == 0x7F { return false }
        switch b {
        case 0x28, 0x29, 0x3C, 0x3E, 0x40, 0x2C, 0x3B, 0x3A, 0x5C, 0x22, 0x2F, 0x5B, 0x5D, 0x3F, 0x3D: return false
        default: return true
        }
    }

    /// RFC 5322 §3.2.3 atext, plus RFC 6532 UTF-8 (any byte above 0x7F).
    @inline(__always) static func isAtext(_ b: UInt8) -> Bool {
        if b >= 0x80 { return true }
        if b <= 0x20 || b == 0x7F { return false }
        switch b {
        case 0x28, 0x29, 0x3C, 0x3E, 0x5B, 0x5D, 0x3A, 0x3B, 0x40, 0x5C, 0x2C, 0x2E, 0x22: return false
        default: return true
        }
    }

    /// RFC 5322 §3.6.8 ftext: printable US-ASCII except the colon.
    @inline(__always) static func isFieldNameChar(_ b: UInt8) -> Bool { b >= 33 && b <= 126 && b != colon }

    /// Compares `bytes` with an ASCII literal, ignoring ASCII case. `lowercase` must be lowercase already.
    @inline(__always)
    static func equalsIgnoringCase<C: Collection>(_ bytes: C, _ lowercase: StaticString) -> Bool where C.Element == UInt8 {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let p = lowercase.utf8Start
        var i = 0
        for b in bytes {
            if lower(b) != p[i] { return false }
            i += 1
        }
        return true
    }

    /// Compares two strings ignoring ASCII case only (header names, MIME types and parameter names are ASCII).
    static func equalsIgnoringCase(_ a: String, _ b: String) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        return zip(x, y).allSatisfy { lower($0) == lower($1) }
    }

    /// The bytes without leading and trailing spaces, tabs, CR and LF.
    static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lo = s.startIndex, hi = s.endIndex
        while lo < hi, isWhitespace(s[lo]) { lo += 1 }
        while hi > lo, isWhitespace(s[hi - 1]) { hi -= 1 }
        return s[lo..<hi]
    }

    /// Lowercases the ASCII letters of a string, leaving every other byte alone.
    static func lowercased(_ s: String) -> String {
        if !s.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { return s }
        return String(decoding: s.utf8.map(lower), as: UTF8.self)
    }
}

extension String {
    /// The string without leading and trailing spaces, tabs, CR and LF (no Foundation needed).
    func trimmingWhitespace() -> String {
        let u = Array(utf8)
        let t = ASCII.trimmed(u[...])
        return t.count == u.count ? self : String(decoding: t, as: UTF8.self)
    }

    /// Builds a String from bytes that should be UTF-8; invalid sequences become U+FFFD.
    @inline(__always) init<C: Collection>(lossyUTF8 bytes: C) where C.Element == UInt8 {
        self = String(decoding: bytes, as: UTF8.self)
    }
}
