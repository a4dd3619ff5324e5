// A DNSSEC test world on loopback: zones signed with ldns-signzone (RFC 4033-4035; keys from
// ldns-keygen, ECDSA P-256, RFC 6605) served by a private NSD, and a validating unbound that reaches
// them through stub-zones with a trust anchor per signed zone (`domain-insecure` for the others).
// The DANE end-to-end tests (RFC 7672) resolve through it and get the AD bit for signed data only.

import Foundation

/// Runs a command to completion; used for ldns-keygen, ldns-signzone and openssl.
public enum ToolRunner {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `executable arguments` in `directory`; returns stdout, throws with stderr on a non-zero exit.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], in directory: URL) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): "
                + String(decoding: stderr, as: UTF8.self))
        }
        return String(decoding: stdout, as: UTF8.self)
    }

    /// The first of `candidates` that is executable, or nil.
    public static func find(_ candidates: [String]) -> String? {
        candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts a long-running process with its output in `log`; waits until `ready(log text)`.
    static func start(_ executable: String, _ arguments: [String], log: URL, timeout: TimeInterval,
                      ready: (String) -> Bool) throws -> Process {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try? handle.close()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if ready(text) { return process }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        throw Failure(description: "\(executable) did not start: \(text.suffix(2000))")
    }
}

/// NSD serving test zones, some of them signed, plus the validating unbound in front of it.
public final class SignedZoneServer: @unchecked Sendable {
    /// unbound's port: give it to Facteur as `dns_servers = ["127.0.0.1:PORT"]`.
    public let port: Int
    public let nsdPort: Int
    public let directory: URL
    let nsd: Process
    let unbound: Process

    /// The tools, or nil when one is missing (`nsd`, `unbound`, `ldns-keygen`, `ldns-signzone`).
    public static func tools() -> (nsd: String, unbound: String, keygen: String, signzone: String)? {
        guard let nsd = ToolRunner.find(["/usr/sbin/nsd", "/usr/local/sbin/nsd"]),
              let unbound = UnboundProcess.executable(),
              let keygen = ToolRunner.find(["/usr/bin/ldns-keygen", "/usr/local/bin/ldns-keygen"]),
              let signzone = ToolRunner.find(["/usr/bin/ldns-signzone", "/usr/local/bin/ldns-signzone"]) else { return nil }
        return (nsd, unbound, keygen, signzone)
    }

    /// `zones`: zone name → records in zone-file syntax (absolute names); the names in `signed`
    /// are signed and get a trust anchor in unbound, the others are served unsigned and insecure.
    /// `port`: unbound's port when the caller chose it already (it went into a config file).
    public init(zones: [String: [String]], signed: Set<String>, port: Int? = nil, timeout: TimeInterval = 20) throws {
        guard let tools = Self.tools() else { throw ToolRunner.Failure(description: "nsd, unbound or ldnsutils missing") }
        guard let nsdPort = UnboundProcess.freePort(), let port = port ?? UnboundProcess.freePort(), nsdPort != port else {
            throw ToolRunner.Failure(description: "no free port")
        }
        self.nsdPort = nsdPort
        self.port = port
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-dnssec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)

