// Charset decoding for MIME text (RFC 2046 §4.1.2 charset parameter, RFC 2047 / RFC 2231 charsets),
// by IANA charset name. UTF-8, US-ASCII, ISO-8859-1 and windows-1252 are decoded here; the other
// charsets go through Foundation (CoreFoundation/ICU converters). This is the one file of the module
// that needs full Foundation.

import Foundation

/// Decodes bytes written in a named charset (RFC 2978 / IANA names and their common aliases).
public enum Charset {
    /// Decodes `bytes` from `charset` (any case; surrounding quotes and spaces ignored; an RFC 2231
    /// `*language` suffix is ignored). Returns nil when the charset is unknown, or when a multi-byte
    /// charset decoder rejects the bytes. UTF-8 and single-byte charsets never fail: invalid UTF-8
    /// becomes U+FFFD.
    public static func decode<C: Collection>(_ bytes: C, charset: String) -> String? where C.Element == UInt8 {
        switch kind(of: charset) {
        case .utf8:
            return String(lossyUTF8: bytes)
        case .ascii:
            // Mail labelled US-ASCII often carries 8-bit text anyway: take it as UTF-8 when it is valid,
            // otherwise as windows-1252 (what mislabelled Western mail almost always is).
            return decodeUTF8OrWindows1252(bytes)
        case .windows1252:
            // WHATWG (and every mail client) reads ISO-8859-1 as windows-1252: the C1 range is never
            // meant as control characters.
            return decodeWindows1252(bytes)
        case .eucJP:
            return decodeEUCJP(Array(bytes))
        case .foundation(let encoding):
            return String(data: Data(bytes), encoding: encoding)
        case .unknown:
            return nil
        }
    }

    /// Whether `decode(_:charset:)` knows `charset`.
    public static func isKnown(_ charset: String) -> Bool {
        if case .unknown = kind(of: charset) { return false }
        return true
    }

