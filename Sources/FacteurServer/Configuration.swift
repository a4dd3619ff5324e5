// FacteurServer: the composition root — loads the configuration, opens the store, starts every
// listener under swift-service-lifecycle and shuts them down gracefully.
//
// This file: the TOML configuration (server settings only; domains, accounts and aliases live in
// the store and are managed with the CLI). Every error names the file, the key and what is wrong,
// and the server never starts half-configured.

import FacteurDNS
import FacteurQueue
import Foundation
import TOMLKit

public enum ListenerProtocol: String, CaseIterable, Sendable {
    case smtp, submission, submissions, imap, imaps, pop3, pop3s, http, https

    /// Protocols whose servers exist today; the others are refused with a clear message.
    public static let implemented: Set<ListenerProtocol> = [.smtp, .submission, .submissions, .imap, .imaps, .pop3, .pop3s, .http, .https]

    public var defaultTLS: TLSMode {
        switch self {
        case .submissions, .imaps, .pop3s, .https: return .implicit
        case .http: return .none
        default: return .starttls
        }
    }
}

public enum TLSMode: String, Sendable {
    case none, starttls, implicit
}

public struct ListenerConfiguration: Equatable, Sendable {
    public var proto: ListenerProtocol
    public var address: String
    public var port: Int
    public var tls: TLSMode
    public init(proto: ListenerProtocol, address: String, port: Int, tls: TLSMode? = nil) {
        self.proto = proto; self.address = address; self.port = port; self.tls = tls ?? proto.defaultTLS
    }
}

/// Sender authentication (SPF, DKIM, DMARC, ARC) on mail in, DKIM signing on mail out.
public struct MailAuthConfiguration: Sendable, Equatable {
    /// Check SPF, DKIM, iprev, DMARC and ARC on mail from other organisations (port 25).
    public var verifyInbound = true
    /// Clients whose mail is not checked (like Postfix's mynetworks, rspamd's local_addrs):
    /// by default loopback, where local programs hand mail over.
    public var trustedNetworks = ["127.0.0.0/8", "::1"]
    /// The authserv-id of our Authentication-Results fields; nil: the hostname.
    public var authservID: String?
    /// Sign outbound mail for local domains that have keys (`facteur dkim generate`).
    public var dkimSign = true
    /// Generate DKIM keys for a domain that has none (first start, `facteur domain add`).
    public var dkimGenerateKeys = true
    /// Apply the sender domain's DMARC policy: reject (550 5.7.1) and quarantine (Junk).
    /// false: evaluate and report only.
    public var dmarcEnforce = true
    /// Mail from outside that claims one of our domains in From: without passing DMARC is
    /// refused, whatever that domain publishes.
    public var rejectSpoofedLocalDomains = true
    /// How the organisational domain is found: "tree-walk" (DMARCbis) or "psl" (RFC 7489).
    public var organizationalDomain = "tree-walk"
    /// The Public Suffix List file for "psl"; relative paths are in the data folder.
    public var publicSuffixList: String?
    /// Known forwarders (IP addresses, networks like 192.0.2.0/24, or PTR-confirmed domains)
    /// whose mail failing DMARC is delivered, not rejected (RFC 7489 §7.2 "forwarded").
    public var trustedForwarders: [String] = []
    /// ARC sealers (d= of the ARC-Seal) whose passing chain overrides a DMARC failure.
    public var arcTrustedSealers: [String] = []
    /// ARC-seal mail that Facteur forwards (off by default; RFC 8617 is experimental).
    public var arcSeal = false
    /// Aggregate DMARC reports: record evaluations and send the daily reports.
    public var dmarcReports = true
    /// Where incoming DMARC reports are parsed and stored (local part or full address); nil: off.
    public var dmarcReportAddress: String? = "dmarc-reports"
    public init() {}
}

/// `[[route]]`: where mail for a destination domain goes.
public struct RouteConfiguration: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case mx
        case local
        /// A smarthost, with AUTH PLAIN credentials (sent under TLS only) and whether TLS is required.
        case relay(host: String, port: Int, username: String?, password: String?, requireTLS: Bool)
    }
    public var domain: String
    public var target: Target
}