        var nsdConf = [
            "server:",
            "  ip-address: 127.0.0.1",
            "  port: \(nsdPort)",
            "  do-ip6: no",
            "  username: \"\"",
            "  chroot: \"\"",
            "  zonesdir: \"\(directory.path)\"",
            "  pidfile: \"\(directory.path)/nsd.pid\"",
            "  xfrdfile: \"\(directory.path)/xfrd.state\"",
            "  xfrdir: \"\(directory.path)\"",
            "  zonelistfile: \"\(directory.path)/zone.list\"",
            "  database: \"\"",
            "  verbosity: 2",
            "  server-count: 1",
            "remote-control:",
            "  control-enable: no",
        ]
        var anchors: [String] = []
        for (zone, records) in zones.sorted(by: { $0.key < $1.key }) {
            let file = "\(zone).zone"
            let text = ([
                "$TTL 300",
                "\(zone). 300 IN SOA ns.\(zone). hostmaster.\(zone). 1 3600 600 86400 60",
                "\(zone). 300 IN NS ns.\(zone).",
                "ns.\(zone). 300 IN A 127.0.0.1",
            ] + records).joined(separator: "\n") + "\n"
            try text.write(to: directory.appendingPathComponent(file), atomically: true, encoding: .utf8)
            var served = file
            if signed.contains(zone) {
                // One key with the SEP flag (-k) signs everything: enough for a test zone.
                let base = try ToolRunner.run(tools.keygen, ["-a", "ECDSAP256SHA256", "-k", zone], in: directory)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                try ToolRunner.run(tools.signzone, [file, base], in: directory)
                served = file + ".signed"
                let key = try String(contentsOf: directory.appendingPathComponent(base + ".key"), encoding: .utf8)
                    .split(separator: "\n").first { !$0.hasPrefix(";") && $0.contains("DNSKEY") }
                // "zone.\tIN\tDNSKEY\t257 3 13 … ;{id = …}": the comment goes, the record is the anchor.
                if let key, let record = key.split(separator: ";").first {
                    anchors.append(record.replacingOccurrences(of: "\t", with: " ").trimmingCharacters(in: .whitespaces))
                }
            }
            nsdConf += ["zone:", "  name: \"\(zone)\"", "  zonefile: \"\(served)\""]
        }
        let nsdConfURL = directory.appendingPathComponent("nsd.conf")
        try (nsdConf.joined(separator: "\n") + "\n").write(to: nsdConfURL, atomically: true, encoding: .utf8)
        nsd = try ToolRunner.start(tools.nsd, ["-d", "-c", nsdConfURL.path], log: directory.appendingPathComponent("nsd.log"),
                                   timeout: timeout) { $0.contains("nsd started") }

        var unboundConf = [
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
            "  module-config: \"validator iterator\"",
            "  do-not-query-localhost: no",
            "  qname-minimisation: no",
            "  harden-referral-path: no",
            "  val-log-level: 2",
            // Nothing outside the test zones: no root to ask on a machine without network.
            "  local-zone: \".\" refuse",
            "  local-zone: \"127.in-addr.arpa.\" nodefault",
        ]
        for zone in zones.keys.sorted() { unboundConf.append("  local-zone: \"\(zone).\" transparent") }
        for anchor in anchors { unboundConf.append("  trust-anchor: \"\(anchor)\"") }
        for zone in zones.keys.sorted() where !signed.contains(zone) { unboundConf.append("  domain-insecure: \"\(zone)\"") }
        for zone in zones.keys.sorted() {
            unboundConf += ["stub-zone:", "  name: \"\(zone)\"", "  stub-addr: 127.0.0.1@\(nsdPort)"]
        }
        unboundConf += ["remote-control:", "  control-enable: no", ""]
        let unboundConfURL = directory.appendingPathComponent("unbound.conf")
        try unboundConf.joined(separator: "\n").write(to: unboundConfURL, atomically: true, encoding: .utf8)
        do {
            unbound = try ToolRunner.start(tools.unbound, ["-d", "-c", unboundConfURL.path],
                                           log: directory.appendingPathComponent("unbound.log"), timeout: timeout) {
                $0.contains("start of service")
            }
        } catch {
            nsd.terminate()
            nsd.waitUntilExit()
            throw error
        }
    }

    /// The logs of both servers, for a failing test's message.
    public var logs: String {
        ["nsd.log", "unbound.log"].map { name in
            "\(name):\n" + ((try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)) ?? "").suffix(3000)
        }.joined(separator: "\n")
    }

    public func stop() {
        for process in [unbound, nsd] where process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit {
        for process in [unbound, nsd] where process.isRunning { process.terminate() }
    }
}
