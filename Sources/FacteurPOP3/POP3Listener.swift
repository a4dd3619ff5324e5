// A POP3 listening socket on FacteurNet's TCPListener: port 110 with STLS (RFC 2595 §4), or 995
// with implicit TLS (POP3S, RFC 8314 §3.3).

import FacteurIdentity
import FacteurNet
import Logging
import NIOCore
import NIOSSL

public final class POP3Listener: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var session: POP3SessionConfiguration
        public var limits: POP3ServerLimits
        public var maxConnections: Int
        public var maxConnectionsPerAddress: Int
        public init(host: String, port: Int, session: POP3SessionConfiguration, limits: POP3ServerLimits = .init(),
                    maxConnections: Int = 10_000, maxConnectionsPerAddress: Int = 50) {
            self.host = host; self.port = port; self.session = session; self.limits = limits
            self.maxConnections = maxConnections; self.maxConnectionsPerAddress = maxConnectionsPerAddress
        }
    }

    public let configuration: Configuration
    private let listener: TCPListener

    private init(configuration: Configuration, listener: TCPListener) {
        self.configuration = configuration
        self.listener = listener
    }

    public var localAddress: SocketAddress? { listener.localAddress }
    public var activeSessions: Int { listener.activeSessions }

    /// Binds the socket and starts accepting. `sslContext` enables STLS, or implicit TLS when
    /// `configuration.session.implicitTLS` is set.
    public static func bind(configuration: Configuration, backend: any POP3Backend, authenticator: Authenticator,
                            sslContext: (any TLSContextSource)?, group: any EventLoopGroup, logger: Logger) async throws -> POP3Listener {
        let listener = try await TCPListener.bind(
            configuration: .init(host: configuration.host, port: configuration.port, implicitTLS: configuration.session.implicitTLS,
                                 maxConnections: configuration.maxConnections,
                                 maxConnectionsPerAddress: configuration.maxConnectionsPerAddress),
            sslContext: sslContext, group: group) { connection in
                POP3ServerHandler(configuration: configuration.session, limits: configuration.limits, backend: backend,
                                  authenticator: authenticator, sslContext: sslContext,
                                  limiter: connection.limiter, registry: connection.registry, logger: logger)
            }
        return POP3Listener(configuration: configuration, listener: listener)
    }

    /// Stops accepting, tells idle sessions goodbye (nothing marked deleted is removed), waits
    /// up to `grace` for retrievals and UPDATEs in progress, then closes.
    public func shutdown(grace: Duration = .seconds(30)) async {
        await listener.shutdown(grace: grace)
    }
}
