// FacteurMailAuth: "iprev", the forward-confirmed reverse DNS check of the client (RFC 8601 §3):
// the client's PTR names are looked up forward, and the check passes when one of them resolves
// back to the client's address. Results use §2.7.3's vocabulary.

import FacteurDNS

public enum IPRevResult: String, Sendable, Hashable {
    case pass, fail, temperror, permerror
}

public struct IPRevOutcome: Sendable, Hashable {
    public var result: IPRevResult
    /// The name that confirmed the address (pass), for the comment and logs.
    public var name: String?
    public var reason: String
}

public struct IPRevVerifier: Sendable {
    public let resolver: any DNSResolver
    /// PTR names checked forward at most (as SPF's ptr mechanism, RFC 7208 §4.6.4).
    public static let maxNames = 10

    public init(resolver: any DNSResolver) { self.resolver = resolver }

    public func check(_ ip: IPAddress) async -> IPRevOutcome {
        let names: [DNSName]
        do {
            names = try await resolver.ptr(ip)
        } catch {
            if error.isNotFound { return IPRevOutcome(result: .permerror, name: nil, reason: "no PTR record") }
            return IPRevOutcome(result: .temperror, name: nil, reason: "PTR lookup failed")
        }
        guard !names.isEmpty else { return IPRevOutcome(result: .permerror, name: nil, reason: "no PTR record") }
        var transient = false
        for name in names.prefix(Self.maxNames) {
            do {
                let matches: Bool
                switch ip {
                case .v4(let v4): matches = try await resolver.a(name).contains(v4)
                case .v6(let v6): matches = try await resolver.aaaa(name).contains(v6)
                }
                if matches { return IPRevOutcome(result: .pass, name: name.description, reason: "forward-confirmed") }
            } catch {
                if error.isTemporary { transient = true }
            }
        }
        if transient { return IPRevOutcome(result: .temperror, name: nil, reason: "forward lookup failed") }
        return IPRevOutcome(result: .fail, name: names.first?.description, reason: "PTR name does not resolve back to the address")
    }
}
