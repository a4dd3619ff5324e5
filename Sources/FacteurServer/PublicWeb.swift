// The composition of the public web side: the http/https listeners (FacteurAdmin) serving the
// MTA-STS policy (RFC 8461 §3.3) and ACME HTTP-01 answers (RFC 8555 §8.3), and the ACME
// certificate service (FacteurACME) that fills them and reloads TLS when a certificate arrives.

import FacteurACME
import FacteurAdmin
import FacteurNet
import FacteurStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import ServiceLifecycle

/// HTTP-01 answers go into the public listener's token table.
struct RouterHTTP01Responder: HTTP01ChallengeResponder {
    let table: ACMEHTTPChallengeTable
    func install(token: String, keyAuthorization: String) { table.set(token: token, keyAuthorization: keyAuthorization) }
    func remove(token: String) { table.remove(token: token) }
}

/// The TLS context of the https listener, swapped when a new certificate is installed.
/// (The other listeners get the same when FacteurNet's reloadable provider lands.)
final class ReloadableTLSContext: Sendable {
    private let box: NIOLockedValueBox<NIOSSLContext?>
    init(_ context: NIOSSLContext?) { box = NIOLockedValueBox(context) }
    var current: NIOSSLContext? { box.withLockedValue { $0 } }
    func replace(_ context: NIOSSLContext) { box.withLockedValue { $0 = context } }
}

struct PublicWeb: Sendable {
    let router: PublicWebRouter
    let tls: ReloadableTLSContext
    let acme: ACMECertificateService?
    let configuration: ServerConfiguration
    let logger: Logger

    /// Certificates: when ACME is on and its certificate is already on disk, it is the default
    /// certificate of every listener from the start.
    static func certificateOverride(_ configuration: ServerConfiguration) -> ServerConfiguration {
        guard configuration.acme.enabled else { return configuration }
        var adjusted = configuration
        let files = acmeFiles(configuration, domains: configuration.acme.domains ?? [configuration.hostname])
        if FileManager.default.fileExists(atPath: files.certificatePath), FileManager.default.fileExists(atPath: files.keyPath) {
            adjusted.certificate = files.certificatePath
            adjusted.key = files.keyPath
        }
        return adjusted
    }

    static func acmeFiles(_ configuration: ServerConfiguration, domains: [String]) -> CertificateFiles {
        let directory = configuration.resolve("tls/acme")
        let name = domains.first ?? configuration.hostname
        return CertificateFiles(certificatePath: "\(directory)/\(name).pem", keyPath: "\(directory)/\(name).key.pem")
    }

    static func make(configuration: ServerConfiguration, store: SQLiteMailStore, sslContext: NIOSSLContext?,
                     logger: Logger) async throws -> PublicWeb {
        let domains = try await store.domains().map { $0.name.lowercased() }
        let router = PublicWebRouter(policy: configuration.mtaSTSPolicy, domains: Set(domains))
        let tls = ReloadableTLSContext(sslContext)
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
                // TLS-ALPN-01 answers need the TLS listeners' hook (FacteurNet's ACMEChallengeCertificates).
                tlsALPN: nil, logger: logger
            ) { files in
                do {
                    let provider = try TLSProvider(defaultCertificate: files)
                    tls.replace(provider.context)
                    logger.notice("TLS: ACME certificate loaded", metadata: ["path": "\(files.certificatePath)"])
                } catch {
                    logger.error("TLS: cannot load the new ACME certificate; keeping the old one", metadata: ["error": "\(error)"])
                }
            }
        }
        return PublicWeb(router: router, tls: tls, acme: acme, configuration: configuration, logger: logger)
    }

    /// Binds an http or https listener; nil for every other protocol.
    func start(_ listener: ListenerConfiguration, group: any EventLoopGroup) async throws -> RunningListener? {
        guard listener.proto == .http || listener.proto == .https else { return nil }
        var tlsContext: (@Sendable () -> NIOSSLContext)?
        if listener.tls == .implicit {
            guard let initial = tls.current else {
                throw ConfigurationError(file: "listeners", location: listener.proto.rawValue, message: "https needs a TLS certificate")
            }
            let reloadable = self.tls
            tlsContext = { reloadable.current ?? initial }
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
