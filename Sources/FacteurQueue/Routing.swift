// Routing of outbound mail: per-domain rules from the configuration (smarthost, deliver
// locally) and, by default, the domain's MX records in preference order with the fallback to
// the domain's own A/AAAA records (RFC 5321 §5.1), null MX honoured (RFC 7505 §3).

import FacteurDNS

/// How mail for a domain leaves.
public enum QueueRoute: Sendable {
    /// Look the domain up in DNS (MX, then A/AAAA).
    case mx
    /// Hand everything to one relay host (a smarthost).
    case relay(QueueRelay)
    /// Deliver into the local store even though the domain is not in the domain table.
    case local
}

public struct QueueRelay: Sendable {
    /// A host name (resolved with A/AAAA) or an IP address.
    public var host: String
    public var port: Int
    /// AUTH PLAIN credentials; sent over TLS only.
    public var username: String?
    public var password: String?
    /// Refuse to relay without STARTTLS (implied by credentials).
    public var requireTLS: Bool
    public init(host: String, port: Int = 25, username: String? = nil, password: String? = nil, requireTLS: Bool = false) {
        self.host = host; self.port = port; self.username = username; self.password = password
        self.requireTLS = requireTLS || username != nil
    }
}

/// One host to try, with its addresses in the order to try them.
public struct DeliveryTarget: Sendable, Equatable {
    public var hostname: String
    public var addresses: [String]
    public var port: Int
}

/// The hosts of a domain and whether its MX RRset (or its proven absence, for the implicit MX)
/// was validated with DNSSEC: DANE applies only then (RFC 7672 §2.2.1).
public struct RoutedTargets: Sendable, Equatable {
    public var targets: [DeliveryTarget]
    public var mxAuthenticated: Bool
    public init(targets: [DeliveryTarget], mxAuthenticated: Bool) {
        self.targets = targets; self.mxAuthenticated = mxAuthenticated
    }
}

/// Why no host could be found.
public struct RoutingFailure: Error, Sendable, Equatable {
    public var permanent: Bool
    /// An SMTP-style reply text for the queue and the DSN: `550 5.1.2 …`.
    public var reply: String
}

/// Turns a recipient domain into the hosts to try.
public struct MXRouter: Sendable {
    public var resolver: any DNSResolver
    public var ipv6Enabled: Bool
    /// The port MX hosts listen on: 25; tests point it elsewhere.
    public var port: Int
    /// RFC 5321 §5.1 asks senders to bound how many MX hosts they try.
    public static let maxHosts = 10

    public init(resolver: any DNSResolver, ipv6Enabled: Bool = true, port: Int = 25) {
        self.resolver = resolver; self.ipv6Enabled = ipv6Enabled; self.port = port
    }

    /// The hosts for `domain` by MX preference (or the implicit MX), each with its addresses.
    public func targets(for domain: String) async -> Result<[DeliveryTarget], RoutingFailure> {
        await routedTargets(for: domain).map(\.targets)
    }

    /// `targets(for:)` with the AD bit of the MX answer.
    public func routedTargets(for domain: String) async -> Result<RoutedTargets, RoutingFailure> {
        let name: DNSName
        do {
            name = try DNSName(domain)
        } catch {
            return .failure(RoutingFailure(permanent: true, reply: "550 5.1.2 bad destination domain \(domain)"))
        }
        var hosts: [DNSName]
        var authenticated = false
        do {
            let answer = try await resolver.query(name: name, type: .mx)
            authenticated = answer.authenticData
            let records = answer.records.compactMap { record -> MXRecord? in
                if case .mx(let mx) = record.data { return mx }
                return nil
            }.sorted { $0.preference < $1.preference }
            // RFC 7505 §3: a null MX means the domain accepts no mail at all.
            if records.contains(where: \.isNullMX) {
                return .failure(RoutingFailure(permanent: true,
                                               reply: "556 5.1.10 \(domain) does not accept mail (null MX, RFC 7505)"))
            }
            hosts = records.map(\.exchange)
        } catch {
            switch error {
            case .noData(let negative):
                // RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
                hosts = [name]
                authenticated = negative.authenticData
            case .nxdomain:
                return .failure(RoutingFailure(permanent: true, reply: "550 5.1.2 domain \(domain) does not exist"))
            default:
                if error.isTemporary {
                    return .failure(RoutingFailure(permanent: false, reply: "451 4.4.3 DNS lookup of \(domain) MX failed: \(error)"))
                }
                return .failure(RoutingFailure(permanent: true, reply: "550 5.1.2 DNS lookup of \(domain) MX failed: \(error)"))
            }
        }
        var seen = Set<DNSName>()
        hosts = hosts.filter { seen.insert($0.lowercased).inserted }
        var targets: [DeliveryTarget] = []
        var temporary: String?
        var implicitNotFound = false
        for host in hosts.prefix(Self.maxHosts) {
            let (addresses, failure) = await addresses(of: host)
            if let failure {
                if failure.isTemporary { temporary = "\(host): \(failure)" } else if hosts == [name] { implicitNotFound = true }
            }
            if !addresses.isEmpty {
                targets.append(DeliveryTarget(hostname: host.description.trimmingDot, addresses: addresses, port: port))
            }
        }
        if targets.isEmpty {
            if let temporary {
                return .failure(RoutingFailure(permanent: false, reply: "451 4.4.3 no address for the mail hosts of \(domain): \(temporary)"))
            }
            if implicitNotFound {
                return .failure(RoutingFailure(permanent: true, reply: "550 5.1.2 \(domain) has neither MX nor address records"))
            }
            // An MX pointing at names without addresses is usually a transient mistake.
            return .failure(RoutingFailure(permanent: false, reply: "451 4.4.4 the mail hosts of \(domain) have no usable address"))
        }
        return .success(RoutedTargets(targets: targets, mxAuthenticated: authenticated))
    }

    /// IPv6 first (when enabled), then IPv4. The error is the worst seen when nothing was found.
    func addresses(of host: DNSName) async -> ([String], DNSError?) {
        var result: [String] = []
        var failure: DNSError?
        if ipv6Enabled {
            do {
                result += try await resolver.aaaa(host).map(\.description)
            } catch {
                failure = error
            }
        }
        do {
            result += try await resolver.a(host).map(\.description)
        } catch {
            if failure == nil || error.isTemporary { failure = error }
        }
        return (result, result.isEmpty ? failure : nil)
    }

    /// The target of a relay route.
    public func targets(for relay: QueueRelay) async -> Result<[DeliveryTarget], RoutingFailure> {
        if SMTPClientConnection.isIPLiteral(relay.host) {
            return .success([DeliveryTarget(hostname: relay.host, addresses: [relay.host], port: relay.port)])
        }
        guard let name = try? DNSName(relay.host) else {
            return .failure(RoutingFailure(permanent: false, reply: "451 4.3.5 bad relay host name \(relay.host)"))
        }
        let (addresses, failure) = await addresses(of: name)
        guard !addresses.isEmpty else {
            return .failure(RoutingFailure(permanent: false,
                                           reply: "451 4.4.3 relay host \(relay.host) has no address: \(failure.map { "\($0)" } ?? "none")"))
        }
        return .success([DeliveryTarget(hostname: relay.host, addresses: addresses, port: relay.port)])
    }
}

extension String {
    var trimmingDot: String { hasSuffix(".") ? String(dropLast()) : self }
}
