// The composition of the public web side: the http/https listeners (FacteurAdmin) serving the
// MTA-STS policy (RFC 8461 §3.3) and ACME HTTP-01 answers (RFC 8555 §8.3), and the ACME
// certificate service (FacteurACME) that fills them and reloads TLS when a certificate arrives.

import FacteurACME
import FacteurAdmin
import FacteurNet
import FacteurStore
import Foundation
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// HTTP-01 answers go into the public listener's token table.
struct RouterHTTP01Responder: HTTP01ChallengeResponder {
    let table: ACMEHTTPChallengeTable
    func install(token: String, keyAuthorization: String) { table.set(token: token, keyAuthorization: keyAuthorization) }
    func remove(token: String) { table.remove(token: token) }
}

/// TLS-ALPN-01 answers go into the TLS listeners' challenge table (FacteurNet), which the
/// shared TLS pipeline presents to "acme-tls/1" clients (RFC 8737 §3).
struct ListenerTLSALPNResponder: TLSALPNChallengeResponder {
    let certificates: ACMEChallengeCertificates
    let logger: Logger
    func install(host: String, certificateChainPEM: String, privateKeyPEM: String) {
        do {
            try certificates.set(host: host, certificateChainPEM: certificateChainPEM, privateKeyPEM: privateKeyPEM)
        } catch {
            logger.error("ACME: cannot install the tls-alpn-01 certificate", metadata: ["host": "\(host)", "error": "\(error)"])
        }
    }
    func remove(host: String) { certificates.remove(host: host) }
}

struct PublicWeb: Sendable {
    let router: PublicWebRouter
    let tls: TLSProvider?
    let acme: ACMECertificateService?
    let configuration: ServerConfiguration
    let logger: Logger

    /// Certificates: when ACME is on, its files are every listener's default certificate. Until
    /// the CA has issued one they hold a self-signed stand-in, whose key the ACME certificate
    /// then keeps; the provider's reload (and file watch) switches the listeners over.
    static func certificateOverride(_ configuration: ServerConfiguration) -> ServerConfiguration {
        guard configuration.acme.enabled else { return configuration }
        var adjusted = configuration
        let files = acmeFiles(configuration, domains: configuration.acme.domains ?? [configuration.hostname])
        adjusted.certificate = files.certificatePath
        adjusted.key = files.keyPath
        adjusted.generateSelfSigned = true
        return adjusted
    }

    static func acmeFiles(_ configuration: ServerConfiguration, domains: [String]) -> CertificateFiles {
        let directory = configuration.resolve("tls/acme")
        let name = domains.first ?? configuration.hostname
        return CertificateFiles(certificatePath: "\(directory)/\(name).pem", keyPath: "\(directory)/\(name).key.pem")
    }

    static func make(configuration: ServerConfiguration, store: SQLiteMailStore, sslContext: TLSProvider?,
                     logger: Logger) async throws -> PublicWeb {
        let domains = try await store.domains().map { $0.name.lowercased() }
        let router = PublicWebRouter(policy: configuration.mtaSTSPolicy, domains: Set(domains))
        let tls = sslContext
        var acme: ACMECertificateService?
        if configuration.acme.enabled {
            let names = configuration.acmeDomains(localDomains: domains)
            var client = ACMEClientConfiguration(directoryURL: configuration.acme.directory, contact: configuration.acme.contact,
                                                 trustRootsPEMFile: configuration.acme.trustRoots.map(configuration.resolve))
            client.pollingDeadline = .seconds(120)
            let service = ACMECertificateConfiguration(
                client: client, domains: names, challenge: configuration.acme.challenge,
                accountDirectory: configuration.resolve("acme"), certificateDirectory: configuration.resolve("tls/acme"))
            acme = ACMECertificateService(
                configuration: service, http01: RouterHTTP01Responder(table: router.challenges),
                tlsALPN: tls.map { ListenerTLSALPNResponder(certificates: $0.challenges, logger: logger) }, logger: logger
            ) { files in
                // Every TLS listener switches to the new certificate (the provider keeps the old
                // one if the new files do not load).
                tls?.reloadLogging(reason: "ACME certificate \(files.certificatePath)")
            }
        }
        return PublicWeb(router: router, tls: tls, acme: acme, configuration: configuration, logger: logger)
    }

    /// Binds an http or https listener; nil for every other protocol.
    func start(_ listener: ListenerConfiguration, group: any EventLoopGroup) async throws -> RunningListener? {
        guard listener.proto == .http || listener.proto == .https else { return nil }
        var tlsContext: (any TLSContextSource)?
        if listener.tls == .implicit {
            guard let tls else {
                throw ConfigurationError(file: "listeners", location: listener.proto.rawValue, message: "https needs a TLS certificate")
            }
            tlsContext = tls
        }
        var limits = PublicWebLimits()
        limits.maxConnections = min(configuration.maxConnections, 1_000)
        limits.maxConnectionsPerAddress = min(configuration.maxConnectionsPerAddress, 20)
        let bound = try await PublicWebListener.bind(
            configuration: .init(host: listener.address, port: listener.port, limits: limits),
            router: router, tlsContext: tlsContext, group: group, logger: logger)
        return RunningListener(address: bound.localAddress) { _ in await bound.shutdown() }
    }

    /// The lifecycle part: the ACME loop and a periodic refresh of the domain list.
    func service(store: SQLiteMailStore) -> PublicWebService {
        PublicWebService(router: router, acme: acme, store: store, logger: logger)
    }
}

struct PublicWebService: Service {
    let router: PublicWebRouter
    let acme: ACMECertificateService?
    let store: SQLiteMailStore
    let logger: Logger

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            if let acme { group.addTask { await acme.run() } }
            group.addTask {
                // `facteur domain add` while running: the new domain's policy is served within a minute.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(60))
                    if let domains = try? await store.domains() { router.setDomains(Set(domains.map(\.name))) }
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }
}
