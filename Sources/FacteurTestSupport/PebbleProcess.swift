// PebbleProcess: Let's Encrypt's ACME test server (RFC 8555), Debian's `pebble`, on loopback for
// the end-to-end tests. Its own HTTPS (the directory, RFC 8555 §7.1.1) uses a certificate of a
// throw-away TestCertificateAuthority; it resolves names through the test's unbound and validates
// HTTP-01 on `httpPort` and TLS-ALPN-01 (RFC 8737) on `tlsPort` of whatever address they resolve to.
// The root that issues the certificates is Pebble's own, made at start: `issuingRoot()` fetches it.

import Foundation

public final class PebbleProcess: @unchecked Sendable {
    /// The ACME directory URL, for `[acme] directory`.
    public let directoryURL: String
    /// The CA of Pebble's own HTTPS certificate, for `[acme] trust_roots`.
    public let trustRoots: String
    public let managementPort: Int
    public let logURL: URL
    let process: Process
    let curl: String?

    public static func executable() -> String? { ToolRunner.find(["/usr/bin/pebble", "/usr/local/bin/pebble"]) }

    /// Starts pebble in `directory`; returns once its directory port accepts connections.
    public init(executable: String, directory: URL, dnsPort: Int, httpPort: Int, tlsPort: Int,
                timeout: TimeInterval = 20) throws {
        guard let acmePort = UnboundProcess.freePort(), let managementPort = UnboundProcess.freePort() else {
            throw ToolRunner.Failure(description: "no free port for pebble")
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ca = try TestCertificateAuthority(directory: directory.appendingPathComponent("wfe-ca"))
        let wfe = try ca.issue(["localhost"], file: "wfe")
        let config = directory.appendingPathComponent("pebble.json")
        try JSONSerialization.data(withJSONObject: ["pebble": [
            "listenAddress": "127.0.0.1:\(acmePort)", "managementListenAddress": "127.0.0.1:\(managementPort)",
            "certificate": wfe.certificate, "privateKey": wfe.key, "httpPort": httpPort, "tlsPort": tlsPort,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        ]]).write(to: config)
        directoryURL = "https://localhost:\(acmePort)/dir"
        trustRoots = ca.certificatePath
        self.managementPort = managementPort
        curl = ToolRunner.find(["/usr/bin/curl", "/usr/local/bin/curl"])
        logURL = directory.appendingPathComponent("pebble.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-config", config.path, "-dnsserver", "127.0.0.1:\(dnsPort)"]
        var environment = ProcessInfo.processInfo.environment
        // Validate at once instead of after Pebble's random sleep of up to 15 s.
        environment["PEBBLE_VA_NOSLEEP"] = "1"
        process.environment = environment
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try? log.close()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? LoopbackLineClient(port: acmePort, timeout: 1)) != nil { return }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        stop()
        throw ToolRunner.Failure(description: "pebble did not start: \(self.log.suffix(2000))")
    }

    public var isRunning: Bool { process.isRunning }
    public var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// The PEM of the root that signs issued certificates (Pebble's management API `/roots/0`),
    /// for the relying parties' trust roots (`[delivery] tls_trust_roots`).
    public func issuingRoot() throws -> String {
        guard let curl else { throw ToolRunner.Failure(description: "curl is not installed") }
        let pem = try ToolRunner.run(curl, ["-sS", "--fail", "--cacert", trustRoots, "https://localhost:\(managementPort)/roots/0"],
                                     in: logURL.deletingLastPathComponent())
        guard pem.contains("-----BEGIN CERTIFICATE-----") else {
            throw ToolRunner.Failure(description: "pebble /roots/0 returned no certificate: \(pem.prefix(300))")
        }
        return pem
    }

    public func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { if process.isRunning { process.terminate() } }
}
