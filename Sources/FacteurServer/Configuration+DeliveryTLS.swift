// The outbound TLS settings of `[delivery]`: DANE (RFC 7672) and MTA-STS (RFC 8461) switches, the
// extra WebPKI roots, the MTA-STS port, and per-domain overrides:
//   [delivery]
//   tls_trust_roots = "ca.pem"        # PEM roots trusted besides the system's (tests, private CAs)
//   mta_sts_port = 443                # where mta-sts.<domain> serves its policy
//   dane = true
//   mta_sts = true
//   [delivery.tls."partner.example"]
//   policy = "require-tls" | "require-verified" | "allow-plaintext"

import FacteurQueue

/// `[delivery]` TLS keys, kept apart from the rest of the configuration.
public struct DeliveryTLSSettings: Sendable {
    public var trustRoots: String?
    public var mtaSTSPort = 443
    public var dane = true
    public var mtaSTS = true
    public var overrides: [String: DomainTLSOverride] = [:]
    public init() {}
}

extension ServerConfiguration {
    /// Reads the TLS keys of the `[delivery]` table (called from `parse` before `finish()`).
    mutating func parseDeliveryTLS(_ delivery: inout TableReader, file: String) throws {
        if let value = try delivery.string("tls_trust_roots") { deliveryTLS.trustRoots = value }
        if let value = try delivery.int("mta_sts_port", min: 1, max: 65535) { deliveryTLS.mtaSTSPort = value }
        if let value = try delivery.bool("dane") { deliveryTLS.dane = value }
        if let value = try delivery.bool("mta_sts") { deliveryTLS.mtaSTS = value }
        if var domains = try delivery.table("tls") {
            for domain in domains.keys {
                guard var entry = try domains.table(domain) else { continue }
                let location = "delivery.tls.\(domain)"
                guard let text = try entry.string("policy") else {
                    throw ConfigurationError(file: file, location: location, message: "needs policy = \"require-tls\", \"require-verified\" or \"allow-plaintext\"")
                }
                guard let policy = DomainTLSOverride(rawValue: text) else {
                    throw ConfigurationError(file: file, location: "\(location).policy",
                                             message: "\"\(text)\" is not one of require-tls, require-verified, allow-plaintext")
                }
                try entry.finish()
                deliveryTLS.overrides[domain.lowercased()] = policy
            }
            try domains.finish()
        }
    }

    /// The queue's outbound TLS configuration; the MTA-STS cache lives in the data folder.
    public func applyDeliveryTLS(to queue: inout QueueConfiguration) {
        queue.tls = OutboundTLSConfiguration(dane: deliveryTLS.dane, mtaSTS: deliveryTLS.mtaSTS, overrides: deliveryTLS.overrides,
                                             trustRootsFile: deliveryTLS.trustRoots.map { resolve($0) },
                                             mtaSTSPort: deliveryTLS.mtaSTSPort, mtaSTSCacheFile: resolve("mta-sts-cache.json"))
    }
}
