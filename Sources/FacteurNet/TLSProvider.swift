// TLS contexts for every listener: one default certificate, plus per-domain certificates
// picked by SNI (RFC 6066 §3). On a first start without certificates, a self-signed one is
// generated so that STARTTLS (RFC 3207) and implicit TLS (RFC 8314) work out of the box.
//
// The provider is a reloadable holder: listeners ask it for the *current* context for each new
// connection, so a renewed certificate is served without a restart. The files stay the source
// of truth: `reload()` re-reads them (the ACME client calls it after writing new ones, SIGHUP
// calls it too), and `startWatching` polls their size and modification time. A reload that
// fails keeps the previous context. Policy (RFC 8996, RFC 9325 §4): TLS 1.2 at least, 1.3
// preferred, ECDHE + AEAD suites only, and every private key must match its certificate.

import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SwiftASN1
import X509

public struct CertificateFiles: Sendable, Equatable {
    public var certificatePath: String
    public var keyPath: String
    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}

public enum TLSProviderError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    /// The private key's public half is not the certificate's public key.
    case keyMismatch(keyPath: String, certificatePath: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "\(path): \(reason)"
        case .keyMismatch(let keyPath, let certificatePath): return "\(keyPath) does not match \(certificatePath)"
        }
    }
}

/// Anything that can hand a listener the server context for a new connection. `TLSProvider`
/// (reloadable) and a fixed `NIOSSLContext` (tests) both are.
public protocol TLSContextSource: Sendable {
    /// The context to use for a connection starting now; read it once per connection.
    var currentContext: NIOSSLContext { get }
    /// TLS-ALPN-01 challenge certificates to answer with (RFC 8737), if any.
    var acmeChallenges: ACMEChallengeCertificates? { get }
}

extension NIOSSLContext: TLSContextSource {
    public var currentContext: NIOSSLContext { self }
    public var acmeChallenges: ACMEChallengeCertificates? { nil }
}

/// The server TLS policy shared by every listener.
public enum TLSPolicy {
    /// TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only (RFC 9325 §4.2). TLS 1.3 suites are
    /// all AEAD and fixed by BoringSSL.
    public static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// A server configuration with our policy: TLS 1.2 minimum (RFC 8996 deprecates 1.0 and 1.1),
    /// 1.3 maximum (BoringSSL then prefers 1.3), modern 1.2 suites.
    public static func serverConfiguration(certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificateChain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        configuration.cipherSuites = tls12CipherSuites
        return configuration
    }
}

/// A loaded certificate chain and its private key, checked to belong together.
public struct CertificateAndKey: Sendable {
    public let chain: [NIOSSLCertificate]
    public let key: NIOSSLPrivateKey

    /// Parses PEM text. `certificateName`/`keyName` are used in error messages (usually file paths).
    public init(certificateChainPEM: [UInt8], privateKeyPEM: [UInt8], certificateName: String, keyName: String) throws {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(certificateChainPEM)
        } catch {
            throw TLSProviderError.unreadable(path: certificateName, reason: "not a PEM certificate chain (\(error))")
        }
        guard let leaf = certificates.first else {
            throw TLSProviderError.unreadable(path: certificateName, reason: "no certificate in file")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: privateKeyPEM, format: .pem)
        } catch {
            throw TLSProviderError.unreadable(path: keyName, reason: "not a PEM private key (\(error))")
        }
        try Self.checkKeyMatches(leaf: leaf, keyPEM: privateKeyPEM, certificateName: certificateName, keyName: keyName)
        self.chain = certificates
        self.key = key
    }

    /// Loads `files` from disk.
    public init(files: CertificateFiles) throws {
        let certificate = try Self.read(files.certificatePath)
        let key = try Self.read(files.keyPath)
        try self.init(certificateChainPEM: certificate, privateKeyPEM: key,
                      certificateName: files.certificatePath, keyName: files.keyPath)
    }

    private static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TLSProviderError.unreadable(path: path, reason: "cannot read file")
        }
        return Array(data)
    }

    /// Compares the certificate's SubjectPublicKeyInfo with the one derived from the private key;
    /// a mismatch would otherwise only show as failed handshakes.
    static func checkKeyMatches(leaf: NIOSSLCertificate, keyPEM: [UInt8], certificateName: String, keyName: String) throws {
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: try leaf.toDERBytes())
        } catch {
            throw TLSProviderError.unreadable(path: certificateName, reason: "cannot parse certificate (\(error))")
        }
        let documents = (try? PEMDocument.parseMultiple(pemString: String(decoding: keyPEM, as: UTF8.self))) ?? []
        // A key file may also carry "EC PARAMETERS"; take the first block that is a key.
        guard let keyDocument = documents.first(where: { $0.discriminator.hasSuffix("PRIVATE KEY") }),
              let privateKey = try? Certificate.PrivateKey(pemDocument: keyDocument)
        else {
            throw TLSProviderError.unreadable(path: keyName, reason: "unsupported private key type (RSA, P-256/384/521 or Ed25519 expected)")
        }
        guard privateKey.publicKey == certificate.publicKey else {
            throw TLSProviderError.keyMismatch(keyPath: keyName, certificatePath: certificateName)
        }
    }
}

