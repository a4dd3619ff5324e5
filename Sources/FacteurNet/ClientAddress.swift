// Facts about a client's address that every protocol's policy needs.

import NIOCore

public enum ClientAddress {
    /// 127.0.0.0/8, ::1 and IPv4-mapped loopback (`::ffff:127.x`): the clients that may send
    /// passwords in the clear without TLS when development allows it.
    public static func isLoopback(_ ip: String) -> Bool {
        ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    public static func isLoopback(_ address: SocketAddress?) -> Bool {
        address?.ipAddress.map(isLoopback) ?? false
    }
}
