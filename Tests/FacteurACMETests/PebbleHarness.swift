// Runs a real Pebble (the ACME test CA, Debian package `pebble`) on loopback, resolving the
// test names through a real unbound, with a throw-away CA for Pebble's own HTTPS.

import Crypto
import FacteurTestSupport
import Foundation
import SwiftASN1
import X509
import XCTest

final class PebbleProcess {
    let directory: URL
    let acmePort: Int
    let httpPort: Int
    let tlsPort: Int
    let trustRootsPath: String
    private let process: Process
    private let unbound: UnboundProcess

    var directoryURL: String { "https://localhost:\(acmePort)/dir" }

    /// `names`: host names that resolve to 127.0.0.1 (all under one zone).
    init(zone: String, names: [String], httpPort: Int, tlsPort: Int) throws {
        guard let pebble = ["/usr/bin/pebble"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("pebble is not installed (apt-get install pebble)")
        }
        guard let unboundPath = UnboundProcess.executable() else { throw XCTSkip("unbound is not installed") }
        guard let dnsPort = UnboundProcess.freePort(), let acmePort = UnboundProcess.freePort(),
              let managementPort = UnboundProcess.freePort() else { throw XCTSkip("no free port") }
        self.acmePort = acmePort
        self.httpPort = httpPort
        self.tlsPort = tlsPort
        unbound = try UnboundProcess(executable: unboundPath, port: dnsPort,
                                     zones: [zone: names.map { "\($0). 60 IN A 127.0.0.1" }])
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-pebble-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Pebble's own HTTPS certificate, from a CA that only this test trusts.
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("Facteur test CA for Pebble") }
        let now = Date()
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey), notValidBefore: now - 300,
            notValidAfter: now + 86_400, issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true))
                SubjectKeyIdentifier(hash: .init(caKey.publicKey))
            }, issuerPrivateKey: .init(caKey))
        let leafKey = P256.Signing.PrivateKey()
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(leafKey.publicKey), notValidBefore: now - 300,
            notValidAfter: now + 86_400, issuer: caName, subject: try DistinguishedName { CommonName("localhost") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
            }, issuerPrivateKey: .init(caKey))
        trustRootsPath = directory.appendingPathComponent("ca.pem").path
        try (try ca.serializeAsPEM().pemString + "\n").write(toFile: trustRootsPath, atomically: true, encoding: .utf8)
        let certPath = directory.appendingPathComponent("wfe-cert.pem").path
        let keyPath = directory.appendingPathComponent("wfe-key.pem").path
        try (try leaf.serializeAsPEM().pemString + "\n").write(toFile: certPath, atomically: true, encoding: .utf8)
        try (try leafKey.pemRepresentation + "\n").write(toFile: keyPath, atomically: true, encoding: .utf8)
        let config: [String: Any] = ["pebble": [
            "listenAddress": "127.0.0.1:\(acmePort)", "managementListenAddress": "127.0.0.1:\(managementPort)",
            "certificate": certPath, "privateKey": keyPath, "httpPort": httpPort, "tlsPort": tlsPort,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        ]]
        let configPath = directory.appendingPathComponent("pebble.json").path
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        let logURL = directory.appendingPathComponent("pebble.log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process = Process()
        process.executableURL = URL(fileURLWithPath: pebble)
        process.arguments = ["-config", configPath, "-dnsserver", "127.0.0.1:\(dnsPort)"]
        var environment = ProcessInfo.processInfo.environment
        environment["PEBBLE_VA_NOSLEEP"] = "1"
        // Every order must prove control again: renewals exercise the challenge each time.
        environment["PEBBLE_AUTHZREUSE"] = "0"
        process.environment = environment
        process.standardOutput = log
        process.standardError = log
        process.currentDirectoryURL = directory
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if (try? LoopbackLineClient(port: acmePort, timeout: 1)) != nil { return }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        stop()
        throw XCTSkip("pebble did not start: \(text.suffix(1500))")
    }

    var log: String { (try? String(contentsOf: directory.appendingPathComponent("pebble.log"), encoding: .utf8)) ?? "" }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        unbound.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { if process.isRunning { process.terminate() } }
}