public struct ServerConfiguration: Sendable {
    /// The name the server calls itself in greetings and Received headers.
    public var hostname = "localhost"
    /// The domain created on first start, where the admin account lives and where a bare
    /// `<postmaster>` goes.
    public var primaryDomain = "localhost"
    public var dataDirectory = "./facteur-data"
    /// Where `postmaster@` every local domain goes (RFC 5321 §4.5.1); nil: the first admin account.
    public var postmaster: String?
    public var logLevel = "info"
    /// Certificate and key for every TLS listener; relative paths are inside the data folder.
    /// Missing files are generated (self-signed) on start when `generateSelfSigned` is true.
    public var certificate = "tls/cert.pem"
    public var key = "tls/key.pem"
    public var generateSelfSigned = true
    /// Certificates by host name, chosen by SNI.
    public var domainCertificates: [String: (certificate: String, key: String)] = [:]
    /// How often the certificate and key files are checked for changes (reloaded without restart).
    public var tlsReloadIntervalSeconds = 5
    public var maxMessageSize = 50 * 1024 * 1024
    public var maxRecipients = 100
    public var maxErrors = 20
    public var maxConnections = 10_000
    public var maxConnectionsPerAddress = 50
    /// Authenticated IMAP connections per account (a phone, a laptop and a desktop each keep a few).
    public var maxConnectionsPerAccount = 20
    public var idleTimeoutSeconds = 300
    public var shutdownGraceSeconds = 30
    /// Passwords in the clear (SMTP AUTH PLAIN/LOGIN, IMAP LOGIN, POP3 USER/PASS) without TLS,
    /// for loopback clients only (development); `allow_plaintext_auth_on_loopback = false`
    /// requires TLS from everyone. Other clients always need TLS.
    public var allowPlaintextAuthOnLoopback = true
    /// Outbound delivery over IPv6 (large receivers refuse IPv6 senders without a PTR record).
    public var outboundIPv6 = true
    /// Submission limits per account, to contain a compromised account.
    public var submissionMessagesPerHour = 500
    public var submissionRecipientsPerHour = 2_000
    /// Store a copy of each submitted message in the sender's Sent mailbox (per account:
    /// `facteur account sent-copies`).
    public var sentCopies = false
    public var mailAuth = MailAuthConfiguration()
    /// `[acme]` and `[mta_sts]` (Configuration+ACME.swift).
    public var acme = ACMEConfiguration()
    public var mtaSTS = MTASTSConfiguration()
    public var tlsReports = TLSReportsConfiguration()
    /// DNS resolvers ("127.0.0.1", "[::1]:5353"); empty: those of /etc/resolv.conf. DANE and
    /// DNSSEC-dependent checks need a validating resolver here.
    public var dnsServers: [String] = []
    /// The port outbound delivery connects to on MX hosts: 25 everywhere but in tests that run
    /// several instances on loopback.
    public var deliveryMXPort = 25
    /// Outbound source addresses (default: the system's choice), and per sending domain.
    public var deliverySourceIPv4: String?
    public var deliverySourceIPv6: String?
    public var deliverySourceByDomain: [String: (ipv4: String?, ipv6: String?)] = [:]
    public var deliveryTLS = DeliveryTLSSettings()
    /// Routes by destination domain ("*": the default route).
    public var routes: [RouteConfiguration] = []
    /// Development defaults (DESIGN.md): unprivileged loopback ports, so a first run needs no root.
    public var listeners: [ListenerConfiguration] = [
        ListenerConfiguration(proto: .smtp, address: "127.0.0.1", port: 2525),
        ListenerConfiguration(proto: .submission, address: "127.0.0.1", port: 2587),
        ListenerConfiguration(proto: .submissions, address: "127.0.0.1", port: 2465),
        ListenerConfiguration(proto: .imap, address: "127.0.0.1", port: 1143),
        ListenerConfiguration(proto: .imaps, address: "127.0.0.1", port: 1993),
        ListenerConfiguration(proto: .pop3, address: "127.0.0.1", port: 1110),
        ListenerConfiguration(proto: .pop3s, address: "127.0.0.1", port: 1995),
    ]

    public init() {}

    /// A path from the config, made absolute against the data folder.
    public func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : "\(dataDirectory)/\(path)"
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var file: String
    public var location: String
    public var message: String
    public var description: String { "\(file): \(location): \(message)" }
}

