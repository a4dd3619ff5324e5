// Content-Transfer-Encoding decoding (RFC 2045 §6): base64 (§6.8) and quoted-printable (§6.7),
// both tolerant of what real mail does to them (stray whitespace and garbage, lowercase hex,
// missing padding, trailing spaces added in transit). Never fails: undecodable input is kept or skipped.

/// Decoders for RFC 2045 transfer encodings.
public enum TransferDecoding {
    /// Decodes `bytes` according to a Content-Transfer-Encoding value (any case).
    /// 7bit, 8bit, binary and unknown encodings return the bytes unchanged.
    public static func decode<C: Collection>(_ bytes: C, encoding: String) -> [UInt8] where C.Element == UInt8 {
        let e = ASCII.lowercased(encoding.trimmingWhitespace())
        switch e {
        case "base64": return base64(bytes)
        case "quoted-printable": return quotedPrintable(bytes)
        default: return Array(bytes)
        }
    }

    /// RFC 4648 §4 value of a base64 alphabet byte; 0xFF for any other byte.
    private static let base64Values: [UInt8] = {
        var t = [UInt8](repeating: 0xFF, count: 256)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }()

    /// RFC 2045 §6.8: "any characters outside of the base64 alphabet are to be ignored". Padding ends a
    /// quantum, so two encoded blobs glued together ("QQ==QQ==") both decode. Leftover bits are dropped.
    public static func base64<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count / 4 * 3 + 3)
        var acc: UInt32 = 0
        var bits = 0
        base64Values.withUnsafeBufferPointer { table in
            for b in bytes {
                let v = table[Int(b)]
                if v == 0xFF {
                    if b == ASCII.equals {  // padding: the quantum is over
                        acc = 0
                        bits = 0
                    }
                    continue
                }
                acc = (acc << 6) | UInt32(v)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
                    acc &= (1 << UInt32(bits)) - 1
                }
            }
        }
        return out
    }

    /// RFC 2045 §6.7 quoted-printable. Soft line breaks ("=" at the end of a line, even followed by
    /// spaces) are removed; "=XX" (either case) becomes the byte; a "=" that starts neither is kept as is;
    /// whitespace at the end of a line is deleted (rule 3). Line breaks (CRLF or LF) are kept.
    public static func quotedPrintable<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        qp(Array(bytes), underscoreIsSpace: false)
    }

    /// The "Q" encoding of RFC 2047 §4.2: quoted-printable where "_" stands for a space.
    public static func qEncoding<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        qp(Array(bytes), underscoreIsSpace: true)
    }

    private static func qp(_ b: [UInt8], underscoreIsSpace: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        let n = b.count
        var i = 0
        // Start of the run of spaces/tabs most recently written, to delete it at a line end.
        var wsStart = -1
        while i < n {
            let c = b[i]
            if c == ASCII.space || c == ASCII.tab {
                if wsStart < 0 { wsStart = out.count }
                out.append(c)
                i += 1
                continue
            }
            if c == ASCII.lf || (c == ASCII.cr && i + 1 < n && b[i + 1] == ASCII.lf) {
                if wsStart >= 0 { out.removeSubrange(wsStart...) }  // rule 3: trailing whitespace goes
                wsStart = -1
                if c == ASCII.cr { out.append(ASCII.cr); i += 1 }
                out.append(ASCII.lf)
                i += 1
                continue
            }
            wsStart = -1
            if c == ASCII.equals {
                // Soft line break: "=" then optional whitespace then the line end (or the end of the input).
                var j = i + 1
                while j < n, b[j] == ASCII.space || b[j] == ASCII.tab { j += 1 }
                if j == n { i = n; continue }
                if b[j] == ASCII.lf { i = j + 1; continue }
                if b[j] == ASCII.cr, j + 1 < n, b[j + 1] == ASCII.lf { i = j + 2; continue }
                if i + 2 < n, let hi = ASCII.hexValue(b[i + 1]), let lo = ASCII.hexValue(b[i + 2]) {
                    out.append(hi << 4 | lo)
                    i += 3
                    continue
                }
                out.append(c)
                i += 1
                continue
            }
            out.append(underscoreIsSpace && c == ASCII.underscore ? ASCII.space : c)
            i += 1
        }
        return out
    }
}
