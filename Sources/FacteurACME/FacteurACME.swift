// FacteurACME: an ACME client (RFC 8555) that obtains and renews Facteur's certificates with
// HTTP-01 and TLS-ALPN-01 (RFC 8737) challenges, timed by ACME Renewal Information (RFC 9773).
