// An SMTP listening socket (inbound MX today; submission later) on FacteurNet's TCPListener.

import FacteurIdentity
import FacteurNet
import Logging
import NIOCore
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
    private let listener: TCPListener

    private init(configuration: Configuration, listener: TCPListener) {
        self.configuration = configuration
        self.listener = listener
    }

    public var localAddress: SocketAddress? { listener.localAddress }
    public var activeSessions: Int { listener.activeSessions }

    /// Binds the socket and starts accepting. `sslContext` enables STARTTLS, or implicit TLS when
    /// `configuration.session.implicitTLS` is set.
    public static func bind(configuration: Configuration, backend: any SMTPBackend, sslContext: (any TLSContextSource)?,
                            group: any EventLoopGroup, logger: Logger, authenticator: Authenticator? = nil) async throws -> SMTPListener {
        let listener = try await TCPListener.bind(
            configuration: .init(host: configuration.host, port: configuration.port, implicitTLS: configuration.session.implicitTLS,
                                 maxConnections: configuration.maxConnections,
                                 maxConnectionsPerAddress: configuration.maxConnectionsPerAddress),
            sslContext: sslContext, group: group) { connection in
                SMTPServerHandler(configuration: configuration.session, limits: configuration.limits, backend: backend,
                                  sslContext: sslContext, spoolDirectory: configuration.spoolDirectory,
                                  limiter: connection.limiter, registry: connection.registry, logger: logger,
                                  authenticator: authenticator)
            }
        return SMTPListener(configuration: configuration, listener: listener)
    }

    /// Stops accepting, lets sessions finish the message they are receiving (up to `grace`), then closes.
    public func shutdown(grace: Duration = .seconds(30)) async {
        await listener.shutdown(grace: grace)
    }
}