/// The reloadable holder of the server `NIOSSLContext` shared by all listeners.
public final class TLSProvider: TLSContextSource, Sendable {
    public let defaultCertificate: CertificateFiles
    public let perDomain: [String: CertificateFiles]
    /// Challenge certificates for TLS-ALPN-01 (RFC 8737), filled by the ACME client.
    public let challenges: ACMEChallengeCertificates
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    private struct State {
        var context: NIOSSLContext
        var fingerprint: [FileStamp]
        var watcher: Task<Void, Never>?
    }

    /// Loads every certificate and key (failing if a key does not match its certificate).
    /// - Parameters:
    ///   - defaultCertificate: served when the client sends no SNI or an unknown name.
    ///   - perDomain: certificates by host name (`mail.example.org`), chosen by SNI.
    public init(defaultCertificate: CertificateFiles, perDomain: [String: CertificateFiles] = [:],
                challenges: ACMEChallengeCertificates = ACMEChallengeCertificates(),
                logger: Logger = Logger(label: "facteur.tls")) throws {
        self.defaultCertificate = defaultCertificate
        self.perDomain = Dictionary(perDomain.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { first, _ in first })
        self.challenges = challenges
        self.logger = logger
        let fingerprint = Self.stamp(defaultCertificate: defaultCertificate, perDomain: self.perDomain)
        let context = try Self.makeContext(defaultCertificate: defaultCertificate, perDomain: self.perDomain)
        self.state = NIOLockedValueBox(State(context: context, fingerprint: fingerprint, watcher: nil))
    }

    /// The context for a new connection; changes after a successful reload.
    public var context: NIOSSLContext { state.withLockedValue { $0.context } }
    public var currentContext: NIOSSLContext { context }
    public var acmeChallenges: ACMEChallengeCertificates? { challenges }

    /// Re-reads every certificate and key file and, if all load and match, serves them to new
    /// connections. On error the current context stays and the error is thrown.
    public func reload() throws {
        let fingerprint = Self.stamp(defaultCertificate: defaultCertificate, perDomain: perDomain)
        do {
            let context = try Self.makeContext(defaultCertificate: defaultCertificate, perDomain: perDomain)
            state.withLockedValue { $0.context = context; $0.fingerprint = fingerprint }
        } catch {
            // Remember the files as seen, so the watcher does not retry (and log) until they change again.
            state.withLockedValue { $0.fingerprint = fingerprint }
            throw error
        }
    }

    /// Reloads and logs the outcome; for SIGHUP and the file watcher.
    public func reloadLogging(reason: String) {
        do {
            try reload()
            logger.notice("TLS certificates reloaded", metadata: ["reason": "\(reason)"])
        } catch {
            logger.error("TLS certificate reload failed, keeping the previous certificates",
                         metadata: ["reason": "\(reason)", "error": "\(error)"])
        }
    }

    /// True when a certificate or key file's size, modification time or inode differs from the
    /// last load (or reload attempt).
    public func filesChanged() -> Bool {
        let now = Self.stamp(defaultCertificate: defaultCertificate, perDomain: perDomain)
        return state.withLockedValue { $0.fingerprint != now }
    }

