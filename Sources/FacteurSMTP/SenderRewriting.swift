// The Sender Rewriting Scheme (SRS, the "SRS0" form of Shevek's 2004 specification, as Postfix's
// postsrsd and Exim use it): mail forwarded to another organisation leaves with an envelope
// sender in our domain, so the next hop's SPF check sees our address and passes, while a bounce
// to that address can be turned back into the original sender — and only one we created, for
// a few weeks (an HMAC and a timestamp), so the bounce path is no open relay.
//
//   SRS0=HHHH=TT=example.com=alice@forwarder.example
//   HHHH: HMAC-SHA256(secret, TT domain local), 4 base32 characters (case-insensitive, as
//         local parts may be case-folded on the way); TT: the day, 10 bits in 2 base32 characters.

import Crypto
import Foundation

public struct SenderRewriting: Sendable {
    let key: SymmetricKey
    /// How long a rewritten address is honoured for bounces (postsrsd's default).
    public static let maxAgeDays = 21
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")

    public init(secret: [UInt8]) {
        key = SymmetricKey(data: secret)
    }

    /// The envelope sender to use when forwarding a message from `sender` through `domain`.
    /// Our own SRS addresses are kept as they are (no double rewriting of a bounce's path).
    public func forward(_ sender: String, via domain: String, now: Date = Date()) -> String {
        guard let at = sender.lastIndex(of: "@") else { return sender }
        let local = String(sender[..<at])
        let senderDomain = String(sender[sender.index(after: at)...])
        if local.uppercased().hasPrefix("SRS0="), senderDomain.lowercased() == domain.lowercased() { return sender }
        let day = Self.day(now)
        let stamp = String([Self.alphabet[(day >> 5) & 31], Self.alphabet[day & 31]])
        return "SRS0=\(hash(stamp, senderDomain, local))=\(stamp)=\(senderDomain)=\(local)@\(domain)"
    }

    /// The original sender an SRS0 local part stands for, or nil when it is not one of ours,
    /// was tampered with, or is too old.
    public func reverse(localPart: String, now: Date = Date()) -> String? {
        guard localPart.count <= 512, localPart.uppercased().hasPrefix("SRS0=") else { return nil }
        let parts = localPart.split(separator: "=", maxSplits: 4, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, parts[1].count == 4, parts[2].count == 2, !parts[3].isEmpty, !parts[4].isEmpty else { return nil }
        let stamp = parts[2].uppercased()
        guard let high = Self.alphabet.firstIndex(of: stamp.first!), let low = Self.alphabet.firstIndex(of: stamp.last!) else { return nil }
        let age = (Self.day(now) - (high << 5 | low)) & 1023
        guard age <= Self.maxAgeDays else { return nil }
        let expected = Array(hash(stamp, parts[3], parts[4]).utf8)
        let given = Array(parts[1].uppercased().utf8)
        // Constant-time comparison: the hash is the secret-derived part.
        var difference: UInt8 = 0
        for (a, b) in zip(expected, given) { difference |= a ^ b }
        guard difference == 0, expected.count == given.count else { return nil }
        return "\(parts[4])@\(parts[3])"
    }

    func hash(_ stamp: String, _ domain: String, _ local: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data((stamp + domain + local).lowercased().utf8), using: key)
        let bytes = Array(mac.prefix(3))
        let bits = UInt32(bytes[0]) << 16 | UInt32(bytes[1]) << 8 | UInt32(bytes[2])
        return String((0..<4).map { Self.alphabet[Int((bits >> UInt32(19 - 5 * $0)) & 31)] })
    }

    static func day(_ date: Date) -> Int { Int(date.timeIntervalSince1970 / 86_400) & 1023 }
}
