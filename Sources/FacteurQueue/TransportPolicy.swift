// Outbound transport security policy: for each destination, before connecting, what TLS each MX
// host must give. Precedence: DANE (RFC 7672 §2: DNSSEC-validated MX and TLSA) > MTA-STS (RFC 8461
// §5) > the configured per-domain override > opportunistic STARTTLS. REQUIRETLS messages (RFC 8689
// §5) narrow it to authenticated MX hosts with verified certificates; "TLS-Required: No" messages
// (RFC 8689 §4.2.2) fall back to opportunistic TLS instead of failing a policy.

import FacteurDNS
import FacteurStore
import Foundation

/// What the SMTP client must achieve with one host.
public enum TLSRequirement: Sendable, Equatable {
    /// Do not even try STARTTLS (a partner with a broken TLS stack; `allow-plaintext`).
    case plaintextOnly
    /// STARTTLS when offered, any certificate; plaintext otherwise (RFC 3207 as practised).
    case opportunistic
    /// TLS mandatory, the certificate not checked (`require-tls`; DANE with only unusable TLSA
    /// records, RFC 7672 §2.2).
    case encrypted
    /// TLS with a WebPKI-valid certificate naming the MX host (MTA-STS, `require-verified`).
    case webPKI
    /// TLS with a certificate matching these TLSA records (RFC 7672 §3); `names` are the reference
    /// identifiers for DANE-TA (the TLSA base domain, then the MX host name).
    case dane(records: [TLSARecord], names: [String])

    public var needsTLS: Bool {
        switch self {
        case .plaintextOnly, .opportunistic: false
        case .encrypted, .webPKI, .dane: true
        }
    }
}

/// The policy for one MX host, with what TLS reporting (RFC 8460 §4.4) needs to say about it.
public struct HostTLSPolicy: Sendable, Equatable {
    public var requirement: TLSRequirement
    /// false: MTA-STS "testing" (RFC 8461 §5): check and report, but deliver whatever happens.
    public var enforced: Bool
    public var policyType: TLSPolicyType
    public var policyStrings: [String]
    public var mxHostPattern: String?

    public init(requirement: TLSRequirement, enforced: Bool = true, policyType: TLSPolicyType = .noPolicyFound,
                policyStrings: [String] = [], mxHostPattern: String? = nil) {
        self.requirement = requirement; self.enforced = enforced; self.policyType = policyType
        self.policyStrings = policyStrings; self.mxHostPattern = mxHostPattern
    }

    public static let opportunistic = HostTLSPolicy(requirement: .opportunistic, enforced: false)

    /// The text of the log line: `dane`, `mta-sts`, …
    public var label: String {
        switch requirement {
        case .dane: return "dane"
        case .webPKI: return policyType == .sts ? (enforced ? "mta-sts" : "mta-sts-testing") : "verified"
        case .encrypted: return policyType == .tlsa ? "dane-unusable" : "require-tls"
        case .plaintextOnly: return "plaintext"
        case .opportunistic: return "opportunistic"
        }
    }
}

/// `[delivery.tls."example.com"] policy = ...`: what an operator knows about a partner.
public enum DomainTLSOverride: String, Sendable, Equatable, CaseIterable {
    case requireTLS = "require-tls"
    case requireVerified = "require-verified"
    case allowPlaintext = "allow-plaintext"
}

/// Outbound TLS settings of the queue.
public struct OutboundTLSConfiguration: Sendable {
    /// RFC 7672 DANE: needs a validating resolver whose AD bit is trusted (see DNSClientConfiguration).
    public var dane: Bool
    public var mtaSTS: Bool
    /// Keys lowercased.
    public var overrides: [String: DomainTLSOverride]
    /// PEM roots trusted besides the system's, for MTA-STS policy hosts and MX certificates.
    public var trustRootsFile: String?
    /// The HTTPS port of `mta-sts.<domain>`: 443; tests use another.
    public var mtaSTSPort: Int
    /// Durable MTA-STS policy cache (a JSON file in the data folder); nil keeps it in memory.
    public var mtaSTSCacheFile: String?