    /// Polls the files every `interval` and reloads when they change. Cheap: one stat per file.
    public func startWatching(interval: Duration = .seconds(3)) {
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, !Task.isCancelled else { return }
                if self.filesChanged() { self.reloadLogging(reason: "files changed") }
            }
        }
        let previous = state.withLockedValue { state -> Task<Void, Never>? in
            defer { state.watcher = task }
            return state.watcher
        }
        previous?.cancel()
    }

    public func stopWatching() {
        let task = state.withLockedValue { state -> Task<Void, Never>? in
            defer { state.watcher = nil }
            return state.watcher
        }
        task?.cancel()
    }

    deinit {
        state.withLockedValue { $0.watcher?.cancel() }
    }

    private static func makeContext(defaultCertificate: CertificateFiles, perDomain: [String: CertificateFiles]) throws -> NIOSSLContext {
        let main = try CertificateAndKey(files: defaultCertificate)
        var configuration = TLSPolicy.serverConfiguration(certificateChain: main.chain, privateKey: main.key)
        if !perDomain.isEmpty {
            var overrides: [String: NIOSSLContextConfigurationOverride] = [:]
            for (host, files) in perDomain {
                let loaded = try CertificateAndKey(files: files)
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = loaded.chain.map { .certificate($0) }
                override.privateKey = .privateKey(loaded.key)
                overrides[host] = override
            }
            let table = overrides
            // RFC 6066 §3: the name is compared case-insensitively; unknown names get the default.
            configuration.sslContextCallback = { values, promise in
                let name = values.serverHostname?.lowercased() ?? ""
                promise.succeed(table[name] ?? .noChanges)
            }
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// What identifies a file's version without reading it.
    struct FileStamp: Equatable {
        var path: String
        var size: Int64
        var modified: Int64
        var modifiedNanoseconds: Int
        var inode: UInt64
    }

    private static func stamp(defaultCertificate: CertificateFiles, perDomain: [String: CertificateFiles]) -> [FileStamp] {
        var paths = [defaultCertificate.certificatePath, defaultCertificate.keyPath]
        for host in perDomain.keys.sorted() {
            if let files = perDomain[host] { paths += [files.certificatePath, files.keyPath] }
        }
        return paths.map { path in
            var info = stat()
            guard stat(path, &info) == 0 else { return FileStamp(path: path, size: -1, modified: 0, modifiedNanoseconds: 0, inode: 0) }
            return FileStamp(path: path, size: Int64(info.st_size), modified: Int64(info.st_mtim.tv_sec),
                             modifiedNanoseconds: Int(info.st_mtim.tv_nsec), inode: UInt64(info.st_ino))
        }
    }

    /// Writes a self-signed certificate (P-256, one year) for `hostnames` unless both files exist.
    /// Returns true when it generated new files.
    @discardableResult
    public static func ensureSelfSigned(_ files: CertificateFiles, hostnames: [String]) throws -> Bool {
        let fm = FileManager.default
        if fm.fileExists(atPath: files.certificatePath), fm.fileExists(atPath: files.keyPath) { return false }
        let (certificatePEM, keyPEM) = try makeSelfSigned(hostnames: hostnames)
        try writeSecret(keyPEM, to: files.keyPath)
        try Data(certificatePEM.utf8).write(to: URL(fileURLWithPath: files.certificatePath), options: .atomic)
        return true
    }

    /// A self-signed P-256 certificate for `hostnames` (plus 127.0.0.1 and ::1): PEM certificate and key.
    public static func makeSelfSigned(hostnames: [String], validity: TimeInterval = 86_400 * 365) throws -> (certificate: String, key: String) {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(hostnames.first ?? "localhost") }
        var names: [GeneralName] = hostnames.map { .dnsName($0) }
        names.append(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])))
        names.append(.ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])))
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 300, notValidAfter: now + validity,
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(key))
        return (try certificate.serializeAsPEM().pemString + "\n", key.pemRepresentation + "\n")
    }

    private static func writeSecret(_ text: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try Data(text.utf8).write(to: url, options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    }
}
