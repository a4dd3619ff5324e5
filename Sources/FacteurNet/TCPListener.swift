// One listening TCP socket for any protocol: accepts connections, puts TLS in front for
// implicit-TLS ports (RFC 8314), and hands each connection to the protocol's handler. It owns the
// connection limits and the registry of live sessions, and drains them on shutdown.

import Logging
import NIOCore
import NIOPosix

public final class TCPListener: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Put TLS in front of every connection before the protocol speaks (smtps, imaps, pop3s).
        public var implicitTLS: Bool
        public var maxConnections: Int
        public var maxConnectionsPerAddress: Int
        public init(host: String, port: Int, implicitTLS: Bool = false, maxConnections: Int = 10_000, maxConnectionsPerAddress: Int = 50) {
            self.host = host; self.port = port; self.implicitTLS = implicitTLS
            self.maxConnections = maxConnections; self.maxConnectionsPerAddress = maxConnectionsPerAddress
        }
    }

    /// Shared with every connection's handler: it counts itself in the limiter and registers for draining.
    public struct ConnectionContext: Sendable {
        public let limiter: ConnectionLimiter
        public let registry: ConnectionRegistry
    }

    private let channel: any Channel
    private let registry: ConnectionRegistry

    private init(channel: any Channel, registry: ConnectionRegistry) {
        self.channel = channel
        self.registry = registry
    }

    public var localAddress: SocketAddress? { channel.localAddress }
    public var activeSessions: Int { registry.count }

    /// `sslContext` is read anew for every connection (see `TLSProvider`), so reloaded
    /// certificates apply to the next connection.
    public static func bind(configuration: Configuration, sslContext: (any TLSContextSource)?, group: any EventLoopGroup,
                            makeHandler: @escaping @Sendable (ConnectionContext) -> any ChannelHandler) async throws -> TCPListener {
        let registry = ConnectionRegistry()
        let connection = ConnectionContext(
            limiter: ConnectionLimiter(maxConnections: configuration.maxConnections, maxPerAddress: configuration.maxConnectionsPerAddress),
            registry: registry)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if configuration.implicitTLS, let sslContext {
                        // The protocol handler goes in once the ClientHello has chosen the certificate.
                        try TLSServerPipeline.configureSync(channel: channel, provider: sslContext) { pipeline in
                            try pipeline.addHandler(makeHandler(connection))
                        }
                    } else {
                        try channel.pipeline.syncOperations.addHandler(makeHandler(connection))
                    }
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        return TCPListener(channel: channel, registry: registry)
    }

    /// Stops accepting, asks sessions to finish (up to `grace`), then closes whoever is left.
    public func shutdown(grace: Duration) async {
        try? await channel.close()
        await registry.drainAll(timeout: grace)
    }
}
