// Byte helpers for FacteurIdentity: constant-time comparison, random bytes, and the
// base64 forms used by PHC strings (unpadded) and SCRAM (RFC 4648 §4, padded).

import Foundation

enum Bytes {
    /// Compares two byte strings in time that depends only on their lengths, never on
    /// where they differ. Lengths are public here (hash and key sizes are fixed).
    static func constantTimeEquals<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    /// Cryptographically secure random bytes (`SystemRandomNumberGenerator` reads the
    /// kernel's CSPRNG: getrandom(2) on Linux, arc4random on Darwin).
    static func random(count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<max(0, count)).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// RFC 4648 §4 base64 with padding.
    static func base64(_ bytes: some Collection<UInt8>) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Strict RFC 4648 §4 decoding: standard alphabet, padding required, no whitespace.
    static func decodeBase64(_ text: Substring) -> [UInt8]? {
        guard text.count % 4 == 0,
              text.utf8.allSatisfy({ isBase64Character($0) || $0 == UInt8(ascii: "=") }),
              let data = Data(base64Encoded: String(text)) else { return nil }
        return [UInt8](data)
    }

    /// PHC strings use the standard alphabet without padding.
    static func base64Unpadded(_ bytes: some Collection<UInt8>) -> String {
        var text = base64(bytes)
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    /// Decodes PHC's unpadded base64; padded input is accepted too (some writers pad).
    static func decodeBase64Unpadded(_ text: Substring) -> [UInt8]? {
        var body = text
        while body.hasSuffix("=") { body.removeLast() }
        guard !body.isEmpty, body.utf8.allSatisfy(isBase64Character), body.count % 4 != 1 else { return nil }
        let padded = String(body) + String(repeating: "=", count: (4 - body.count % 4) % 4)
        guard let data = Data(base64Encoded: padded) else { return nil }
        return [UInt8](data)
    }

    private static func isBase64Character(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"):
            return true
        default:
            return false
        }
    }
}
