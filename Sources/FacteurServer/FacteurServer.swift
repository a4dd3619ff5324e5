// Starts Facteur: data folder, store, first-start defaults, TLS, listeners, graceful shutdown.

import FacteurIdentity
import FacteurDNS
import FacteurIMAP
import FacteurMailAuth
import FacteurQueue
import FacteurNet
import FacteurPOP3
import FacteurSMTP
import FacteurStore
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Crypto

public enum FacteurServer {
    /// Runs until SIGTERM or SIGINT, then lets sessions finish their message and exits.
    public static func run(configuration: ServerConfiguration, logger: Logger) async throws {
        try configuration.validateListeners()
        let data = configuration.dataDirectory
        let spool = "\(data)/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        // Spool files left by a crash belong to messages that were never acknowledged.
        for leftover in (try? FileManager.default.contentsOfDirectory(atPath: spool)) ?? [] {
            try? FileManager.default.removeItem(atPath: "\(spool)/\(leftover)")
        }
        let fileLimit = ResourceLimits.raiseOpenFileLimit()
        logger.info("starting", metadata: ["data": "\(data)", "hostname": "\(configuration.hostname)", "open_files": "\(fileLimit)"])

        let store = try SQLiteMailStore(directory: data, logger: logger)
        try await FirstStart.ensureDefaults(store: store, configuration: configuration)
        // ACME (PublicWeb.swift): with [acme] on, the default certificate is the ACME one.
        let sslContext = try makeTLS(configuration: PublicWeb.certificateOverride(configuration), logger: logger)
        // Renewed certificates are picked up without a restart: on file change and on SIGHUP.
        sslContext?.startWatching(interval: .seconds(Int64(configuration.tlsReloadIntervalSeconds)))
        let reloadSignal = sslContext.map(reloadOnSIGHUP)
        defer { reloadSignal?.cancel(); sslContext?.stopWatching() }

        // Outbound delivery: MX lookups through the system's resolvers, durable queue in the store.
        let resolver = DNSClient(configuration: try dnsConfiguration(configuration), logger: logger)
        var queueConfiguration = QueueConfiguration(hostname: configuration.hostname)
        queueConfiguration.ipv6Enabled = configuration.outboundIPv6
        queueConfiguration.mxPort = configuration.deliveryMXPort
        configuration.applyDelivery(to: &queueConfiguration)
        // DKIM: every message the queue takes is signed with its author domain's keys.
        let keyring = DKIMKeyring(directory: configuration.resolve("dkim"))
        if configuration.mailAuth.dkimGenerateKeys {
            try await ensureDKIMKeys(keyring: keyring, domains: try await store.domains().map(\.name), logger: logger)
        }
        let signerCache = DKIMSignerCache(keyring: keyring)
        let signer = configuration.mailAuth.dkimSign ? DKIMQueueSigner(cache: signerCache, logger: logger) : nil
        // TLS-RPT (RFC 8460): the queue reports every outbound TLS session here.
        let tlsRecorder = configuration.tlsReports.enabled ? TLSReportRecorder(store: store, logger: logger) : nil
        let queue = QueueDeliveryService(store: store, resolver: resolver, configuration: queueConfiguration, signer: signer,
                                         tlsReportSink: tlsRecorder, logger: logger)
        let authservID = configuration.mailAuth.authservID ?? configuration.hostname
        let organizationalDomain = try organizationalDomainStrategy(configuration)
        let authenticator = MessageAuthenticator(resolver: resolver, receivingDomain: configuration.hostname,
                                                 organizationalDomain: organizationalDomain)
        let recorder = configuration.mailAuth.dmarcReports ? DMARCEvaluationRecorder(store: store, logger: logger) : nil
        let inspector = SenderAuthenticationInspector(
            authenticator: authenticator, authservID: authservID, configuration: configuration.mailAuth, store: store,
            recorder: recorder, signerCache: signerCache, logger: logger)
        let reporting = DMARCReportingService(
            recorder: recorder,
            sender: DMARCReportSender(store: store, queue: queue, evaluator: authenticator.dmarc, organization: configuration.primaryDomain,
                                      fromAddress: "noreply-dmarc@\(configuration.primaryDomain)", logger: logger),
            ingestor: try await reportIngestor(store: store, configuration: configuration, logger: logger),
            logger: logger)
        let tlsReporting = try await TLSReportingService.make(store: store, queue: queue, recorder: tlsRecorder, resolver: resolver, configuration: configuration, logger: logger)
        let context = ServerContext(
            configuration: configuration, store: store, sslContext: sslContext,
            authenticator: try makeAuthenticator(store: store, configuration: configuration),
            queue: queue, inspector: inspector,
            senderRewriting: SenderRewriting(secret: try loadSecret(configuration.resolve("keys/srs-secret"))),
            imapAccountLimiter: AccountConnectionLimiter(maxPerAccount: configuration.maxConnectionsPerAccount),
            submissionRateLimiter: SubmissionRateLimiter(limits: .init(messagesPerHour: configuration.submissionMessagesPerHour,
                                                                      recipientsPerHour: configuration.submissionRecipientsPerHour)),
            spoolDirectory: spool, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        // Public web (http/https: MTA-STS policy, ACME HTTP-01) and the ACME certificate service.
        let publicWeb = try await PublicWeb.make(configuration: configuration, store: store, sslContext: sslContext, logger: logger)
        var listeners: [RunningListener] = []
        for listener in configuration.listeners {
            let running: RunningListener
            if let web = try await publicWeb.start(listener, group: context.group) {
                running = web
            } else {
                running = try await start(listener, context: context)
            }
            listeners.append(running)
            let host = running.address?.ipAddress ?? listener.address
            let shown = host.contains(":") ? "[\(host)]" : host
            announce("LISTENING \(listener.proto.rawValue) \(shown):\(running.address?.port ?? listener.port)")
        }

        let service = ListenersService(listeners: listeners, store: store, queue: queue, reporting: reporting,
                                       grace: .seconds(configuration.shutdownGraceSeconds), logger: logger)
        let serviceGroup = ServiceGroup(configuration: .init(
            // TLS reporting last to stop (services stop in reverse order): it flushes what delivery counted.
            services: [.init(service: tlsReporting),
                       .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup),
                       .init(service: publicWeb.service(store: store), successTerminationBehavior: .ignore)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await serviceGroup.run()
        logger.info("stopped")
    }

    /// Starts one listener. Each protocol adds its case here.
    static func start(_ listener: ListenerConfiguration, context: ServerContext) async throws -> RunningListener {
        let configuration = context.configuration
        let tls = listener.tls == .none ? nil : context.sslContext
        switch listener.proto {
        case .smtp, .submission, .submissions:
            let submission = listener.proto != .smtp
            let backend = StoreSMTPBackend(store: context.store, hostname: configuration.hostname,
                                           primaryDomain: configuration.primaryDomain, logger: context.logger,
                                           rateLimiter: submission ? context.submissionRateLimiter : nil,
                                           queue: context.queue, inspector: submission ? nil : context.inspector,
                                           senderRewriting: context.senderRewriting, sentCopiesByDefault: configuration.sentCopies)
            var limits = SMTPServerLimits()
            limits.idleTimeout = .seconds(Int64(configuration.idleTimeoutSeconds))
            let session = SMTPSessionConfiguration(
                hostname: configuration.hostname, maxMessageSize: configuration.maxMessageSize,
                maxRecipients: configuration.maxRecipients, maxErrors: configuration.maxErrors,
                tlsAvailable: tls != nil, implicitTLS: listener.tls == .implicit,
                mode: submission ? .submission : .inbound,
                authMechanisms: context.authenticator.advertisedMechanisms(connectionIsSecure: true),
                allowPlaintextAuthWithoutTLS: configuration.allowPlaintextAuthOnLoopback)
            let bound = try await SMTPListener.bind(
                configuration: .init(host: listener.address, port: listener.port, session: session, limits: limits,
                                     spoolDirectory: context.spoolDirectory, maxConnections: configuration.maxConnections,
                                     maxConnectionsPerAddress: configuration.maxConnectionsPerAddress),
                backend: backend, sslContext: tls, group: context.group, logger: context.logger,
                authenticator: submission ? context.authenticator : nil)
            return RunningListener(address: bound.localAddress) { await bound.shutdown(grace: $0) }
        case .imap, .imaps:
            var limits = IMAPLimits()
            limits.maxMessageSize = configuration.maxMessageSize
            let bound = try await IMAPListener.bind(
                configuration: .init(host: listener.address, port: listener.port, hostname: configuration.hostname,
                                     implicitTLS: listener.tls == .implicit,
                                     allowPlaintextOnLoopback: configuration.allowPlaintextAuthOnLoopback, limits: limits,
                                     maxConnections: configuration.maxConnections,
                                     maxConnectionsPerAddress: configuration.maxConnectionsPerAddress),
                store: context.store, authenticator: context.authenticator, sslContext: tls,
                group: context.group, logger: context.logger, accountLimiter: context.imapAccountLimiter)
            return RunningListener(address: bound.localAddress) { await bound.shutdown(grace: $0) }
        case .pop3, .pop3s:
            let backend = StorePOP3Backend(store: context.store, logger: context.logger)
            var limits = POP3ServerLimits()
            limits.allowPlaintextOnLoopback = configuration.allowPlaintextAuthOnLoopback
            let authenticator = context.authenticator
            let session = POP3SessionConfiguration(
                hostname: configuration.hostname, tlsAvailable: tls != nil, implicitTLS: listener.tls == .implicit,
                mechanismsWithoutTLS: authenticator.advertisedMechanisms(connectionIsSecure: false),
                mechanismsWithTLS: authenticator.advertisedMechanisms(connectionIsSecure: true),
                maxErrors: configuration.maxErrors)
            let bound = try await POP3Listener.bind(
                configuration: .init(host: listener.address, port: listener.port, session: session, limits: limits,
                                     maxConnections: configuration.maxConnections,
                                     maxConnectionsPerAddress: configuration.maxConnectionsPerAddress),
                backend: backend, authenticator: authenticator, sslContext: tls, group: context.group, logger: context.logger)
            return RunningListener(address: bound.localAddress) { await bound.shutdown(grace: $0) }
        default:
            throw ConfigurationError(file: "listeners", location: listener.proto.rawValue, message: "not available yet")
        }
    }

    /// One authenticator for every protocol, with a persisted secret so that an unknown user's
    /// fake SCRAM salt stays the same across protocols and restarts (it must not reveal who exists).
    static func makeAuthenticator(store: SQLiteMailStore, configuration: ServerConfiguration) throws -> Authenticator {
        let secret = try loadSecret(configuration.resolve("keys/sasl-secret"))
        return Authenticator(configuration: .init(sasl: SASLOptions(unknownUserSecret: SymmetricKey(data: secret))),
                             lookup: { try await store.credentials(address: $0) },
                             throttle: SharedAuthThrottle())
    }

    /// DMARCbis's DNS tree walk, or RFC 7489's Public Suffix List from a file.
    static func organizationalDomainStrategy(_ configuration: ServerConfiguration) throws -> DMARCOrganizationalDomain {
        guard configuration.mailAuth.organizationalDomain == "psl", let path = configuration.mailAuth.publicSuffixList else { return .treeWalk }
        do {
            return .publicSuffixList(try PublicSuffixList(contentsOf: configuration.resolve(path)))
        } catch {
            throw ConfigurationError(file: "config", location: "mail_auth.public_suffix_list", message: "\(error)")
        }
    }

    /// The account that receives other organisations' DMARC reports (created when missing,
    /// with a random password: it is read by the server, not by a person).
    static func reportIngestor(store: SQLiteMailStore, configuration: ServerConfiguration, logger: Logger) async throws -> DMARCReportIngestor? {
        guard configuration.mailAuth.dmarcReports, var address = configuration.mailAuth.dmarcReportAddress else { return nil }
        if !address.contains("@") { address += "@\(configuration.primaryDomain)" }
        if try await store.account(address: address) == nil {
            // An alias already takes that address: the operator routes reports elsewhere.
            guard try await store.resolveRecipient(address) == .unknownUser else { return nil }
            let credentials = try Credentials.make(password: FirstStart.randomPassword())
            _ = try await store.addAccount(address: address, credentials: credentials, quota: .unlimited, isAdmin: false)
            logger.notice("created the DMARC report account", metadata: ["address": "\(address)"])
        }
        return DMARCReportIngestor(store: store, address: address, logger: logger)
    }

    /// The resolvers: `dns_servers` from the config, else /etc/resolv.conf.
    static func dnsConfiguration(_ configuration: ServerConfiguration) throws -> DNSClientConfiguration {
        guard !configuration.dnsServers.isEmpty else { return try DNSClientConfiguration.system() }
        let servers = try configuration.dnsServers.map { spec in
            let (host, port) = ServerConfiguration.splitHostPort(spec, defaultPort: 53)
            return try SocketAddress(ipAddress: host, port: port)
        }
        // RFC 7672 §1.3: the AD bit is believed only from a resolver on this host (loopback).
        let local = configuration.dnsServers.allSatisfy { spec in
            let host = ServerConfiguration.splitHostPort(spec, defaultPort: 53).0
            return host.hasPrefix("127.") || host == "::1"
        }
        return DNSClientConfiguration(servers: servers, trustAuthenticData: local)
    }

    /// A domain without DKIM keys gets an Ed25519 and an RSA key, and the records to publish are
    /// announced (they are printed again by `facteur dkim record DOMAIN`).
    static func ensureDKIMKeys(keyring: DKIMKeyring, domains: [String], logger: Logger) async throws {
        for domain in domains where domain.contains(".") {
            guard try keyring.keys(for: domain).isEmpty else { continue }
            for algorithm in ["ed25519", "rsa"] { try keyring.generate(domain: domain, algorithm: algorithm) }
            for record in try keyring.records(for: domain) {
                logger.notice("generated a DKIM key: publish its record", metadata: [
                    "domain": "\(domain)", "name": "\(record.name)", "txt": "\(record.value)"])
            }
        }
    }

    /// A 32-byte secret kept in the data folder (created on first use, readable by us only), so
    /// that what it protects survives restarts.
    static func loadSecret(_ path: String) throws -> [UInt8] {
        if let existing = FileManager.default.contents(atPath: path), existing.count == 32 { return Array(existing) }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try Data(secret).write(to: URL(fileURLWithPath: path), options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        return secret
    }

    /// Writes a line to standard output at once (tests and scripts wait for these lines).
    static func announce(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// SIGHUP reloads the certificates (the conventional "re-read your files" signal for daemons).
    private static func reloadOnSIGHUP(_ provider: TLSProvider) -> any DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { provider.reloadLogging(reason: "SIGHUP") }
        source.resume()
        return source
    }

    private static func makeTLS(configuration: ServerConfiguration, logger: Logger) throws -> TLSProvider? {
        let files = CertificateFiles(certificatePath: configuration.resolve(configuration.certificate),
                                     keyPath: configuration.resolve(configuration.key))
        if configuration.generateSelfSigned {
            try FileManager.default.createDirectory(atPath: (files.certificatePath as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            if try TLSProvider.ensureSelfSigned(files, hostnames: Array(Set([configuration.hostname, "localhost"]))) {
                logger.notice("generated a self-signed certificate", metadata: ["path": "\(files.certificatePath)"])
            }
        }
        var perDomain: [String: CertificateFiles] = [:]
        for (host, entry) in configuration.domainCertificates {
            perDomain[host] = CertificateFiles(certificatePath: configuration.resolve(entry.certificate),
                                               keyPath: configuration.resolve(entry.key))
        }
        return try TLSProvider(defaultCertificate: files, perDomain: perDomain, logger: logger)
    }
}

/// What every protocol's listener needs from the composition root.
struct ServerContext: Sendable {
    let configuration: ServerConfiguration
    let store: SQLiteMailStore
    /// The reloadable TLS contexts (and TLS-ALPN-01 challenge certificates) for every listener.
    let sslContext: TLSProvider?
    let authenticator: Authenticator
    let queue: QueueDeliveryService
    let inspector: SenderAuthenticationInspector
    let senderRewriting: SenderRewriting
    let imapAccountLimiter: AccountConnectionLimiter
    let submissionRateLimiter: SubmissionRateLimiter
    let spoolDirectory: String
    let group: any EventLoopGroup
    let logger: Logger
}

/// A bound listener, as the lifecycle sees it.
struct RunningListener: Sendable {
    let address: SocketAddress?
    let shutdown: @Sendable (Duration) async -> Void
}

/// Keeps the listeners alive until shutdown, then drains them; collects garbage blobs meanwhile.
struct ListenersService: Service {
    let listeners: [RunningListener]
    let store: SQLiteMailStore
    let queue: QueueDeliveryService
    let reporting: DMARCReportingService
    let grace: Duration
    let logger: Logger

    func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Outbound delivery runs until shutdown; what is in flight stays queued and resumes on restart.
                    do {
                        try await queue.run()
                    } catch is CancellationError {
                    } catch {
                        logger.error("outbound queue stopped", metadata: ["error": "\(error)"])
                    }
                }
                group.addTask {
                    // Unreferenced blobs (expunged messages) are removed hourly.
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(3600))
                        if Task.isCancelled { break }
                        do {
                            let removed = try await store.collectGarbage()
                            if removed > 0 { logger.info("garbage collected", metadata: ["blobs": "\(removed)"]) }
                        } catch {
                            logger.warning("garbage collection failed", metadata: ["error": "\(error)"])
                        }
                    }
                }
                group.addTask { await reporting.run() }
                group.addTask {
                    // Full-text index (IMAP SEARCH BODY/TEXT): new mail is indexed in the background,
                    // outside the delivery transactions (a SEARCH indexes what is still missing).
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(20))
                        if Task.isCancelled { break }
                        do {
                            try await store.indexPendingFullText(limit: 20_000)
                        } catch {
                            logger.warning("full-text indexing failed", metadata: ["error": "\(error)"])
                        }
                    }
                }
                try? await gracefulShutdown()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            logger.info("shutting down: letting sessions finish their messages")
        }
        await withTaskGroup(of: Void.self) { group in
            for listener in listeners {
                group.addTask { await listener.shutdown(grace) }
            }
        }
        // Counts of the messages just received belong in the next reports.
        await reporting.recorder?.flush()
    }
}
