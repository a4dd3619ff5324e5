// RFC 3461 (SMTP Delivery Status Notifications) parameter syntax: RET and ENVID on MAIL,
// NOTIFY and ORCPT on RCPT, and the xtext encoding (§4) their values use. Pure: no state.
// It lives with the queue because both ends need it: the SMTP server validates the parameters
// as they arrive, and the queue decodes them into the DSNs it writes (RFC 3464 §2.2.1, §2.3.1).

import FacteurStore

public enum DSNParameterSyntax {
    /// RFC 3461 §4.4: "the ENVID ... MUST NOT exceed 100 characters" (counted encoded, as sent).
    public static let maxEnvelopeIDLength = 100
    /// RFC 3461 §4.2: the ORCPT parameter "MUST NOT exceed 500 characters" (counted as sent).
    public static let maxOriginalRecipientLength = 500

    /// xtext = *( xchar / hexchar ); xchar is "!".."~" except "+" and "="; hexchar is "+" and two
    /// upper-case hex digits (RFC 3461 §4).
    public static func isXtext(_ value: String) -> Bool { decodeXtext(value) != nil }

    /// The xtext-decoded value, or nil when `value` is not xtext. Decoded octets that are not
    /// UTF-8 are replaced (the result only goes into reports and logs).
    public static func decodeXtext(_ value: String) -> String? {
        let bytes = Array(value.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "+") {
                guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else {
                    return nil
                }
                out.append(high << 4 | low)
                index += 3
                continue
            }
            guard byte >= 33, byte <= 126, byte != UInt8(ascii: "=") else { return nil }
            out.append(byte)
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Encodes text as xtext: the inverse of `decodeXtext`.
    public static func encodeXtext(_ text: String) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            if byte >= 33, byte <= 126, byte != UInt8(ascii: "+"), byte != UInt8(ascii: "=") {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "+"), digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `ORCPT=addr-type ";" xtext` (RFC 3461 §4.2): the address type (atom, e.g. `rfc822`) and
    /// the decoded address, or nil when malformed or too long.
    public static func parseOriginalRecipient(_ value: String) -> (addressType: String, address: String)? {
        guard value.utf8.count <= maxOriginalRecipientLength, let semicolon = value.firstIndex(of: ";") else { return nil }
        let type = value[..<semicolon]
        let encoded = String(value[value.index(after: semicolon)...])
        // addr-type = atom (RFC 3461 §4.2, RFC 5322 atext); registered types are names like rfc822, utf-8.
        guard !type.isEmpty, type.utf8.allSatisfy(isASCIIAtext),
              !encoded.isEmpty, let address = decodeXtext(encoded) else { return nil }
        return (String(type), address)
    }

    /// `ENVID=xtext` (RFC 3461 §4.4): the decoded identifier, or nil when malformed or too long.
    public static func parseEnvelopeID(_ value: String) -> String? {
        guard !value.isEmpty, value.utf8.count <= maxEnvelopeIDLength else { return nil }
        return decodeXtext(value)
    }

    /// ORCPT as a DSN shows it (RFC 3464 §2.3.1: `addr-type; address`, decoded), or nil.
    public static func reportedOriginalRecipient(_ value: String?) -> String? {
        value.flatMap(parseOriginalRecipient).map { "\($0.addressType); \($0.address)" }
    }

    /// `RET=FULL|HDRS` (RFC 3461 §4.3), case-insensitive.
    public static func parseReturn(_ value: String) -> DSNReturn? {
        DSNReturn(rawValue: value.uppercased())
    }

    /// `NOTIFY=NEVER|1#(SUCCESS|FAILURE|DELAY)` (RFC 3461 §4.1): no empty items, NEVER alone.
    public static func parseNotify(_ value: String) -> DSNNotify? {
        guard !value.split(separator: ",", omittingEmptySubsequences: false).contains(where: \.isEmpty) else { return nil }
        return DSNNotify(parameterValue: value)
    }

    /// RFC 5322 §3.2.3 atext, ASCII only.
    static func isASCIIAtext(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-/=?^_`{|}~".utf8).contains(byte)
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
