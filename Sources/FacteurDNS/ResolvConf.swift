// FacteurDNS: reads /etc/resolv.conf as resolv.conf(5) describes it — `nameserver` lines (at most
// three, IPv4 or IPv6, a `%scope` suffix dropped) and `options timeout:N attempts:N trust-ad`. Search
// lists, `ndots` and the rest are ignored: a mail server asks only for fully qualified names.

import NIOCore

/// The parts of resolv.conf FacteurDNS uses.
public struct ResolvConf: Hashable, Sendable {
    /// Nameserver addresses, in file order.
    public var nameservers: [IPAddress]
    /// Seconds to wait for one server's answer (`options timeout:`).
    public var timeoutSeconds: Int
    /// Rounds through the server list (`options attempts:`).
    public var attempts: Int
    /// `options trust-ad`: the path to the servers is trusted, so their AD bit means something.
    public var trustAD: Bool
    /// `options rotate`: spread queries over the servers instead of always starting with the first.
    public var rotate: Bool

    public init(nameservers: [IPAddress] = [], timeoutSeconds: Int = DNSLimits.defaultTimeoutSeconds,
                attempts: Int = DNSLimits.defaultAttempts, trustAD: Bool = false, rotate: Bool = false) {
        self.nameservers = nameservers
        self.timeoutSeconds = timeoutSeconds
        self.attempts = attempts
        self.trustAD = trustAD
        self.rotate = rotate
    }

    /// Parses the file's text. Unknown lines and malformed values are skipped, as the C library does;
    /// with no usable `nameserver` line the list stays empty (the caller decides on a default).
    public init(parsing text: String) {
        self.init()
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            // '#' and ';' start comments (resolv.conf(5)).
            let line = rawLine.prefix { $0 != "#" && $0 != ";" }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let keyword = words.first else { continue }
            switch keyword {
            case "nameserver":
                guard words.count >= 2, nameservers.count < DNSLimits.maxResolvConfNameservers else { continue }
                let text = words[1].prefix { $0 != "%" }
                if let address = IPAddress(String(text)) {
                    nameservers.append(address)
                }
            case "options":
                for option in words.dropFirst() {
                    if option.hasPrefix("timeout:"), let value = Int(option.dropFirst("timeout:".count)) {
                        timeoutSeconds = min(max(value, 1), DNSLimits.maxTimeoutSeconds)
                    } else if option.hasPrefix("attempts:"), let value = Int(option.dropFirst("attempts:".count)) {
                        attempts = min(max(value, 1), DNSLimits.maxAttempts)
                    } else if option == "trust-ad" {
                        trustAD = true
                    } else if option == "rotate" {
                        rotate = true
                    }
                }
            default:
                continue
            }
        }
    }

    /// Reads and parses a file (by default /etc/resolv.conf). A missing or unreadable file gives the
    /// defaults with no servers; files larger than `DNSLimits.maxResolvConfSize` are cut there.
    public static func load(path: String = "/etc/resolv.conf") -> ResolvConf {
        guard let bytes = readFile(path) else { return ResolvConf() }
        return ResolvConf(parsing: String(decoding: bytes, as: UTF8.self))
    }

    private static func readFile(_ path: String) -> [UInt8]? {
        #if canImport(Glibc)
        let fd = Glibc.open(path, O_RDONLY)
        #elseif canImport(Darwin)
        let fd = Darwin.open(path, O_RDONLY)
        #endif
        guard fd >= 0 else { return nil }
        defer { _ = close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count < DNSLimits.maxResolvConfSize {
            let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got <= 0 { break }
            out += chunk[0..<got]
        }
        return Array(out.prefix(DNSLimits.maxResolvConfSize))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
