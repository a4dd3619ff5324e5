// FacteurMailAuth: SPF evaluation, RFC 7208 — check_host() (§4) for the MAIL FROM and HELO
// identities (§2.3, §2.4), every mechanism (§5) and modifier (§6), macro expansion (§7), and the
// DNS processing limits (§4.6.4). Results are in the RFC's vocabulary (§2.6).

import FacteurDNS
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// RFC 7208 §2.6.
public enum SPFResult: String, Sendable, Hashable, CaseIterable {
    case none, neutral, pass, fail, softfail, temperror, permerror
}

/// What check_host() concluded, and why.
public struct SPFOutcome: Sendable, Hashable {
    public var result: SPFResult
    /// RFC 7208 §6.2: the explanation for a "fail" (from exp=), or nil when there is none.
    public var explanation: String?
    /// A short human-readable reason (the matching mechanism, or the error).
    public var reason: String
    /// The domain whose policy was checked (for Received-SPF / Authentication-Results).
    public var domain: String
}

/// Evaluates SPF through a resolver. Sendable: create one and share it.
public struct SPFVerifier: Sendable {
    public let resolver: any DNSResolver
    /// %{r} (RFC 7208 §7.3): the domain name of the receiving MTA.
    public var receivingDomain: String
    /// %{t}: seconds since the epoch; injectable for tests.
    public var clock: @Sendable () -> Int64

    public init(resolver: any DNSResolver, receivingDomain: String = "unknown",
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.resolver = resolver
        self.receivingDomain = receivingDomain
        self.clock = clock
    }

    /// RFC 7208 §2.4: the MAIL FROM identity. An empty reverse-path checks postmaster@HELO.
    public func checkMailFrom(ip: IPAddress, mailFrom: String, helo: String) async -> SPFOutcome {
        if mailFrom.isEmpty { return await checkHELO(ip: ip, helo: helo) }
        let (local, domain) = Self.split(mailFrom)
        return await checkHost(ip: ip, domain: domain, sender: "\(local.isEmpty ? "postmaster" : local)@\(domain)", helo: helo)
    }

    /// RFC 7208 §2.3: the HELO identity, with sender postmaster@HELO.
    public func checkHELO(ip: IPAddress, helo: String) async -> SPFOutcome {
        await checkHost(ip: ip, domain: helo, sender: "postmaster@\(helo)", helo: helo)
    }

    /// check_host(<ip>, <domain>, <sender>) (RFC 7208 §4).
    public func checkHost(ip: IPAddress, domain: String, sender: String, helo: String) async -> SPFOutcome {
        var state = SPFEvaluation(verifier: self, ip: Self.unmapped(ip), sender: sender, helo: helo)
        let (result, explanation, reason) = await state.checkHost(domain: domain, depth: 0)
        return SPFOutcome(result: result, explanation: explanation, reason: reason, domain: domain)
    }

    /// Splits a mailbox at its last "@"; no "@" means the whole string is the domain (RFC 7208 §4.3).
    static func split(_ address: String) -> (String, String) {
        guard let at = address.lastIndex(of: "@") else { return ("postmaster", address) }
        return (String(address[..<at]), String(address[address.index(after: at)...]))
    }

    /// RFC 7208 §5 (and RFC 4291 §2.5.5.2): an IPv4-mapped IPv6 client is treated as IPv4.
    static func unmapped(_ ip: IPAddress) -> IPAddress {
        if case .v6(let v6) = ip, v6.bytes.prefix(10).allSatisfy({ $0 == 0 }),
           v6.bytes[10] == 0xFF, v6.bytes[11] == 0xFF, let v4 = IPv4Address(bytes: Array(v6.bytes.suffix(4))) {
            return .v4(v4)
        }
        return ip
    }
}

/// Raised inside evaluation to stop with temperror or permerror.
struct SPFAbort: Error {
    var result: SPFResult
    var reason: String
}

/// The state of one check: the lookup counters are shared by every nested include and redirect.
struct SPFEvaluation {
    let verifier: SPFVerifier
    let ip: IPAddress
    let sender: String
    let helo: String
    var lookups = 0
    var voidLookups = 0
    /// The client's validated PTR names (§5.5), shared by the ptr mechanism and %{p}.
    let validatedNamesCache = NamesCache()

    final class NamesCache {
        var names: [DNSName]?
    }

    init(verifier: SPFVerifier, ip: IPAddress, sender: String, helo: String) {
        self.verifier = verifier
        self.ip = ip
        self.sender = sender
        self.helo = helo
    }

