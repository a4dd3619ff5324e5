// A blocking TCP client for loopback tests of the line protocols (SMTP, POP3, IMAP): plain
// sockets, no NIO, so a test sees exactly the bytes the server wrote and when.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

open class LoopbackLineClient {
    public let fd: Int32
    private var pending: [UInt8] = []

    /// Connects to 127.0.0.1:`port`; reads time out after `timeout` seconds.
    public init(port: Int, timeout: Int = 5) throws {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { close(socketFD); throw POSIXError(.ECONNREFUSED) }
        fd = socketFD
        self.timeout = timeout
        setReceiveTimeout(microseconds: timeout * 1_000_000)
    }

    private let timeout: Int

    deinit { close(fd) }

    public func send(_ text: String) { send(Array(text.utf8)) }

    public func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// One line without its CRLF (or bare LF), as bytes; nil on EOF or timeout.
    public func readLineBytes() -> [UInt8]? {
        var searched = 0
        while true {
            if let lf = pending[searched...].firstIndex(of: 10) {
                var line = Array(pending[..<lf])
                pending.removeFirst(lf + 1)
                if line.last == 13 { line.removeLast() }
                return line
            }
            searched = pending.count
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return nil }
            pending += buffer[..<n]
        }
    }

    /// One line as text; nil on EOF or timeout.
    public func readLine() -> String? {
        readLineBytes().map { String(decoding: $0, as: UTF8.self) }
    }

    /// True when the server says nothing more within `wait` (and did not close the connection).
    public func isSilent(for wait: TimeInterval) -> Bool {
        setReceiveTimeout(microseconds: Int(wait * 1_000_000))
        defer { setReceiveTimeout(microseconds: timeout * 1_000_000) }
        var byte: UInt8 = 0
        return pending.isEmpty && recv(fd, &byte, 1, Int32(MSG_PEEK)) < 0
    }

    private func setReceiveTimeout(microseconds: Int) {
        var value = timeval(tv_sec: microseconds / 1_000_000, tv_usec: microseconds % 1_000_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }
}
