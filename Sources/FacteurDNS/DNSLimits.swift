// FacteurDNS: every limit and default of the DNS client in one place, named after the RFC that sets it.
// RFC 1035 §2.3.4 (sizes), RFC 6891 §6.2.5 and the DNS Flag Day 2020 (1232-byte EDNS payload),
// RFC 7766 (TCP), RFC 2308 §5 (negative caching), resolv.conf(5) (timeout and attempts bounds).

/// Limits and defaults of FacteurDNS.
public enum DNSLimits {
    /// RFC 1035 §2.3.4: a label is at most 63 octets.
    public static let maxLabelLength = 63
    /// RFC 1035 §2.3.4: a name is at most 255 octets in wire form (length bytes and the root included).
    public static let maxNameLength = 255
    /// RFC 1035 §4.2.1: a UDP message without EDNS0 is at most 512 octets.
    public static let classicUDPPayloadSize = 512
    /// RFC 6891 §6.2.5 and the DNS Flag Day 2020 advice: 1232 octets avoids IP fragmentation.
    public static let defaultEDNSPayloadSize: UInt16 = 1232
    /// RFC 7766 §8: a TCP message carries a 2-octet length, so at most 65535 octets.
    public static let maxMessageSize = 65535
    /// Compression pointers followed while decoding one name. A name has at most 127 labels,
    /// so more jumps than that can only be a loop (RFC 1035 §4.1.4 has no limit of its own).
    public static let maxCompressionJumps = 127
    /// Records decoded from one section; a 65535-octet message holds at most ~5957 empty records,
    /// so this only refuses absurd counts before reading them.
    public static let maxRecordsPerSection = 8192
    /// CNAME records followed for one query before giving up (RFC 1034 §3.6.2 asks for a limit, gives none).
    public static let maxCNAMEChain = 8
    /// resolv.conf(5): at most three nameservers are used.
    public static let maxResolvConfNameservers = 3
    /// resolv.conf(5): `timeout:` defaults to 5 s and is capped at 30 s.
    public static let defaultTimeoutSeconds = 5
    public static let maxTimeoutSeconds = 30
    /// resolv.conf(5): `attempts:` defaults to 2 and is capped at 5.
    public static let defaultAttempts = 2
    public static let maxAttempts = 5
    /// Largest resolv.conf we read; the real ones are a few hundred bytes.
    public static let maxResolvConfSize = 64 * 1024
    /// Cache: entries kept before the least recently used are evicted.
    public static let defaultCacheCapacity = 10_000
    /// Cache: no answer is kept longer than a day, whatever its TTL (RFC 2181 §8 allows clamping).
    public static let defaultMaxCacheTTL: UInt32 = 86_400
    /// RFC 2308 §5: negative answers are cached at most one to three hours; we keep three.
    public static let defaultMaxNegativeTTL: UInt32 = 10_800
    /// RFC 2181 §8: a TTL with the top bit set is treated as zero.
    public static let maxTTL: UInt32 = 0x7FFF_FFFF
}
