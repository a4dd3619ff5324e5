// TLS-ALPN-01 challenge certificates (RFC 8737 §3): while an ACME order is being validated, a
// connection whose ClientHello offers the ALPN protocol "acme-tls/1" for a host we hold a
// challenge certificate for must be answered with that certificate (which carries the
// acmeIdentifier extension) and must negotiate "acme-tls/1"; no application data follows.
// The ACME client sets and removes certificates here; TLSServerPipeline consults it.

import NIOConcurrencyHelpers
import NIOSSL

public final class ACMEChallengeCertificates: Sendable {
    /// The ALPN protocol name of RFC 8737 §6.2.
    public static let alpnProtocol = "acme-tls/1"
    /// Plenty for any real order (one entry per identifier being validated at once).
    public static let maxHosts = 1_000

    private let contexts = NIOLockedValueBox<[String: NIOSSLContext]>([:])

    public init() {}

    /// Serves `certificateChainPEM` (the self-signed challenge certificate) with `privateKeyPEM`
    /// to "acme-tls/1" handshakes for `host` until `remove(host:)`. Throws if the PEM is not a
    /// certificate and a matching key.
    public func set(host: String, certificateChainPEM: String, privateKeyPEM: String) throws {
        let loaded = try CertificateAndKey(certificateChainPEM: Array(certificateChainPEM.utf8), privateKeyPEM: Array(privateKeyPEM.utf8),
                                           certificateName: "challenge certificate for \(host)", keyName: "challenge key for \(host)")
        var configuration = TLSPolicy.serverConfiguration(certificateChain: loaded.chain, privateKey: loaded.key)
        // RFC 8737 §3: the server must negotiate acme-tls/1, and only that.
        configuration.applicationProtocols = [Self.alpnProtocol]
        let context = try NIOSSLContext(configuration: configuration)
        let key = host.lowercased()
        try contexts.withLockedValue { contexts in
            if contexts[key] == nil, contexts.count >= Self.maxHosts {
                throw TLSProviderError.unreadable(path: "challenge certificate for \(host)", reason: "too many pending challenges")
            }
            contexts[key] = context
        }
    }

    public func remove(host: String) {
        _ = contexts.withLockedValue { $0.removeValue(forKey: host.lowercased()) }
    }

    /// The challenge context for `host`, if a challenge is pending for it.
    public func context(for host: String) -> NIOSSLContext? {
        contexts.withLockedValue { $0[host.lowercased()] }
    }

    public var isEmpty: Bool { contexts.withLockedValue { $0.isEmpty } }
}
