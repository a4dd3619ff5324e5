// TLS contexts for every listener: one default certificate, plus per-domain certificates
// picked by SNI (RFC 6066 §3). On a first start without certificates, a self-signed one is
// generated so that STARTTLS and implicit TLS work out of the box.

import Crypto
import Foundation
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

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "\(path): \(reason)"
        }
    }
}

/// Builds the server `NIOSSLContext` shared by all listeners.
public struct TLSProvider: Sendable {
    public let context: NIOSSLContext

    /// - Parameters:
    ///   - defaultCertificate: served when the client sends no SNI or an unknown name.
    ///   - perDomain: certificates by lowercase host name (`mail.example.org`), chosen by SNI.
    public init(defaultCertificate: CertificateFiles, perDomain: [String: CertificateFiles] = [:]) throws {
        let (chain, key) = try Self.load(defaultCertificate)
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: key)
        configuration.minimumTLSVersion = .tlsv12
        if !perDomain.isEmpty {
            var overrides: [String: NIOSSLContextConfigurationOverride] = [:]
            for (host, files) in perDomain {
                let (chain, key) = try Self.load(files)
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = chain
                override.privateKey = key
                overrides[host.lowercased()] = override
            }
            let table = overrides
            configuration.sslContextCallback = { values, promise in
                let name = values.serverHostname?.lowercased() ?? ""
                promise.succeed(table[name] ?? .noChanges)
            }
        }
        self.context = try NIOSSLContext(configuration: configuration)
    }

    private static func load(_ files: CertificateFiles) throws -> ([NIOSSLCertificateSource], NIOSSLPrivateKeySource) {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(files.certificatePath)
        } catch {
            throw TLSProviderError.unreadable(path: files.certificatePath, reason: "not a PEM certificate chain (\(error))")
        }
        guard !certificates.isEmpty else {
            throw TLSProviderError.unreadable(path: files.certificatePath, reason: "no certificate in file")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.keyPath, format: .pem)
        } catch {
            throw TLSProviderError.unreadable(path: files.keyPath, reason: "not a PEM private key (\(error))")
        }
        return (certificates.map { .certificate($0) }, .privateKey(key))
    }

    /// Writes a self-signed certificate (P-256, one year) for `hostnames` unless both files exist.
    /// Returns true when it generated new files.
    @discardableResult
    public static func ensureSelfSigned(_ files: CertificateFiles, hostnames: [String]) throws -> Bool {
        let fm = FileManager.default
        if fm.fileExists(atPath: files.certificatePath), fm.fileExists(atPath: files.keyPath) { return false }
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(hostnames.first ?? "localhost") }
        var names: [GeneralName] = hostnames.map { .dnsName($0) }
        names.append(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])))
        names.append(.ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])))
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 300, notValidAfter: now + 86_400 * 365,
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(key))
        let certificatePEM = try certificate.serializeAsPEM().pemString + "\n"
        try writeSecret(key.pemRepresentation + "\n", to: files.keyPath)
        try Data(certificatePEM.utf8).write(to: URL(fileURLWithPath: files.certificatePath), options: .atomic)
        return true
    }

    private static func writeSecret(_ text: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try Data(text.utf8).write(to: url, options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    }
}
