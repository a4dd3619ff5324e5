// The `[tls_reports]` section of facteur.toml: SMTP TLS Reporting (RFC 8460) both ways — the
// daily reports we send to the domains we deliver to, and the reports others send us.

/// `[tls_reports]`.
public struct TLSReportsConfiguration: Sendable, Equatable {
    /// Count outbound TLS sessions and send the daily reports (RFC 8460 §3: to every recipient
    /// domain that publishes a `_smtp._tls` record).
    public var enabled = true
    /// "organization-name" in our reports; nil: the primary domain.
    public var organization: String?
    /// "contact-info" in our reports; nil: postmaster@primary domain.
    public var contact: String?
    /// Where reports sent to us arrive (local part or full address); nil: not read.
    public var address: String? = "tls-reports"
    /// Seconds between flushes of the in-memory counts to the store (a crash loses at most this
    /// much of a day's statistics, never mail).
    public var interval = 300

    public init() {}
}

extension ServerConfiguration {
    mutating func parseTLSReports(_ reader: inout TableReader, file: String) throws {
        guard var section = try reader.table("tls_reports") else { return }
        var t = tlsReports
        if let value = try section.bool("enabled") { t.enabled = value }
        if let value = try section.string("organization") {
            guard !value.isEmpty, value.utf8.count <= 255, value.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
                throw ConfigurationError(file: file, location: "tls_reports.organization", message: "must be a non-empty line of text")
            }
            t.organization = value
        }
        if let value = try section.string("contact") {
            guard !value.isEmpty, value.utf8.count <= 255, value.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
                throw ConfigurationError(file: file, location: "tls_reports.contact", message: "must be a non-empty line of text")
            }
            t.contact = value
        }
        if let value = try section.string("address") {
            guard value.isEmpty || (!value.hasPrefix("@") && !value.hasSuffix("@") && !value.contains(" ")) else {
                throw ConfigurationError(file: file, location: "tls_reports.address", message: "\"\(value)\" is not a local part or an address")
            }
            t.address = value.isEmpty ? nil : value.lowercased()
        }
        if let value = try section.int("interval", min: 10, max: 86_400) { t.interval = value }
        try section.finish()
        tlsReports = t
    }

    /// The reporting identity: organisation name, contact, and the From: of report mail.
    var tlsReportOrganization: String { tlsReports.organization ?? primaryDomain }
    var tlsReportContact: String { tlsReports.contact ?? postmaster ?? "postmaster@\(primaryDomain)" }
    var tlsReportFrom: String { "noreply-tlsrpt@\(primaryDomain)" }
}