extension ServerConfiguration {
    /// Reads a TOML file. Unknown keys are errors too: a typo must not be silently ignored.
    public static func load(file: String) throws -> ServerConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigurationError(file: file, location: "-", message: "cannot read file (\(error.localizedDescription))")
        }
        return try parse(text, file: file)
    }

    public static func parse(_ text: String, file: String) throws -> ServerConfiguration {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(file: file, location: "line \(error.source.begin.line), column \(error.source.begin.column)",
                                     message: error.description)
        }
        var reader = TableReader(table: root, path: "", file: file)
        var config = ServerConfiguration()
        if let value = try reader.string("hostname") { config.hostname = try validHostname(value, key: "hostname", file: file) }
        if let value = try reader.string("primary_domain") { config.primaryDomain = try validHostname(value, key: "primary_domain", file: file).lowercased() }
        if let value = try reader.string("data") { config.dataDirectory = value }
        if let value = try reader.string("postmaster") {
            guard value.contains("@"), !value.hasPrefix("@"), !value.hasSuffix("@") else {
                throw ConfigurationError(file: file, location: "postmaster", message: "\"\(value)\" is not an address")
            }
            config.postmaster = value.lowercased()
        }
        if let value = try reader.bool("allow_plaintext_auth_on_loopback") { config.allowPlaintextAuthOnLoopback = value }
        if let value = try reader.bool("outbound_ipv6") { config.outboundIPv6 = value }
        if let value = try reader.bool("sent_copies") { config.sentCopies = value }
        if let value = try reader.stringArray("dns_servers") {
            for spec in value {
                let (host, port) = splitHostPort(spec, defaultPort: 53)
                guard (1...65535).contains(port), host.contains(".") || host.contains(":") else {
                    throw ConfigurationError(file: file, location: "dns_servers", message: "\"\(spec)\" is not ADDRESS or ADDRESS:PORT")
                }
            }
            config.dnsServers = value
        }
        if let value = try reader.string("log_level") {
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(value) else {
                throw ConfigurationError(file: file, location: "log_level", message: "must be one of trace, debug, info, notice, warning, error, critical")
            }
            config.logLevel = value
        }
        if var tls = try reader.table("tls") {
            if let value = try tls.string("certificate") { config.certificate = value }
            if let value = try tls.string("key") { config.key = value }
            if let value = try tls.bool("generate_self_signed") { config.generateSelfSigned = value }
            if let value = try tls.int("reload_interval", min: 1, max: 86_400) { config.tlsReloadIntervalSeconds = value }
            if var domains = try tls.table("domains") {
                for host in domains.keys {
                    guard var entry = try domains.table(host) else { continue }
                    guard let certificate = try entry.string("certificate"), let key = try entry.string("key") else {
                        throw ConfigurationError(file: file, location: "tls.domains.\(host)", message: "needs both certificate and key")
                    }
                    try entry.finish()
                    config.domainCertificates[host.lowercased()] = (certificate, key)
                }
                try domains.finish()
            }
            try tls.finish()
        }
        if var limits = try reader.table("limits") {
            if let value = try limits.int("max_message_size", min: 1024) { config.maxMessageSize = value }
            if let value = try limits.int("max_recipients", min: 1) { config.maxRecipients = value }
            if let value = try limits.int("max_errors", min: 1) { config.maxErrors = value }
            if let value = try limits.int("max_connections", min: 1) { config.maxConnections = value }
            if let value = try limits.int("max_connections_per_ip", min: 1) { config.maxConnectionsPerAddress = value }
            if let value = try limits.int("max_connections_per_account", min: 1) { config.maxConnectionsPerAccount = value }
            if let value = try limits.int("idle_timeout", min: 1) { config.idleTimeoutSeconds = value }
            if let value = try limits.int("shutdown_grace", min: 0) { config.shutdownGraceSeconds = value }
            if let value = try limits.int("submission_messages_per_hour", min: 1) { config.submissionMessagesPerHour = value }
            if let value = try limits.int("submission_recipients_per_hour", min: 1) { config.submissionRecipientsPerHour = value }
            try limits.finish()
        }
        if var delivery = try reader.table("delivery") {
            if let value = try delivery.int("mx_port", min: 1, max: 65535) { config.deliveryMXPort = value }
            func address(_ table: inout TableReader, _ key: String, ipv6: Bool, location: String) throws -> String? {
                guard let value = try table.string(key) else { return nil }
                guard let ip = IPAddress(value), (ip.bytes.count == 16) == ipv6 else {
                    throw ConfigurationError(file: file, location: "\(location).\(key)", message: "\"\(value)\" is not an IPv\(ipv6 ? 6 : 4) address")
                }
                return value
            }
            config.deliverySourceIPv4 = try address(&delivery, "source_ipv4", ipv6: false, location: "delivery")
            config.deliverySourceIPv6 = try address(&delivery, "source_ipv6", ipv6: true, location: "delivery")
            if var sources = try delivery.table("source") {
                for domain in sources.keys {
                    guard var entry = try sources.table(domain) else { continue }
                    let location = "delivery.source.\(domain)"
                    let v4 = try address(&entry, "ipv4", ipv6: false, location: location)
                    let v6 = try address(&entry, "ipv6", ipv6: true, location: location)
                    try entry.finish()
                    config.deliverySourceByDomain[domain.lowercased()] = (v4, v6)
                }
                try sources.finish()
            }
            try config.parseDeliveryTLS(&delivery, file: file)
            try delivery.finish()
        }
        if let routes = try reader.tableArray("route") {
            for (index, var entry) in routes.enumerated() {
                let location = "route[\(index)]"
                guard let domain = try entry.string("domain")?.lowercased(), !domain.isEmpty else {
                    throw ConfigurationError(file: file, location: "\(location).domain", message: "missing (a domain, or \"*\" for the default route)")
                }
                let relay = try entry.string("relay")
                let deliver = try entry.string("deliver")
                let username = try entry.string("username")
                var password = try entry.string("password")
                if let passwordFile = try entry.string("password_file") {
                    guard let text = try? String(contentsOfFile: config.resolve(passwordFile), encoding: .utf8) else {
                        throw ConfigurationError(file: file, location: "\(location).password_file", message: "cannot read \(passwordFile)")
                    }
                    password = text.trimmingCharacters(in: .whitespacesAndNewlines)
                }
                let requireTLS = try entry.bool("require_tls") ?? false
                try entry.finish()
                let target: RouteConfiguration.Target
                switch (relay, deliver) {
                case (let relay?, nil):
                    let (host, port) = splitHostPort(relay, defaultPort: 25)
                    guard !host.isEmpty, (1...65535).contains(port) else {
                        throw ConfigurationError(file: file, location: "\(location).relay", message: "expected HOST or HOST:PORT")
                    }
                    if username != nil, password == nil {
                        throw ConfigurationError(file: file, location: "\(location).password", message: "username needs password or password_file")
                    }
                    target = .relay(host: host, port: port, username: username, password: password, requireTLS: requireTLS)
                case (nil, "local"?): target = .local
                case (nil, "mx"?), (nil, nil): target = .mx
                default:
                    throw ConfigurationError(file: file, location: location, message: "give either relay = \"HOST:PORT\" or deliver = \"local\" | \"mx\"")
                }
                config.routes.append(RouteConfiguration(domain: domain, target: target))
            }
        }
        if var auth = try reader.table("mail_auth") {
            var m = config.mailAuth
            if let value = try auth.bool("verify_inbound") { m.verifyInbound = value }
            if let value = try auth.stringArray("trusted_networks") {
                for entry in value where IPNetwork(entry) == nil {
                    throw ConfigurationError(file: file, location: "mail_auth.trusted_networks", message: "\"\(entry)\" is not an address or network")
                }
                m.trustedNetworks = value
            }
            if let value = try auth.string("authserv_id") { m.authservID = try validHostname(value, key: "mail_auth.authserv_id", file: file) }
            if let value = try auth.bool("dkim_sign") { m.dkimSign = value }
            if let value = try auth.bool("dkim_generate_keys") { m.dkimGenerateKeys = value }
            if let value = try auth.bool("dmarc_enforce") { m.dmarcEnforce = value }
            if let value = try auth.bool("reject_spoofed_local_domains") { m.rejectSpoofedLocalDomains = value }
            if let value = try auth.string("organizational_domain") {
                guard ["tree-walk", "psl"].contains(value) else {
                    throw ConfigurationError(file: file, location: "mail_auth.organizational_domain", message: "must be tree-walk or psl")
                }
                m.organizationalDomain = value
            }
            if let value = try auth.string("public_suffix_list") { m.publicSuffixList = value }
            if m.organizationalDomain == "psl", m.publicSuffixList == nil {
                throw ConfigurationError(file: file, location: "mail_auth.public_suffix_list", message: "needed when organizational_domain = \"psl\"")
            }
            if let value = try auth.stringArray("trusted_forwarders") { m.trustedForwarders = value }
            if let value = try auth.stringArray("arc_trusted_sealers") { m.arcTrustedSealers = value.map { $0.lowercased() } }
            if let value = try auth.bool("arc_seal") { m.arcSeal = value }
            if let value = try auth.bool("dmarc_reports") { m.dmarcReports = value }
            if let value = try auth.string("dmarc_report_address") { m.dmarcReportAddress = value.isEmpty ? nil : value.lowercased() }
            try auth.finish()
            config.mailAuth = m
        }
        try parseTransportSecurity(&reader, into: &config, file: file)
        try config.parseTLSReports(&reader, file: file)
        if let listeners = try reader.tableArray("listener") {
            config.listeners = []
            for (index, var entry) in listeners.enumerated() {
                let location = "listener[\(index)]"
                guard let protoName = try entry.string("protocol") else {
                    throw ConfigurationError(file: file, location: "\(location).protocol", message: "missing")
                }
                guard let proto = ListenerProtocol(rawValue: protoName) else {
                    throw ConfigurationError(file: file, location: "\(location).protocol",
                                             message: "unknown protocol \"\(protoName)\" (one of \(ListenerProtocol.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                let address = try entry.string("address") ?? "127.0.0.1"
                guard let port = try entry.int("port", min: 0, max: 65535) else {
                    throw ConfigurationError(file: file, location: "\(location).port", message: "missing")
                }
                var tls: TLSMode?
                if let mode = try entry.string("tls") {
                    guard let parsed = TLSMode(rawValue: mode) else {
                        throw ConfigurationError(file: file, location: "\(location).tls", message: "must be none, starttls or implicit")
                    }
                    tls = parsed
                }
                try entry.finish()
                config.listeners.append(ListenerConfiguration(proto: proto, address: address, port: port, tls: tls))
            }
        }
        try reader.finish()
        return config
    }

    private static func validHostname(_ value: String, key: String, file: String) throws -> String {
        let allowed = value.utf8.allSatisfy { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 122) }
        guard !value.isEmpty, allowed, !value.hasPrefix("."), !value.hasSuffix(".") else {
            throw ConfigurationError(file: file, location: key, message: "\"\(value)\" is not a host name")
        }
        return value
    }

    /// Routes and source addresses for the queue.
    public func applyDelivery(to queue: inout QueueConfiguration) {
        queue.mxPort = deliveryMXPort
        queue.sourceIPv4 = deliverySourceIPv4
        queue.sourceIPv6 = deliverySourceIPv6
        queue.sourceBySenderDomain = deliverySourceByDomain
        applyDeliveryTLS(to: &queue)
        for route in routes {
            let target: QueueRoute
            switch route.target {
            case .mx: target = .mx
            case .local: target = .local
            case .relay(let host, let port, let username, let password, let requireTLS):
                target = .relay(QueueRelay(host: host, port: port, username: username, password: password, requireTLS: requireTLS))
            }
            if route.domain == "*" { queue.defaultRoute = target } else { queue.routes[route.domain] = target }
        }
    }

    /// "192.0.2.1", "192.0.2.1:5353", "::1", "[::1]:5353".
    static func splitHostPort(_ spec: String, defaultPort: Int) -> (String, Int) {
        if spec.hasPrefix("["), let close = spec.firstIndex(of: "]") {
            let host = String(spec[spec.index(after: spec.startIndex)..<close])
            let rest = spec[spec.index(after: close)...]
            return (host, rest.hasPrefix(":") ? Int(rest.dropFirst()) ?? -1 : defaultPort)
        }
        if spec.filter({ $0 == ":" }).count == 1, let colon = spec.firstIndex(of: ":") {
            return (String(spec[..<colon]), Int(spec[spec.index(after: colon)...]) ?? -1)
        }
        return (spec, defaultPort)
    }

    /// Applies `--listen PROTO=ADDRESS:PORT` options: they replace the configured listeners.
    public mutating func replaceListeners(with specs: [String]) throws {
        guard !specs.isEmpty else { return }
        listeners = try specs.map { try ListenerConfiguration.parse($0) }
    }

    /// Refuses protocols that are not built yet, with a clear message.
    public func validateListeners() throws {
        for listener in listeners where !ListenerProtocol.implemented.contains(listener.proto) {
            throw ConfigurationError(file: "listeners", location: listener.proto.rawValue,
                                     message: "the \(listener.proto.rawValue) server is not available in this version of Facteur yet")
        }
    }
}

