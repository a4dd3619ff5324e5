// An IMAP listening socket (IMAP with STARTTLS on 143, IMAPS with implicit TLS on 993, RFC 8314)
// on FacteurNet's TCPListener.

import FacteurIdentity
import FacteurNet
import FacteurStore
import Logging
import NIOCore
import NIOSSL

public final class IMAPListener: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// The name in the greeting.
        public var hostname: String
        /// IMAPS: TLS from the first byte.
        public var implicitTLS: Bool
        /// Allow LOGIN and PLAIN without TLS for clients on 127.0.0.1 / ::1 (development).
        public var allowPlaintextOnLoopback: Bool
        public var limits: IMAPLimits
        public var maxConnections: Int
        public var maxConnectionsPerAddress: Int
        public init(host: String, port: Int, hostname: String, implicitTLS: Bool = false, allowPlaintextOnLoopback: Bool = true,
                    limits: IMAPLimits = IMAPLimits(), maxConnections: Int = 10_000, maxConnectionsPerAddress: Int = 50) {
            self.host = host; self.port = port; self.hostname = hostname; self.implicitTLS = implicitTLS
            self.allowPlaintextOnLoopback = allowPlaintextOnLoopback; self.limits = limits
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

    /// Binds the socket and starts accepting. `sslContext` enables STARTTLS, or implicit TLS when
    /// `configuration.implicitTLS` is set.
    public static func bind(configuration: Configuration, store: any MailStore, authenticator: Authenticator,
                            sslContext: (any TLSContextSource)?, group: any EventLoopGroup, logger: Logger,
                            accountLimiter: AccountConnectionLimiter? = nil) async throws -> IMAPListener {
        let runner = IMAPCommandRunner(store: store, authenticator: authenticator, accountLimiter: accountLimiter)
        let session = IMAPSessionConfiguration(hostname: configuration.hostname, tlsAvailable: sslContext != nil,
                                               implicitTLS: configuration.implicitTLS, limits: configuration.limits)
        let listener = try await TCPListener.bind(
            configuration: .init(host: configuration.host, port: configuration.port, implicitTLS: configuration.implicitTLS,
                                 maxConnections: configuration.maxConnections,
                                 maxConnectionsPerAddress: configuration.maxConnectionsPerAddress),
            sslContext: sslContext, group: group) { connection in
                IMAPServerHandler(configuration: session, allowPlaintextOnLoopback: configuration.allowPlaintextOnLoopback,
                                  runner: runner, sslContext: sslContext, limiter: connection.limiter,
                                  registry: connection.registry, logger: logger)
            }
        return IMAPListener(configuration: configuration, listener: listener)
    }

    /// Stops accepting, says BYE to idle sessions, lets running commands finish (up to `grace`).
    public func shutdown(grace: Duration = .seconds(30)) async {
        await listener.shutdown(grace: grace)
    }
}
