// The MTA-STS policy file (RFC 8461 §3.2) that Facteur publishes for its domains at
// https://mta-sts.<domain>/.well-known/mta-sts.txt, and the policy id of its `_mta-sts` TXT
// record (§3.1), derived from the policy text so that it changes whenever the policy does.

/// RFC 8461 §5: what a sending MTA does when the policy cannot be satisfied.
public enum MTASTSMode: String, Sendable, CaseIterable {
    case enforce, testing, none
}

public struct MTASTSPolicy: Sendable, Equatable {
    /// RFC 8461 §3.2: max_age is at most 31557600 seconds (about one year).
    public static let maxAgeLimit = 31_557_600

    public var mode: MTASTSMode
    public var maxAge: Int
    /// MX patterns: host names, or `*.example.org` (one leftmost label wildcard, §4.1).
    public var mx: [String]

    public init(mode: MTASTSMode = .testing, maxAge: Int = 604_800, mx: [String]) {
        self.mode = mode
        self.maxAge = min(max(maxAge, 0), Self.maxAgeLimit)
        self.mx = mx
    }

    /// The policy body: `key: value` lines ending in CRLF (§3.2 "sts-policy-term" uses CRLF
    /// between fields; a trailing CRLF is allowed and common).
    public var text: String {
        var lines = ["version: STSv1", "mode: \(mode.rawValue)"]
        for pattern in mx { lines.append("mx: \(pattern)") }
        lines.append("max_age: \(maxAge)")
        return lines.map { $0 + "\r\n" }.joined()
    }

    /// §3.1: `id` is 1 to 32 alphanumeric characters that change when the policy changes.
    /// A 64-bit FNV-1a hash of the text, in hex: not a security property, only a change marker.
    public var id: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The TXT record to publish at `_mta-sts.<domain>` (§3.1).
    public var txtRecord: String { "v=STSv1; id=\(id);" }
}