extension ListenerConfiguration {
    /// `smtp=127.0.0.1:2525`, `imaps=[::1]:993`, `smtp=:25` (all addresses).
    public static func parse(_ spec: String) throws -> ListenerConfiguration {
        let fail = { (why: String) in ConfigurationError(file: "--listen", location: spec, message: why) }
        guard let equals = spec.firstIndex(of: "=") else { throw fail("expected PROTO=ADDRESS:PORT") }
        let name = String(spec[..<equals]).lowercased()
        guard let proto = ListenerProtocol(rawValue: name) else {
            throw fail("unknown protocol \"\(name)\" (one of \(ListenerProtocol.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let target = spec[spec.index(after: equals)...]
        guard let colon = target.lastIndex(of: ":") else { throw fail("expected ADDRESS:PORT") }
        var address = String(target[..<colon])
        if address.hasPrefix("["), address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        if address.isEmpty { address = "0.0.0.0" }
        guard let port = Int(target[target.index(after: colon)...]), (0...65535).contains(port) else {
            throw fail("port must be a number from 0 to 65535")
        }
        return ListenerConfiguration(proto: proto, address: address, port: port)
    }
}

/// Reads keys out of a TOML table, remembering which it used so that leftovers are reported.
struct TableReader {
    let table: TOMLTable
    let path: String
    let file: String
    var used: Set<String> = []

    init(table: TOMLTable, path: String, file: String) {
        self.table = table; self.path = path; self.file = file
    }

    var keys: [String] { table.keys }

    private func location(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func error(_ key: String, _ message: String) -> ConfigurationError {
        ConfigurationError(file: file, location: location(key), message: message)
    }

    mutating func string(_ key: String) throws -> String? {
        used.insert(key)
        guard let value = table[key] else { return nil }
        guard let string = value.string else { throw error(key, "must be a string") }
        return string
    }

    mutating func bool(_ key: String) throws -> Bool? {
        used.insert(key)
        guard let value = table[key] else { return nil }
        guard let bool = value.bool else { throw error(key, "must be true or false") }
        return bool
    }

    mutating func int(_ key: String, min: Int = .min, max: Int = .max) throws -> Int? {
        used.insert(key)
        guard let value = table[key] else { return nil }
        guard let int = value.int else { throw error(key, "must be an integer") }
        guard int >= min, int <= max else { throw error(key, "must be between \(min) and \(max)") }
        return int
    }

    mutating func stringArray(_ key: String) throws -> [String]? {
        used.insert(key)
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw error(key, "must be an array of strings") }
        var strings: [String] = []
        for index in 0..<array.count {
            guard let string = array[index].string else { throw error("\(key)[\(index)]", "must be a string") }
            strings.append(string)
        }
        return strings
    }

    mutating func table(_ key: String) throws -> TableReader? {
        used.insert(key)
        guard let value = table[key] else { return nil }
        guard let sub = value.table else { throw error(key, "must be a table") }
        return TableReader(table: sub, path: location(key), file: file)
    }

    mutating func tableArray(_ key: String) throws -> [TableReader]? {
        used.insert(key)
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw error(key, "must be an array of tables ([[\(key)]])") }
        var readers: [TableReader] = []
        for index in 0..<array.count {
            guard let sub = array[index].table else { throw error("\(key)[\(index)]", "must be a table") }
            readers.append(TableReader(table: sub, path: "\(location(key))[\(index)]", file: file))
        }
        return readers
    }

    func finish() throws {
        for key in table.keys where !used.contains(key) {
            throw error(key, "unknown key")
        }
    }
}
