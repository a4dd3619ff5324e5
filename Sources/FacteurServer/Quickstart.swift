// `facteur quickstart DOMAIN`: a production configuration on the standard ports, and the DNS
// records to publish for it. It never overwrites an existing configuration file.

import FacteurMailAuth
import Foundation

public enum Quickstart {
    /// The configuration text for a server that answers for `domain` as `hostname`.
    public static func configuration(domain: String, hostname: String, dataDirectory: String) -> String {
        """
        # Facteur configuration written by `facteur quickstart \(domain)`.
        # Every key is optional; see the README for the full list.
        hostname = "\(hostname)"
        primary_domain = "\(domain)"
        data = "\(dataDirectory)"
        log_level = "info"
        # Passwords in the clear are accepted only under TLS (loopback excepted when this is true).
        allow_plaintext_auth_on_loopback = false

        [tls]
        # Used when [acme] below is off: put your own certificate for \(hostname) here, or keep
        # the self-signed one, which other servers accept for opportunistic STARTTLS but mail
        # clients warn about. (With acme on, DATA/tls/acme/ holds the certificate instead.)
        certificate = "tls/cert.pem"
        key = "tls/key.pem"
        generate_self_signed = true

        [acme]
        # Certificates from an ACME CA (Let's Encrypt by default), renewed automatically; the
        # key is kept across renewals, so the DANE TLSA record stays valid. Needs \(hostname)
        # and mta-sts.\(domain) to point at this server, and port 80 (http-01) reachable.
        enabled = false
        # directory = "https://acme-v02.api.letsencrypt.org/directory"
        # contact = ["mailto:postmaster@\(domain)"]
        # domains = ["\(hostname)", "mta-sts.\(domain)"]   # default: hostname + mta-sts.<each domain>
        # challenge = "http-01"                                # or "tls-alpn-01" (port 443)

        [mta_sts]
        # The MTA-STS policy served at https://mta-sts.\(domain)/.well-known/mta-sts.txt
        # (RFC 8461). Start with "testing", switch to "enforce" once TLS reports look clean.
        mode = "testing"
        max_age = 604800
        mx = ["\(hostname)"]

        [limits]
        max_message_size = 52428800
        max_connections_per_ip = 50

        [[listener]]   # mail from other organisations (MX)
        protocol = "smtp"
        address = "0.0.0.0"
        port = 25

        [[listener]]   # your users' mail clients (RFC 6409, STARTTLS)
        protocol = "submission"
        address = "0.0.0.0"
        port = 587

        [[listener]]   # the same with implicit TLS (RFC 8314)
        protocol = "submissions"
        address = "0.0.0.0"
        port = 465

        [[listener]]
        protocol = "imap"
        address = "0.0.0.0"
        port = 143

        [[listener]]
        protocol = "imaps"
        address = "0.0.0.0"
        port = 993

        [[listener]]
        protocol = "pop3"
        address = "0.0.0.0"
        port = 110

        [[listener]]
        protocol = "pop3s"
        address = "0.0.0.0"
        port = 995

        [[listener]]   # ACME http-01 answers
        protocol = "http"
        address = "0.0.0.0"
        port = 80

        [[listener]]   # the MTA-STS policy (RFC 8461 §3.3: HTTPS only)
        protocol = "https"
        address = "0.0.0.0"
        port = 443

        """
    }

    /// The records to publish, in zone-file form.
    public static func dnsRecords(domain: String, hostname: String, dkim: [(name: String, value: String)] = []) -> String {
        let dkimLines = dkim.isEmpty ? "; DKIM: `facteur dkim record \(domain)` prints the key records once keys exist.\n"
            : dkim.map { "\($0.name). IN TXT   \(DKIMKeyring.zoneText($0.value))\n" }.joined()
        return """
        ; DNS records for \(domain), served by \(hostname)
        ; \(hostname) needs A/AAAA records for this server's addresses, and the PTR of each
        ; address should name \(hostname) (large receivers refuse mail from addresses without one).
        \(domain).                 IN MX    10 \(hostname).
        \(domain).                 IN TXT   "v=spf1 mx -all"
        _dmarc.\(domain).          IN TXT   "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@\(domain)"
        _submissions._tcp.\(domain). IN SRV 0 1 465 \(hostname).
        _submission._tcp.\(domain).  IN SRV 0 1 587 \(hostname).
        _imaps._tcp.\(domain).     IN SRV   0 1 993 \(hostname).
        _pop3s._tcp.\(domain).     IN SRV   0 1 995 \(hostname).

        """ + dkimLines
    }
}
