// Starts Facteur: data folder, store, first-start defaults, TLS, listeners, graceful shutdown.

import FacteurIdentity
import FacteurNet
import FacteurSMTP
import FacteurStore
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

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
        let sslContext = try makeTLS(configuration: configuration, logger: logger)

        let group = MultiThreadedEventLoopGroup.singleton
        var listeners: [SMTPListener] = []
        for listener in configuration.listeners {
            switch listener.proto {
            case .smtp:
                let backend = StoreSMTPBackend(store: store, hostname: configuration.hostname,
                                               primaryDomain: configuration.primaryDomain, logger: logger)
                var limits = SMTPServerLimits()
                limits.idleTimeout = .seconds(Int64(configuration.idleTimeoutSeconds))
                let session = SMTPSessionConfiguration(
                    hostname: configuration.hostname, maxMessageSize: configuration.maxMessageSize,
                    maxRecipients: configuration.maxRecipients, maxErrors: configuration.maxErrors,
                    tlsAvailable: listener.tls != .none && sslContext != nil, implicitTLS: listener.tls == .implicit)
                let bound = try await SMTPListener.bind(
                    configuration: .init(host: listener.address, port: listener.port, session: session, limits: limits,
                                         spoolDirectory: spool, maxConnections: configuration.maxConnections,
                                         maxConnectionsPerAddress: configuration.maxConnectionsPerAddress),
                    backend: backend, sslContext: listener.tls == .none ? nil : sslContext, group: group, logger: logger)
                listeners.append(bound)
                let address = bound.localAddress
                let host = address?.ipAddress ?? listener.address
                let shown = host.contains(":") ? "[\(host)]" : host
                announce("LISTENING \(listener.proto.rawValue) \(shown):\(address?.port ?? listener.port)")
            default:
                throw ConfigurationError(file: "listeners", location: listener.proto.rawValue, message: "not available yet")
            }
        }

        let service = ListenersService(listeners: listeners, store: store,
                                       grace: .seconds(configuration.shutdownGraceSeconds), logger: logger)
        let serviceGroup = ServiceGroup(configuration: .init(
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await serviceGroup.run()
        logger.info("stopped")
    }

    /// Writes a line to standard output at once (tests and scripts wait for these lines).
    static func announce(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    private static func makeTLS(configuration: ServerConfiguration, logger: Logger) throws -> NIOSSLContext? {
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
        return try TLSProvider(defaultCertificate: files, perDomain: perDomain).context
    }
}

/// Keeps the listeners alive until shutdown, then drains them; collects garbage blobs meanwhile.
struct ListenersService: Service {
    let listeners: [SMTPListener]
    let store: SQLiteMailStore
    let grace: Duration
    let logger: Logger

    func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
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
                try? await gracefulShutdown()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            logger.info("shutting down: letting sessions finish their messages")
        }
        await withTaskGroup(of: Void.self) { group in
            for listener in listeners {
                group.addTask { await listener.shutdown(grace: grace) }
            }
        }
    }
}