    mutating func checkHost(domain: String, depth: Int) async -> (SPFResult, String?, String) {
        do {
            return try await evaluate(domain: domain, depth: depth)
        } catch let abort as SPFAbort {
            return (abort.result, nil, abort.reason)
        } catch {
            return (.temperror, nil, "\(error)")
        }
    }

    /// RFC 7208 §4.3: a usable domain has at least two labels, none empty (a final dot is allowed),
    /// none longer than 63 octets.
    static func dnsName(_ text: String, requireMultiLabel: Bool) -> DNSName? {
        var bytes = Array(text.utf8)
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        let labels = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init)
        if requireMultiLabel && labels.count < 2 { return nil }
        return try? DNSName(labels: labels)
    }

    private mutating func evaluate(domain: String, depth: Int) async throws -> (SPFResult, String?, String) {
        guard let name = Self.dnsName(domain, requireMultiLabel: true) else {
            return (.none, nil, "malformed domain \(domain)")
        }
        // §4.4: the TXT lookup of the checked domain itself is not counted against the limits.
        let records: [TXTRecord]
        do {
            records = try await verifier.resolver.txt(name)
        } catch {
            if error.isNotFound { return (.none, nil, "no SPF record at \(domain)") }
            return (.temperror, nil, "DNS error looking up \(domain): \(error)")
        }
        // §4.5: keep the records that start with "v=spf1"; none → none, more than one → permerror.
        let spf = records.map(\.joined).filter(SPFRecord.isSPF)
        guard !spf.isEmpty else { return (.none, nil, "no SPF record at \(domain)") }
        guard spf.count == 1, let text = spf.first else { return (.permerror, nil, "several SPF records at \(domain)") }
        let record: SPFRecord
        do {
            record = try SPFRecord(parsing: text)
        } catch {
            return (.permerror, nil, "syntax error in SPF record of \(domain): \(error)")
        }

        for directive in record.directives {
            if directive.mechanism.causesLookup { try countLookup() }
            if try await matches(directive.mechanism, domain: domain, depth: depth) {
                let result = directive.qualifier.result
                var explanation: String?
                if result == .fail, let exp = record.explanation {
                    explanation = await explain(exp, domain: domain)
                }
                return (result, explanation, "matched \(directive.qualifier.rawValue)\(directive.mechanism.text)")
            }
        }
        // §6.1: redirect applies only when no mechanism matched.
        if let redirect = record.redirect {
            try countLookup()
            let target = try await expand(redirect, domain: domain, forDomain: true)
            guard Self.dnsName(target, requireMultiLabel: true) != nil else {
                throw SPFAbort(result: .permerror, reason: "redirect to a malformed domain")
            }
            let (result, explanation, reason) = try await evaluate(domain: target, depth: depth + 1)
            // §6.1: a redirect to a domain with no SPF record is a permerror.
            if result == .none { return (.permerror, nil, "redirect target \(target) has no SPF record") }
            return (result, explanation, reason)
        }
        return (.neutral, nil, "no mechanism matched")
    }

    private mutating func countLookup() throws {
        lookups += 1
        if lookups > SPFLimits.maxDNSLookups {
            throw SPFAbort(result: .permerror, reason: "more than \(SPFLimits.maxDNSLookups) DNS lookups")
        }
    }

    private mutating func countVoid() throws {
        voidLookups += 1
        if voidLookups > SPFLimits.maxVoidLookups {
            throw SPFAbort(result: .permerror, reason: "more than \(SPFLimits.maxVoidLookups) void lookups")
        }
    }

    /// A lookup for a mechanism: not found → nil (counted as void), other failures → temperror.
    private mutating func lookup<T>(_ body: () async throws(DNSError) -> T) async throws -> T? {
        do {
            return try await body()
        } catch {
            if error.isNotFound {
                try countVoid()
                return nil
            }
            throw SPFAbort(result: .temperror, reason: "DNS error: \(error)")
        }
    }

    private func target(_ spec: SPFMacroString?, domain: String) async throws -> DNSName? {
        guard let spec else { return Self.dnsName(domain, requireMultiLabel: false) }
        let text = try await expand(spec, domain: domain, forDomain: true)
        return Self.dnsName(text, requireMultiLabel: false)
    }

    private mutating func matches(_ mechanism: SPFMechanism, domain: String, depth: Int) async throws -> Bool {
        switch mechanism {
        case .all:
            return true
        case .ip4(let network, let prefix):
            guard case .v4(let v4) = ip else { return false }
            return Self.inNetwork(v4.bytes, network, prefix)
        case .ip6(let network, let prefix):
            guard case .v6(let v6) = ip else { return false }
            return Self.inNetwork(v6.bytes, network, prefix)
        case .a(let spec, let cidr4, let cidr6):
            guard let name = try await target(spec, domain: domain) else { return false }
            return try await addressesMatch(name, cidr4: cidr4, cidr6: cidr6, countVoid: true)
        case .mx(let spec, let cidr4, let cidr6):
            guard let name = try await target(spec, domain: domain) else { return false }
            let resolver = verifier.resolver
            guard let mxs = try await lookup({ () async throws(DNSError) in try await resolver.mx(name) }) else { return false }
            // §4.6.4: more than 10 MX names is a permerror.
            if mxs.count > SPFLimits.maxAddressLookupsPerMechanism {
                throw SPFAbort(result: .permerror, reason: "more than \(SPFLimits.maxAddressLookupsPerMechanism) MX records")
            }
            for mx in mxs where !mx.isNullMX {
                if try await addressesMatch(mx.exchange, cidr4: cidr4, cidr6: cidr6, countVoid: false) { return true }
            }
            return false
        case .ptr(let spec):
            guard let name = try await target(spec, domain: domain) else { return false }
            let validated = await validatedNames()
            return validated.contains { $0 == name || $0.isSubdomain(of: name) }
        case .exists(let spec):
            guard let name = try await target(spec, domain: domain) else { return false }
            let resolver = verifier.resolver
            // §5.7: always an A query, whatever the client's address family.
            let found = try await lookup({ () async throws(DNSError) in try await resolver.a(name) })
            return !(found ?? []).isEmpty
        case .include(let spec):
            let text = try await expand(spec, domain: domain, forDomain: true)
            guard Self.dnsName(text, requireMultiLabel: true) != nil else {
                throw SPFAbort(result: .permerror, reason: "include of a malformed domain")
            }
            // §5.2: pass matches; fail/softfail/neutral do not; temperror propagates; permerror
            // and none become permerror.
            let (result, _, reason) = try await evaluate(domain: text, depth: depth + 1)
            switch result {
            case .pass: return true
            case .fail, .softfail, .neutral: return false
            case .temperror: throw SPFAbort(result: .temperror, reason: reason)
            case .permerror, .none: throw SPFAbort(result: .permerror, reason: "include:\(text) gave \(result)")
            }
        }
    }

    /// §5.3: the A (or AAAA, for an IPv6 client) records of `name` against the client address.
    private mutating func addressesMatch(_ name: DNSName, cidr4: Int, cidr6: Int, countVoid: Bool) async throws -> Bool {
        let resolver = verifier.resolver
        switch ip {
        case .v4(let client):
            let addresses: [IPv4Address]?
            if countVoid {
                addresses = try await lookup({ () async throws(DNSError) in try await resolver.a(name) })
            } else {
                addresses = try await quietLookup({ () async throws(DNSError) in try await resolver.a(name) })
            }
            return (addresses ?? []).contains { Self.inNetwork(client.bytes, $0.bytes, cidr4) }
        case .v6(let client):
            let addresses: [IPv6Address]?
            if countVoid {
                addresses = try await lookup({ () async throws(DNSError) in try await resolver.aaaa(name) })
            } else {
                addresses = try await quietLookup({ () async throws(DNSError) in try await resolver.aaaa(name) })
            }
            return (addresses ?? []).contains { Self.inNetwork(client.bytes, $0.bytes, cidr6) }
        }
    }

    /// A lookup whose "not found" is not a void lookup (the address lookups of an MX's targets).
    private func quietLookup<T>(_ body: () async throws(DNSError) -> T) async throws -> T? {
        do {
            return try await body()
        } catch {
            if error.isNotFound { return nil }
            throw SPFAbort(result: .temperror, reason: "DNS error: \(error)")
        }
    }

    /// §5.5: the client's PTR names (at most 10) whose A/AAAA records include the client address.
    /// Any DNS error simply drops the name (or, for the PTR query, gives no names).
    func validatedNames() async -> [DNSName] {
        // Computed once per check: a record full of %{p} must not multiply DNS queries.
        if let cached = validatedNamesCache.names { return cached }
        let names = await lookUpValidatedNames()
        validatedNamesCache.names = names
        return names
    }

    private func lookUpValidatedNames() async -> [DNSName] {
        guard let names = try? await verifier.resolver.ptr(ip) else { return [] }
        var validated: [DNSName] = []
        for name in names.prefix(SPFLimits.maxAddressLookupsPerMechanism) {
            switch ip {
            case .v4(let client):
                if let addresses = try? await verifier.resolver.a(name), addresses.contains(client) { validated.append(name) }
            case .v6(let client):
                if let addresses = try? await verifier.resolver.aaaa(name), addresses.contains(client) { validated.append(name) }
            }
        }
        return validated
    }

    static func inNetwork(_ address: [UInt8], _ network: [UInt8], _ prefix: Int) -> Bool {
        IPNetwork.prefixMatches(address, network, prefix)
    }

    /// §6.2: the explanation TXT record, macro-expanded; any problem gives no explanation.
    private func explain(_ spec: SPFMacroString, domain: String) async -> String? {
        guard let target = try? await expand(spec, domain: domain, forDomain: true),
              let name = Self.dnsName(target, requireMultiLabel: false),
              let records = try? await verifier.resolver.txt(name), records.count == 1, let record = records.first,
              let macro = try? SPFMacroString(parsing: record.joined, allowExplanationLetters: true),
              let text = try? await expand(macro, domain: domain, forDomain: false) else { return nil }
        // Only printable US-ASCII is shown (§6.2 requires it of the record).
        guard text.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else { return nil }
        return String(text.prefix(SPFLimits.maxExplanationLength))
    }

    /// §7: expands a macro-string. For a domain-spec (`forDomain`), the result is cut to 253
    /// characters by removing whole labels from the left (§7.3).
    func expand(_ string: SPFMacroString, domain: String, forDomain: Bool) async throws -> String {
        var out: [UInt8] = []
        for token in string.tokens {
            switch token {
            case .literal(let bytes):
                out += bytes
            case .macro(let letter, let keep, let reverse, let delimiters, let urlEscape):
                var value = Array(try await macroValue(letter, domain: domain).utf8)
                // §7.3: split on the delimiters (default "."), optionally reverse, keep the right-most
                // `keep` parts, join with ".".
                let delimiterSet = delimiters.isEmpty ? [UInt8(ascii: ".")] : delimiters
                if keep != nil || reverse || !delimiters.isEmpty {
                    var parts = value.split(omittingEmptySubsequences: false, whereSeparator: { delimiterSet.contains($0) })
                    if reverse { parts.reverse() }
                    if let keep, keep < parts.count { parts = Array(parts.suffix(keep)) }
                    value = Array(parts.joined(separator: [UInt8(ascii: ".")]))
                }
                if urlEscape { value = Self.urlEscaped(value) }
                out += value
            }
            if out.count > SPFLimits.maxRecordLength {
                throw SPFAbort(result: .permerror, reason: "macro expansion too long")
            }
        }
        if forDomain {
            while out.count > SPFLimits.maxDomainLength, let dot = out.firstIndex(of: UInt8(ascii: ".")) {
                out.removeSubrange(...dot)
            }
            if out.count > SPFLimits.maxDomainLength { out.removeAll() }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func macroValue(_ letter: UInt8, domain: String) async throws -> String {
        switch letter {
        case UInt8(ascii: "s"): return sender
        case UInt8(ascii: "l"): return SPFVerifier.split(sender).0
        case UInt8(ascii: "o"): return SPFVerifier.split(sender).1
        case UInt8(ascii: "d"): return domain
        case UInt8(ascii: "h"): return helo
        case UInt8(ascii: "v"):
            if case .v4 = ip { return "in-addr" }
            return "ip6"
        case UInt8(ascii: "i"):
            switch ip {
            case .v4(let a): return a.description
            case .v6(let a):
                // §7.3: IPv6 in dotted nibble form (upper-case hex, as the RFC's example shows).
                return a.bytes.flatMap { [String($0 >> 4, radix: 16, uppercase: true), String($0 & 0xF, radix: 16, uppercase: true)] }
                    .joined(separator: ".")
            }
        case UInt8(ascii: "c"): return ip.description
        case UInt8(ascii: "r"): return verifier.receivingDomain
        case UInt8(ascii: "t"): return String(verifier.clock())
        case UInt8(ascii: "p"):
            // §7.3 (discouraged, but defined): a validated name, preferring the domain itself or a
            // subdomain of it; "unknown" if none.
            let names = await validatedNames()
            guard let domainName = Self.dnsName(domain, requireMultiLabel: false) else { return "unknown" }
            let chosen = names.first { $0 == domainName } ?? names.first { $0.isSubdomain(of: domainName) } ?? names.first
            return chosen.map(\.description) ?? "unknown"
        default:
            throw SPFAbort(result: .permerror, reason: "unknown macro letter")
        }
    }

    /// RFC 3986 unreserved characters stay; everything else is %XX (RFC 7208 §7.3, upper-case macros).
    static func urlEscaped(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for b in bytes {
            if isAlnum(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~") {
                out.append(b)
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            }
        }
        return out
    }
}