    public init(dane: Bool = true, mtaSTS: Bool = true, overrides: [String: DomainTLSOverride] = [:],
                trustRootsFile: String? = nil, mtaSTSPort: Int = 443, mtaSTSCacheFile: String? = nil) {
        self.dane = dane; self.mtaSTS = mtaSTS; self.overrides = overrides; self.trustRootsFile = trustRootsFile
        self.mtaSTSPort = mtaSTSPort; self.mtaSTSCacheFile = mtaSTSCacheFile
    }
}

/// A host to try with the TLS it must give.
public struct PolicedTarget: Sendable, Equatable {
    public var target: DeliveryTarget
    public var policy: HostTLSPolicy
}

/// The decision for one domain and one kind of message.
public struct TransportPolicyDecision: Sendable {
    /// In MX preference order; empty when no host may be used.
    public var targets: [PolicedTarget]
    /// Why the hosts left out were left out; also the reply when `targets` is empty.
    public var failureReply: String?
    /// With no target left: whether that is final (REQUIRETLS to an unauthenticated destination).
    public var permanent: Bool
    /// Policy failures found before connecting (one per host or per domain), for the TLS report.
    public var outcomes: [TLSSessionOutcome]
}

/// Decides, per destination, the TLS each host must give.
public struct TransportPolicyResolver: Sendable {
    public var resolver: any DNSResolver
    public var configuration: OutboundTLSConfiguration
    public var mtaSTS: (any MTASTSPolicySource)?

    public init(resolver: any DNSResolver, configuration: OutboundTLSConfiguration, mtaSTS: (any MTASTSPolicySource)?) {
        self.resolver = resolver; self.configuration = configuration; self.mtaSTS = mtaSTS
    }

    /// The domain-wide facts, looked up once per lane: the MTA-STS policy.
    public func lookupMTASTS(domain: String) async -> MTASTSLookup {
        guard configuration.mtaSTS, let mtaSTS else { return .none }
        return await mtaSTS.lookup(domain: domain)
    }

