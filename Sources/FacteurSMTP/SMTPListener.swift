// One SMTP listening socket (inbound MX, or later submission), with its connection limits and
// the registry of live sessions used for graceful shutdown.

import FacteurNet
import Logging
import NIOCore
import NIOPosix
import NIOSSL

public final class SMTPListener: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var session: SMTPSessionConfiguration
        public var limits: SMTPServerLimits
        public var spoolDirectory: String
        public var maxConnections: Int
        public var maxConnectionsPerAddress: Int
        public init(host: String, port: Int, session: SMTPSessionConfiguration, limits: SMTPServerLimits = .init(),
                    spoolDirectory: String, maxConnections: Int = 10_000, maxConnectionsPerAddress: Int = 50) {
            self.host = host; self.port = port; self.session = session; self.limits = limits
            self.spoolDirectory = spoolDirectory; self.maxConnections = maxConnections
            self.maxConnectionsPerAddress = maxConnectionsPerAddress
        }
    }

    public let configuration: Configuration
    private let channel: any Channel
    private let registry: ConnectionRegistry
    private let logger: Logger

    private init(configuration: Configuration, channel: any Channel, registry: ConnectionRegistry, logger: Logger) {
        self.configuration = configuration
        self.channel = channel
        self.registry = registry
        self.logger = logger
    }

    public var localAddress: SocketAddress? { channel.localAddress }

    /// Binds the socket and starts accepting. `sslContext` enables STARTTLS, or implicit TLS when
    /// `configuration.session.implicitTLS` is set.
    public static func bind(configuration: Configuration, backend: any SMTPBackend, sslContext: NIOSSLContext?,
                            group: any EventLoopGroup, logger: Logger) async throws -> SMTPListener {
        let registry = ConnectionRegistry()
        let limiter = ConnectionLimiter(maxConnections: configuration.maxConnections,
                                        maxPerAddress: configuration.maxConnectionsPerAddress)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if configuration.session.implicitTLS, let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    let handler = SMTPServerHandler(
                        configuration: configuration.session, limits: configuration.limits, backend: backend,
                        sslContext: sslContext, spoolDirectory: configuration.spoolDirectory, limiter: limiter,
                        registry: registry, logger: logger)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        return SMTPListener(configuration: configuration, channel: channel, registry: registry, logger: logger)
    }

    /// Stops accepting, lets sessions finish the message they are receiving (up to `grace`), then closes.
    public func shutdown(grace: Duration = .seconds(30)) async {
        try? await channel.close()
        await registry.drainAll(timeout: grace)
    }

    public var activeSessions: Int { registry.count }
}