    /// UTF-8 when `bytes` are valid UTF-8, windows-1252 otherwise. For text with no (or a useless) label.
    public static func decodeUTF8OrWindows1252<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        if let s = String(validating: bytes, as: UTF8.self) { return s }
        return decodeWindows1252(bytes)
    }

    // MARK: - Implementation

    private enum Kind {
        case utf8, ascii, windows1252, eucJP
        case foundation(String.Encoding)
        case unknown
    }

    /// CoreFoundation encoding numbers (CFStringEncodingExt.h); Foundation reads `0x8000_0000 | n`
    /// as "the CF encoding n", which reaches ICU's converters on Linux.
    private static func cf(_ n: UInt) -> String.Encoding { String.Encoding(rawValue: 0x8000_0000 | n) }

    private static func kind(of charset: String) -> Kind {
        var name = ASCII.lowercased(charset)
        name = name.trimmingCharacters(in: CharacterSet(charactersIn: " \t\"'"))
        if let star = name.firstIndex(of: "*") { name = String(name[..<star]) }  // RFC 2231 §5 language
        switch name {
        case "utf-8", "utf8", "unicode-1-1-utf-8", "x-unicode20utf8": return .utf8
        case "us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us", "iso-ir-6", "cp367", "ibm367", "csascii", "",
             "default", "x-unknown", "unknown-8bit", "x-user-defined":
            return .ascii
        case "iso-8859-1", "iso8859-1", "iso_8859-1", "iso_8859-1:1987", "latin1", "latin-1", "l1", "cp819", "ibm819",
             "iso-ir-100", "csisolatin1", "windows-1252", "cp1252", "x-cp1252", "ms-ansi", "iso88591":
            return .windows1252
        case "euc-jp", "eucjp", "x-euc-jp", "cseucpkdfmtjapanese", "euc_jp": return .eucJP
        case "utf-16": return .foundation(.utf16)
        case "utf-16le": return .foundation(.utf16LittleEndian)
        case "utf-16be": return .foundation(.utf16BigEndian)
        case "utf-32": return .foundation(.utf32)
        case "utf-32le": return .foundation(.utf32LittleEndian)
        case "utf-32be": return .foundation(.utf32BigEndian)
        case "utf-7", "unicode-1-1-utf-7": return .foundation(cf(0x0400_0100))
        case "macintosh", "mac", "x-mac-roman", "macroman", "csmacintosh": return .foundation(.macOSRoman)
        case "shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis": return .foundation(.shiftJIS)
        case "windows-31j", "cp932", "ms932", "x-ms-cp932": return .foundation(cf(0x0420))
        case "iso-2022-jp", "csiso2022jp": return .foundation(cf(0x0821))  // -2 is a superset: also decodes stray kana
        case "iso-2022-jp-1": return .foundation(cf(0x0822))
        case "iso-2022-jp-2", "csiso2022jp2": return .foundation(cf(0x0821))
        case "iso-2022-kr", "csiso2022kr": return .foundation(cf(0x0840))
        case "iso-2022-cn": return .foundation(cf(0x0830))
        case "euc-kr", "euckr", "cseuckr": return .foundation(cf(0x0940))
        case "ks_c_5601-1987", "ks_c_5601", "ks_c_5601-1989", "ksc5601", "ksc_5601", "cp949", "windows-949", "uhc",
             "korean", "csksc56011987", "iso-ir-149":
            return .foundation(cf(0x0422))  // Microsoft's label; the bytes are cp949, a superset of EUC-KR
        case "gb2312", "gbk", "gb18030", "cp936", "x-gbk", "euc-cn", "csgb2312", "chinese", "gb_2312-80", "windows-936":
            return .foundation(cf(0x0632))  // GB 18030 is a superset of GBK and GB 2312
        case "hz-gb-2312": return .foundation(cf(0x0A05))
        case "big5", "big-5", "cn-big5", "csbig5", "x-x-big5": return .foundation(cf(0x0A03))
        case "big5-hkscs": return .foundation(cf(0x0A06))
        case "euc-tw": return .foundation(cf(0x0931))
        case "koi8-r", "koi8r", "cskoi8r", "koi": return .foundation(cf(0x0A02))
        case "koi8-u", "koi8u": return .foundation(cf(0x0A08))
        case "tis-620", "windows-874", "cp874", "iso-8859-11": return .foundation(cf(0x041D))
        case "viscii": return .foundation(cf(0x0A07))
        case "ibm437", "cp437", "437": return .foundation(cf(0x0400))
        case "ibm850", "cp850", "850": return .foundation(cf(0x0410))
        case "ibm852", "cp852", "852": return .foundation(cf(0x0412))
        case "ibm866", "cp866", "866": return .foundation(cf(0x041B))
        default:
            break
        }
        if let n = isoLatin(name) { return .foundation(cf(n)) }
        if let n = windowsCodePage(name) { return .foundation(cf(n)) }
        return .unknown
    }

    /// ISO 8859 parts, whatever the spelling: iso-8859-N, iso8859-N, iso_8859-N, latinN.
    private static func isoLatin(_ name: String) -> UInt? {
        let table: [Int: UInt] = [2: 0x0202, 3: 0x0203, 4: 0x0204, 5: 0x0205, 6: 0x0206, 7: 0x0207, 8: 0x0208,
                                  9: 0x0209, 10: 0x020A, 13: 0x020D, 14: 0x020E, 15: 0x020F, 16: 0x0210]
        for prefix in ["iso-8859-", "iso8859-", "iso_8859-", "iso8859_", "iso-8859_"] where name.hasPrefix(prefix) {
            var rest = name.dropFirst(prefix.count)
            if let colon = rest.firstIndex(of: ":") { rest = rest[..<colon] }  // iso_8859-2:1987
            if rest.hasSuffix("-i") || rest.hasSuffix("-e") { rest = rest.dropLast(2) }  // iso-8859-8-i
            if let n = Int(rest) { return table[n] }
        }
        let latin: [String: UInt] = ["latin2": 0x0202, "l2": 0x0202, "latin3": 0x0203, "l3": 0x0203, "latin4": 0x0204,
                                     "l4": 0x0204, "cyrillic": 0x0205, "arabic": 0x0206, "greek": 0x0207,
                                     "hebrew": 0x0208, "latin5": 0x0209, "l5": 0x0209, "latin6": 0x020A,
                                     "latin7": 0x020D, "latin8": 0x020E, "latin9": 0x020F, "latin-9": 0x020F,
                                     "latin10": 0x0210]
        return latin[name]
    }

    /// windows-125N / cp125N.
    private static func windowsCodePage(_ name: String) -> UInt? {
        let table: [Int: UInt] = [1250: 0x0501, 1251: 0x0502, 1253: 0x0503, 1254: 0x0504, 1255: 0x0505,
                                  1256: 0x0506, 1257: 0x0507, 1258: 0x0508]
        for prefix in ["windows-", "cp", "x-cp", "win-", "ms-"] where name.hasPrefix(prefix) {
            if let n = Int(name.dropFirst(prefix.count)) { return table[n] }
        }
        return nil
    }

    /// windows-1252 code points of bytes 0x80–0x9F; 0 marks the five unassigned ones (kept as C1 controls).
    private static let windows1252High: [UInt16] = [
        0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
        0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
    ]

    static func decodeWindows1252<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes {
            var v = UInt32(b)
            if b >= 0x80 && b <= 0x9F, case let m = windows1252High[Int(b - 0x80)], m != 0 { v = UInt32(m) }
            if let u = Unicode.Scalar(v) { s.append(u) }
        }
        return String(s)
    }

    /// EUC-JP (JIS X 0208 + half-width kana + JIS X 0212). ICU on this platform lacks an EUC-JP converter,
    /// so the bytes are re-written as ISO-2022-JP-2, which carries the same character sets 7-bit
    /// (RFC 1468 / RFC 1554), and decoded from there.
    static func decodeEUCJP(_ bytes: [UInt8]) -> String? {
        enum Mode { case ascii, jis0208, kana, jis0212 }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        var mode = Mode.ascii
        func switchTo(_ m: Mode) {
            guard m != mode else { return }
            switch m {
            case .ascii: out += [0x1B, 0x28, 0x42]          // ESC ( B
            case .jis0208: out += [0x1B, 0x24, 0x42]        // ESC $ B
            case .kana: out += [0x1B, 0x28, 0x49]           // ESC ( I
            case .jis0212: out += [0x1B, 0x24, 0x28, 0x44]  // ESC $ ( D
            }
            mode = m
        }
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if b < 0x80 {
                if b == 0x1B || b == 0x0E || b == 0x0F { return nil }  // would be read as escapes
                switchTo(.ascii); out.append(b); i += 1
            } else if b == 0x8E, i + 1 < n, bytes[i + 1] >= 0xA1, bytes[i + 1] <= 0xDF {
                switchTo(.kana); out.append(bytes[i + 1] & 0x7F); i += 2
            } else if b == 0x8F, i + 2 < n, bytes[i + 1] >= 0xA1, bytes[i + 2] >= 0xA1, bytes[i + 1] < 0xFF, bytes[i + 2] < 0xFF {
                switchTo(.jis0212); out += [bytes[i + 1] & 0x7F, bytes[i + 2] & 0x7F]; i += 3
            } else if b >= 0xA1, b < 0xFF, i + 1 < n, bytes[i + 1] >= 0xA1, bytes[i + 1] < 0xFF {
                switchTo(.jis0208); out += [b & 0x7F, bytes[i + 1] & 0x7F]; i += 2
            } else {
                return nil
            }
        }
        switchTo(.ascii)
        return String(data: Data(out), encoding: cf(0x0821))
    }
}
