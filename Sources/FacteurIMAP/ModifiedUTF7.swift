// Modified UTF-7 for mailbox names (RFC 3501 §5.1.3, kept by RFC 9051 §5.1.3 for clients that do
// not enable UTF8=ACCEPT): printable ASCII stands for itself except "&", written "&-"; other
// characters are UTF-16 in modified base64 (',' for '/', no padding) between "&" and "-".

enum ModifiedUTF7 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,".utf8)

    private static func value(_ b: UInt8) -> UInt32? {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return UInt32(b - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return UInt32(b - UInt8(ascii: "a") + 26)
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(b - UInt8(ascii: "0") + 52)
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: ","): return 63
        default: return nil
        }
    }

    /// Decodes a name; nil when it is not valid modified UTF-7 (8-bit bytes, bad base64, an
    /// unpaired surrogate, or an ASCII character needlessly encoded).
    static func decode(_ bytes: [UInt8]) -> String? {
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            guard b >= 0x20, b <= 0x7E else { return nil }
            if b != UInt8(ascii: "&") {
                scalars.append(Unicode.Scalar(b))
                i += 1
                continue
            }
            i += 1
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: "-") {
                scalars.append("&")
                i += 1
                continue
            }
            var bits: UInt32 = 0
            var bitCount = 0
            var units: [UInt16] = []
            while i < bytes.count, bytes[i] != UInt8(ascii: "-") {
                guard let v = value(bytes[i]) else { return nil }
                bits = (bits << 6) | v
                bitCount += 6
                if bitCount >= 16 {
                    bitCount -= 16
                    units.append(UInt16(truncatingIfNeeded: bits >> UInt32(bitCount)))
                    bits &= (1 << UInt32(bitCount)) - 1
                }
                i += 1
            }
            guard i < bytes.count, !units.isEmpty, bitCount < 6, bits == 0 else { return nil }
            i += 1
            var decoded = String.UnicodeScalarView()
            var iterator = units.makeIterator()
            var codec = UTF16()
            loop: while true {
                switch codec.decode(&iterator) {
                case .scalarValue(let s):
                    // RFC 3501: printable ASCII must not be encoded.
                    if s.value >= 0x20, s.value <= 0x7E { return nil }
                    decoded.append(s)
                case .emptyInput: break loop
                case .error: return nil
                }
            }
            scalars.append(contentsOf: decoded)
        }
        return String(scalars)
    }

    static func encode(_ name: String) -> [UInt8] {
        var out: [UInt8] = []
        var pending: [UInt16] = []
        func flush() {
            guard !pending.isEmpty else { return }
            out.append(UInt8(ascii: "&"))
            var bits: UInt32 = 0
            var bitCount = 0
            for unit in pending {
                bits = (bits << 16) | UInt32(unit)
                bitCount += 16
                while bitCount >= 6 {
                    bitCount -= 6
                    out.append(alphabet[Int((bits >> UInt32(bitCount)) & 0x3F)])
                }
                bits &= (1 << UInt32(bitCount)) - 1
            }
            if bitCount > 0 { out.append(alphabet[Int((bits << UInt32(6 - bitCount)) & 0x3F)]) }
            out.append(UInt8(ascii: "-"))
            pending.removeAll()
        }
        for scalar in name.unicodeScalars {
            if scalar.value >= 0x20, scalar.value <= 0x7E {
                flush()
                out.append(UInt8(scalar.value))
                if scalar == "&" { out.append(UInt8(ascii: "-")) }
            } else {
                pending.append(contentsOf: String(scalar).utf16)
            }
        }
        flush()
        return out
    }
}
