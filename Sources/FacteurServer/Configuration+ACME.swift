// `[acme]` (certificates from an ACME CA, RFC 8555) and `[mta_sts]` (the MTA-STS policy Facteur
// publishes for its domains, RFC 8461 §3.2) in facteur.toml.

import FacteurACME
import FacteurAdmin

public struct ACMEConfiguration: Sendable, Equatable {
    public static let letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"
    public var enabled = false
    public var directory = ACMEConfiguration.letsEncrypt
    /// mailto: URLs for the CA's expiry and policy notices.
    public var contact: [String] = []
    /// nil: the hostname and mta-sts.<each local domain>.
    public var domains: [String]?
    public var challenge: ACMEChallengeType = .http01
    /// PEM file of CA roots for the ACME server's HTTPS (tests: Pebble's CA); relative to the data folder.
    public var trustRoots: String?
    public init() {}
}

public struct MTASTSConfiguration: Sendable, Equatable {
    public var mode: MTASTSMode = .testing
    public var maxAge = 604_800
    /// nil: the hostname.
    public var mx: [String]?
    public init() {}
}

extension ServerConfiguration {
    static func parseTransportSecurity(_ reader: inout TableReader, into config: inout ServerConfiguration, file: String) throws {
        if var acme = try reader.table("acme") {
            var a = config.acme
            if let value = try acme.bool("enabled") { a.enabled = value }
            if let value = try acme.string("directory") {
                guard value.hasPrefix("https://") || value.hasPrefix("http://") else {
                    throw ConfigurationError(file: file, location: "acme.directory", message: "must be an https:// URL")
                }
                a.directory = value
            }
            if let value = try acme.stringArray("contact") {
                for entry in value where !entry.hasPrefix("mailto:") {
                    throw ConfigurationError(file: file, location: "acme.contact", message: "\"\(entry)\" is not a mailto: URL")
                }
                a.contact = value
            }
            if let value = try acme.stringArray("domains") {
                guard !value.isEmpty else {
                    throw ConfigurationError(file: file, location: "acme.domains", message: "must name at least one host")
                }
                a.domains = value.map { $0.lowercased() }
            }
            if let value = try acme.string("challenge") {
                guard let type = ACMEChallengeType(rawValue: value) else {
                    throw ConfigurationError(file: file, location: "acme.challenge", message: "must be tls-alpn-01 or http-01")
                }
                a.challenge = type
            }
            if let value = try acme.string("trust_roots") { a.trustRoots = value }
            try acme.finish()
            config.acme = a
        }
        if var sts = try reader.table("mta_sts") {
            var m = config.mtaSTS
            if let value = try sts.string("mode") {
                guard let mode = MTASTSMode(rawValue: value) else {
                    throw ConfigurationError(file: file, location: "mta_sts.mode", message: "must be enforce, testing or none")
                }
                m.mode = mode
            }
            if let value = try sts.int("max_age", min: 0, max: MTASTSPolicy.maxAgeLimit) { m.maxAge = value }
            if let value = try sts.stringArray("mx") {
                guard !value.isEmpty else {
                    throw ConfigurationError(file: file, location: "mta_sts.mx", message: "must name at least one MX host")
                }
                m.mx = value.map { $0.lowercased() }
            }
            try sts.finish()
            config.mtaSTS = m
        }
    }

    /// The policy every local domain publishes (RFC 8461 §3.2).
    public var mtaSTSPolicy: MTASTSPolicy {
        MTASTSPolicy(mode: mtaSTS.mode, maxAge: mtaSTS.maxAge, mx: mtaSTS.mx ?? [hostname])
    }

    /// The names of the ACME certificate: configured, or the hostname and mta-sts.<domain>.
    public func acmeDomains(localDomains: [String]) -> [String] {
        if let domains = acme.domains { return domains }
        var names = [hostname.lowercased()]
        for domain in localDomains.sorted() where domain != "localhost" {
            let name = "mta-sts.\(domain.lowercased())"
            if !names.contains(name) { names.append(name) }
        }
        return names
    }
}