    public func decide(domain: String, routed: RoutedTargets, sts: MTASTSLookup, demand: MessageTLSDemand,
                       now: Date) async -> TransportPolicyDecision {
        let domain = domain.lowercased()
        var outcomes: [TLSSessionOutcome] = []
        var excluded: [String] = []
        var daneTemporary = false
        var stsPolicy: MTASTSPolicy?
        switch sts {
        case .none: break
        case .policy(let policy): stsPolicy = policy
        case .failed(let type, let detail):
            // RFC 8460 §4.3.2.2: the policy could not be had; delivery goes on without it.
            if demand != .policyExempt {
                outcomes.append(TLSSessionOutcome(recipientDomain: domain, policyType: .sts, policyDomain: domain,
                                                  receivingMXHostname: routed.targets.first?.hostname ?? domain,
                                                  receivingIP: routed.targets.first?.addresses.first,
                                                  failure: type, failureDetail: detail, date: now))
            }
        }
        let override = configuration.overrides[domain]
        var result: [PolicedTarget] = []
        for target in routed.targets {
            var policy = HostTLSPolicy.opportunistic
            var decided = false
            // 1. DANE (RFC 7672 §2.2): only under a DNSSEC-validated MX RRset.
            if configuration.dane, routed.mxAuthenticated {
                switch await dane(host: target.hostname, port: target.port) {
                case .none:
                    break
                case .unusableNow(let why):
                    // §2.2: a TLSA lookup failure under a secure MX makes the host unusable for now.
                    if demand == .policyExempt { break }
                    daneTemporary = true
                    excluded.append("\(target.hostname): \(why)")
                    outcomes.append(TLSSessionOutcome(recipientDomain: domain, policyType: .tlsa, policyDomain: target.hostname,
                                                      receivingMXHostname: target.hostname, failure: .dnssecInvalid,
                                                      failureDetail: why, date: now))
                    continue
                case .records(let records, let names):
                    let usable = DANEVerifier.usableRecords(records)
                    let strings = records.map(Self.presentation)
                    policy = usable.isEmpty
                        ? HostTLSPolicy(requirement: .encrypted, policyType: .tlsa, policyStrings: strings)
                        : HostTLSPolicy(requirement: .dane(records: usable, names: names), policyType: .tlsa, policyStrings: strings)
                    decided = true
                }
            }
            // 2. MTA-STS (RFC 8461 §4.1, §5).
            if !decided, let stsPolicy {
                let matches = stsPolicy.matches(mxHost: target.hostname)
                let pattern = stsPolicy.mx.joined(separator: ",")
                if !matches, demand != .policyExempt {
                    outcomes.append(TLSSessionOutcome(recipientDomain: domain, policyType: .sts, policyStrings: stsPolicy.policyStrings,
                                                      policyDomain: domain, mxHostPattern: pattern, receivingMXHostname: target.hostname,
                                                      receivingIP: target.addresses.first, failure: .validationFailure,
                                                      failureDetail: "MX host \(target.hostname) does not match the MTA-STS policy", date: now))
                    if stsPolicy.mode == .enforce {
                        excluded.append("\(target.hostname) is not an MX host of the MTA-STS policy of \(domain) (mx: \(pattern))")
                        continue
                    }
                }
                policy = HostTLSPolicy(requirement: .webPKI, enforced: stsPolicy.mode == .enforce, policyType: .sts,
                                       policyStrings: stsPolicy.policyStrings, mxHostPattern: pattern)
                decided = true
            }
            // 3. The operator's override; 4. opportunistic.
            if !decided, let override {
                switch override {
                case .requireTLS: policy = HostTLSPolicy(requirement: .encrypted)
                case .requireVerified: policy = HostTLSPolicy(requirement: .webPKI)
                case .allowPlaintext: policy = HostTLSPolicy(requirement: .plaintextOnly)
                }
            }
            switch demand {
            case .standard:
                break
            case .policyExempt:
                // RFC 8689 §4.2.2: the sender asked that policies not stop this message.
                if policy.requirement != .plaintextOnly { policy.requirement = .opportunistic }
                policy.enforced = false
            case .requireTLS:
                // RFC 8689 §5: the MX must be authenticated (DNSSEC, or listed by MTA-STS) and its
                // certificate verified (DANE or PKIX).
                let listedBySTS = stsPolicy?.matches(mxHost: target.hostname) == true
                if case .dane = policy.requirement {
                    policy.enforced = true
                } else if routed.mxAuthenticated || listedBySTS {
                    policy.requirement = .webPKI
                    policy.enforced = true
                } else {
                    excluded.append("\(target.hostname) is not authenticated by DNSSEC or MTA-STS")
                    continue
                }
            }
            result.append(PolicedTarget(target: target, policy: policy))
        }
        var reply: String?
        var permanent = false
        if !excluded.isEmpty {
            if demand == .requireTLS, result.isEmpty, !daneTemporary {
                reply = "550 5.7.30 REQUIRETLS support required: \(excluded.joined(separator: "; "))"
                permanent = true
            } else {
                reply = "451 4.7.5 no usable mail host for \(domain) under its TLS policy: \(excluded.joined(separator: "; "))"
            }
        }
        return TransportPolicyDecision(targets: result, failureReply: reply, permanent: permanent, outcomes: outcomes)
    }

    enum DANELookup {
        case none
        case unusableNow(String)
        case records([TLSARecord], names: [String])
    }

    /// RFC 7672 §2.2.2: TLSA at `_port._tcp.<host>`, first at the host's CNAME target when its
    /// address records were reached through a secure CNAME chain, then at the host name itself.
    func dane(host: String, port: Int) async -> DANELookup {
        guard let name = try? DNSName(host) else { return .none }
        var candidates: [DNSName] = []
        if let answer = try? await resolver.query(name: name, type: .a), answer.authenticData, !answer.cnameChain.isEmpty {
            candidates.append(answer.canonicalName)
        }
        candidates.append(name)
        let names = candidates.map { $0.description.trimmingDot }
        for candidate in candidates {
            do {
                let (records, authenticated) = try await resolver.tlsa(host: candidate, port: port)
                // §2.2: TLSA records count only when validated.
                guard authenticated else { return .none }
                return .records(records, names: names)
            } catch {
                if error.isNotFound { continue }
                return .unusableNow("TLSA lookup for \(candidate) failed: \(error)")
            }
        }
        return .none
    }

    /// RFC 6698 §2.2 presentation form, for the TLS report's policy-string.
    static func presentation(_ record: TLSARecord) -> String {
        let hex = record.certificateAssociationData.map { String(format: "%02x", $0) }.joined()
        return "\(record.certificateUsage) \(record.selector) \(record.matchingType) \(hex)"
    }
}
