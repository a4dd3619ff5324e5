// A real unbound (Debian's `unbound`) on a free loopback port serving only the local data a test
// gives it: the DNS the end-to-end tests of SPF, DKIM, DMARC and outbound routing resolve through.
// Nothing is forwarded or recursed: every name outside the test's zones is refused.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class UnboundProcess: @unchecked Sendable {
    public let port: Int
    public let directory: URL
    let process: Process

    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The unbound binary (FACTEUR_UNBOUND overrides), or nil when it is not installed.
    public static func executable() -> String? {
        if let path = ProcessInfo.processInfo.environment["FACTEUR_UNBOUND"] {
            return FileManager.default.isExecutableFile(atPath: path) ? path : nil
        }
        return ["/usr/sbin/unbound", "/usr/local/sbin/unbound", "/opt/homebrew/sbin/unbound"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A port that is free for both UDP and TCP on 127.0.0.1 now.
    public static func freePort() -> Int? {
        for _ in 0..<50 {
            let port = Int.random(in: 20_000...60_000)
            if canBind(port: port, type: Int32(SOCK_DGRAM.rawValue)), canBind(port: port, type: Int32(SOCK_STREAM.rawValue)) { return port }
        }
        return nil
    }

    static func canBind(port: Int, type: Int32) -> Bool {
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// Starts unbound with `zones` (zone name → local-data lines in zone-file syntax) on `port`.
    /// Returns once it serves.
    public init(executable: String, port: Int, zones: [String: [String]], timeout: TimeInterval = 20) throws {
        self.port = port
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-unbound-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var lines = [
            "server:",
            "  interface: 127.0.0.1",
            "  port: \(port)",
            "  do-daemonize: no",
            "  chroot: \"\"",
            "  username: \"\"",
            "  directory: \"\(directory.path)\"",
            "  pidfile: \"\(directory.path)/unbound.pid\"",
            "  use-syslog: no",
            "  logfile: \"\"",
            "  verbosity: 1",
            "  num-threads: 1",
            "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            "  module-config: \"iterator\"",
            "  local-zone: \".\" refuse",
            // Loopback's reverse zone is built in as "localhost"; a test may serve its own PTR.
            "  local-zone: \"127.in-addr.arpa.\" nodefault",
        ]
        for (zone, records) in zones.sorted(by: { $0.key < $1.key }) {
            lines.append("  local-zone: \"\(zone).\" static")
            lines.append("  local-data: \"\(zone). 3600 IN SOA ns.\(zone). hostmaster.\(zone). 1 3600 600 86400 60\"")
            for record in records {
                lines.append("  local-data: '\(record.replacingOccurrences(of: "'", with: ""))'")
            }
        }
        lines += ["remote-control:", "  control-enable: no", ""]
        let configURL = directory.appendingPathComponent("unbound.conf")
        try lines.joined(separator: "\n").write(to: configURL, atomically: true, encoding: .utf8)
        let logURL = directory.appendingPathComponent("unbound.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-d", "-c", configURL.path]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try? log.close()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
            if text.contains("start of service") { return }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        stop()
        throw StartError(description: "unbound did not start: \(text.suffix(2000))")
    }

    public func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { if process.isRunning { process.terminate() } }

    /// A TXT value as zone-file character-strings of at most 255 octets.
    public static func txt(_ value: String) -> String {
        var parts: [String] = []
        var rest = Substring(value)
        repeat {
            parts.append("\"\(rest.prefix(255))\"")
            rest = rest.dropFirst(255)
        } while !rest.isEmpty
        return parts.joined(separator: " ")
    }
}
