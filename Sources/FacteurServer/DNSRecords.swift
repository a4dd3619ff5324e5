// The DNS records a domain served by Facteur publishes (`facteur dns records DOMAIN`): MX
// (RFC 5321 §5), SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489), MTA-STS (RFC 8461 §3.1),
// TLS-RPT (RFC 8460 §3) and the DANE TLSA record of the SMTP host (RFC 7672 §3, "3 1 1").

import FacteurACME
import FacteurAdmin
import Foundation

public enum DNSRecords {
    /// The certificate the TLS listeners present: ACME's once obtained, otherwise [tls].
    public static func currentCertificatePath(_ configuration: ServerConfiguration) -> String {
        let adjusted = PublicWeb.certificateOverride(configuration)
        return adjusted.resolve(adjusted.certificate)
    }

    /// Zone-file lines. `dkim`: (owner name, TXT value) pairs from the keyring.
    public static func zone(domain: String, configuration: ServerConfiguration, dkim: [(name: String, text: String)]) -> String {
        let domain = domain.lowercased()
        let host = configuration.hostname.lowercased()
        let primary = configuration.primaryDomain
        let dmarcReports = configuration.mailAuth.dmarcReportAddress.map { $0.contains("@") ? $0 : "\($0)@\(primary)" }
            ?? "dmarc-reports@\(primary)"
        var lines = [
            "; DNS records for \(domain), served by \(host)",
            "\(domain). 3600 IN MX 10 \(host).",
            "\(domain). 3600 IN TXT \"v=spf1 mx -all\"",
        ]
        if dkim.isEmpty {
            lines.append("; DKIM: no keys yet for \(domain) (`facteur dkim generate \(domain)`)")
        } else {
            lines += dkim.map { "\($0.name). 3600 IN TXT \($0.text)" }
        }
        lines.append("_dmarc.\(domain). 3600 IN TXT \"v=DMARC1; p=quarantine; rua=mailto:\(dmarcReports)\"")
        lines.append("; MTA-STS: mta-sts.\(domain) must reach this server's https listener (A/AAAA or CNAME \(host).)")
        lines.append("_mta-sts.\(domain). 3600 IN TXT \"\(configuration.mtaSTSPolicy.txtRecord)\"")
        lines.append("_smtp._tls.\(domain). 3600 IN TXT \"v=TLSRPTv1; rua=mailto:tls-reports@\(primary)\"")
        let certificate = currentCertificatePath(configuration)
        if let digest = try? CertificateDigest.spkiSHA256(certificatePEMFile: certificate) {
            lines.append("; DANE (only in a DNSSEC-signed zone); stays valid across ACME renewals (same key)")
            lines.append("_25._tcp.\(host). 3600 IN TLSA 3 1 1 \(digest)")
        } else {
            lines.append("; TLSA: no certificate readable at \(certificate) yet (start the server once)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
