// The life of Facteur's ACME certificate (RFC 8555): obtain it for the configured names, keep
// it on disk (DATA/tls/acme/<name>.pem and .key.pem), renew it when ACME Renewal Information
// (RFC 9773) suggests or, without ARI, when a third of its lifetime remains, and tell the TLS
// listeners to reload. The certificate key is kept across renewals so that a DANE TLSA
// "3 1 1" record (RFC 7671 §5.1) stays valid. When the CA is unreachable the existing
// certificate keeps being served and the attempt is retried with backoff.

import Crypto
import FacteurNet
import Foundation
import Logging
import SwiftASN1
import X509

public struct ACMECertificateConfiguration: Sendable {
    public var client: ACMEClientConfiguration
    /// The certificate's names; the first is its subject and its file name.
    public var domains: [String]
    public var challenge: ACMEChallengeType
    /// DATA/acme: account-key.pem (0600) and account.json.
    public var accountDirectory: String
    /// DATA/tls/acme: <name>.pem (chain) and <name>.key.pem.
    public var certificateDirectory: String
    public var retryInitial: Duration = .seconds(60)
    public var retryMaximum: Duration = .seconds(3600)
    /// Even far from renewal, the decision is looked at again this often (ARI windows move).
    public var recheckInterval: Duration = .seconds(6 * 3600)

    public init(client: ACMEClientConfiguration, domains: [String], challenge: ACMEChallengeType,
                accountDirectory: String, certificateDirectory: String) {
        self.client = client; self.domains = domains; self.challenge = challenge
        self.accountDirectory = accountDirectory; self.certificateDirectory = certificateDirectory
    }

    public var name: String { domains.first ?? "certificate" }

    public var files: CertificateFiles {
        CertificateFiles(certificatePath: "\(certificateDirectory)/\(name).pem", keyPath: "\(certificateDirectory)/\(name).key.pem")
    }
}

public actor ACMECertificateService {
    public nonisolated let configuration: ACMECertificateConfiguration
    private let http01: (any HTTP01ChallengeResponder)?
    private let tlsALPN: (any TLSALPNChallengeResponder)?
    private let onCertificate: @Sendable (CertificateFiles) async -> Void
    private let logger: Logger
    private var client: ACMEClient?
    /// RFC 9773 §4.2: the time picked in the suggested window, kept while the window stays.
    private var ariChoice: (certID: String, info: ACMERenewalInfo, date: Date, nextCheck: Date)?
    /// Issuance attempts that failed since the last success (logs and tests).
    public private(set) var consecutiveFailures = 0

    /// - Parameter onCertificate: called after a new certificate is on disk (the TLS provider's reload).
    public init(configuration: ACMECertificateConfiguration, http01: (any HTTP01ChallengeResponder)?,
                tlsALPN: (any TLSALPNChallengeResponder)?, logger: Logger,
                onCertificate: @escaping @Sendable (CertificateFiles) async -> Void) {
        self.configuration = configuration; self.http01 = http01; self.tlsALPN = tlsALPN
        self.logger = logger; self.onCertificate = onCertificate
    }

    // MARK: - The loop

    /// Runs until cancelled: obtains, waits, renews; failures are logged and retried with backoff.
    public func run() async {
        var backoff = configuration.retryInitial
        while !Task.isCancelled {
            let current = currentCertificate()
            let due = await renewalDate(for: current)
            let wait = due.timeIntervalSinceNow
            if wait > 0 {
                let seconds = min(wait, Double(configuration.recheckInterval.components.seconds))
                try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                continue
            }
            do {
                try await obtain(replacing: current)
                backoff = configuration.retryInitial
                consecutiveFailures = 0
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled { break }
                consecutiveFailures += 1
                logger.error("ACME: could not obtain a certificate; the current one stays in use", metadata: [
                    "domains": "\(configuration.domains.joined(separator: ","))", "error": "\(error)",
                    "retry_in": "\(backoff)",
                ])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, configuration.retryMaximum)
            }
        }
        await client?.shutdown()
        client = nil
    }

    public func shutdown() async {
        await client?.shutdown()
        client = nil
    }

    /// The certificate on disk, if it parses.
    public nonisolated func currentCertificate() -> Certificate? {
        guard let text = try? String(contentsOfFile: configuration.files.certificatePath, encoding: .utf8),
              let first = Self.pemBlocks(text).first else { return nil }
        return try? Certificate(pemEncoded: first)
    }

    /// When to renew `certificate`: now if there is none or it lacks a configured name; ARI's
    /// suggested window when the CA offers one; otherwise when a third of the lifetime remains.
    public func renewalDate(for certificate: Certificate?) async -> Date {
        guard let certificate else { return .distantPast }
        // A self-signed stand-in (written until the CA's first certificate) is replaced at once.
        if certificate.issuer == certificate.subject { return .distantPast }
        let names = Set(((try? certificate.extensions.subjectAlternativeNames) ?? nil)?.compactMap { name -> String? in
            if case .dnsName(let dns) = name { return dns.lowercased() } else { return nil }
        } ?? [])
        if !Set(configuration.domains.map { $0.lowercased() }).isSubset(of: names) { return .distantPast }
        if let date = await ariRenewalDate(for: certificate) { return date }
        let lifetime = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        return certificate.notValidAfter.addingTimeInterval(-lifetime / 3)
    }

    private func ariRenewalDate(for certificate: Certificate) async -> Date? {
        guard let certID = ACMEClient.renewalCertID(certificate) else { return nil }
        if let choice = ariChoice, choice.certID == certID, Date() < choice.nextCheck { return choice.date }
        do {
            let client = try makeClient()
            guard let info = try await client.renewalInfo(for: certificate) else { return nil }
            var date = ariChoice.flatMap { $0.certID == certID && $0.info.windowStart == info.windowStart && $0.info.windowEnd == info.windowEnd ? $0.date : nil }
            if date == nil {
                let span = info.windowEnd.timeIntervalSince(info.windowStart)
                date = info.windowStart.addingTimeInterval(span > 0 ? Double.random(in: 0...span) : 0)
            }
            // §4.3: ask again after Retry-After (bounded: at least a minute, at most a day).
            let retry = min(max(info.retryAfter ?? 21_600, 60), 86_400)
            ariChoice = (certID, info, date ?? info.windowStart, Date().addingTimeInterval(retry))
            return date
        } catch {
            logger.warning("ACME: renewal information unavailable", metadata: ["error": "\(error)"])
            return nil
        }
    }

    // MARK: - One issuance

    /// Orders a certificate for the configured names and installs it. `replacing`: the
    /// certificate it renews (RFC 9773 §5 "replaces").
    public func obtain(replacing current: Certificate? = nil) async throws {
        let client = try makeClient()
        let url = try await client.registerAccount()
        try saveAccount(url: url)
        let domains = configuration.domains
        var order = try await client.newOrder(domains: domains, replaces: current.flatMap(ACMEClient.renewalCertID))
        logger.info("ACME: order placed", metadata: ["domains": "\(domains.joined(separator: ","))", "status": "\(order.status)"])
        guard order.authorizations.count <= min(configuration.client.maxAuthorizations, domains.count) else {
            throw ACMEError("the CA asks for \(order.authorizations.count) authorizations for \(domains.count) names")
        }
        for authorizationURL in order.authorizations {
            try await authorize(authorizationURL, client: client)
        }
        let deadline = ContinuousClock.now + configuration.client.pollingDeadline
        order = try await client.fetchOrder(order.url)
        while order.status == "pending", ContinuousClock.now < deadline {
            try await Task.sleep(for: .seconds(1))
            order = try await client.fetchOrder(order.url)
        }
        guard order.status == "ready" || order.status == "valid" else { throw ACMEError("order is \(order.status), not ready") }

        let key = try certificateKey()
        if order.status == "ready" {
            order = try await client.finalize(order, csrDER: try Self.csr(domains: domains, key: key))
        }
        guard let certificateURL = order.certificate else { throw ACMEError("valid order without certificate URL") }
        let chain = try await client.downloadCertificate(certificateURL)
        guard let leafPEM = Self.pemBlocks(chain).first, let leaf = try? Certificate(pemEncoded: leafPEM),
              leaf.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw ACMEError("the CA returned a certificate that is not for our key")
        }
        try FileManager.default.createDirectory(atPath: configuration.certificateDirectory, withIntermediateDirectories: true)
        try Self.writeAtomically(chain, to: configuration.files.certificatePath, mode: 0o644)
        ariChoice = nil
        logger.notice("ACME: certificate installed", metadata: [
            "path": "\(configuration.files.certificatePath)", "serial": "\(leaf.serialNumber)",
            "not_after": "\(leaf.notValidAfter)",
        ])
        await onCertificate(configuration.files)
    }

    private func authorize(_ url: String, client: ACMEClient) async throws {
        let (authorization, _) = try await client.fetchAuthorization(url)
        if authorization.status == "valid" { return }
        guard authorization.status == "pending" else {
            throw ACMEError("authorization for \(authorization.identifier) is \(authorization.status)")
        }
        let wanted = configuration.challenge.rawValue
        guard let challenge = authorization.challenges.first(where: { $0.type == wanted }) else {
            throw ACMEError("the CA offers no \(wanted) challenge for \(authorization.identifier)")
        }
        let keyAuthorization = client.accountKey.keyAuthorization(token: challenge.token)
        let host = authorization.identifier
        switch configuration.challenge {
        case .http01:
            guard let http01 else { throw ACMEError("no HTTP listener to answer http-01") }
            http01.install(token: challenge.token, keyAuthorization: keyAuthorization)
        case .tlsALPN01:
            guard let tlsALPN else { throw ACMEError("no TLS listener to answer tls-alpn-01") }
            let (certificatePEM, keyPEM) = try TLSALPNChallenge.certificate(host: host, keyAuthorization: keyAuthorization)
            tlsALPN.install(host: host, certificateChainPEM: certificatePEM, privateKeyPEM: keyPEM)
        }
        defer {
            switch configuration.challenge {
            case .http01: http01?.remove(token: challenge.token)
            case .tlsALPN01: tlsALPN?.remove(host: host)
            }
        }
        try await client.respond(to: challenge)
        let final = try await client.waitForAuthorization(url)
        guard final.status == "valid" else {
            throw ACMEError("\(wanted) validation of \(host) failed: authorization \(final.status)")
        }
        logger.info("ACME: authorization valid", metadata: ["identifier": "\(host)", "challenge": "\(wanted)"])
    }

    // MARK: - Keys and files

    private func makeClient() throws -> ACMEClient {
        if let client { return client }
        let made = try ACMEClient(configuration: configuration.client, accountKey: try accountKey(),
                                  accountURL: loadAccountURL(), logger: logger)
        client = made
        return made
    }

    private func accountKey() throws -> ACMEAccountKey {
        let path = "\(configuration.accountDirectory)/account-key.pem"
        if let pem = try? String(contentsOfFile: path, encoding: .utf8) { return try ACMEAccountKey(pem: pem) }
        try FileManager.default.createDirectory(atPath: configuration.accountDirectory, withIntermediateDirectories: true)
        let key = ACMEAccountKey()
        try Self.writeAtomically(key.pem + "\n", to: path, mode: 0o600)
        return key
    }

    private func loadAccountURL() -> String? {
        let path = "\(configuration.accountDirectory)/account.json"
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              json["directory"] as? String == configuration.client.directoryURL else { return nil }
        return json["account"] as? String
    }

    private func saveAccount(url: String) throws {
        let json: [String: Any] = ["directory": configuration.client.directoryURL, "account": url]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes])
        try Self.writeAtomically(String(decoding: data, as: UTF8.self) + "\n", to: "\(configuration.accountDirectory)/account.json", mode: 0o600)
    }

    /// The certificate key: made once, then reused by every renewal (DANE TLSA 3 1 1).
    private func certificateKey() throws -> P256.Signing.PrivateKey {
        let path = configuration.files.keyPath
        if let pem = try? String(contentsOfFile: path, encoding: .utf8) { return try P256.Signing.PrivateKey(pemRepresentation: pem) }
        try FileManager.default.createDirectory(atPath: configuration.certificateDirectory, withIntermediateDirectories: true)
        let key = P256.Signing.PrivateKey()
        try Self.writeAtomically(key.pemRepresentation + "\n", to: path, mode: 0o600)
        return key
    }

    /// RFC 8555 §7.4: a PKCS#10 request whose SANs are the order's identifiers.
    static func csr(domains: [String], key: P256.Signing.PrivateKey) throws -> [UInt8] {
        let extensions = try Certificate.Extensions { SubjectAlternativeNames(domains.map { .dnsName($0) }) }
        let request = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(domains.first ?? "") },
            privateKey: .init(key),
            attributes: CertificateSigningRequest.Attributes([try CertificateSigningRequest.Attribute(ExtensionRequest(extensions: extensions))]),
            signatureAlgorithm: .ecdsaWithSHA256)
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        return serializer.serializedBytes
    }

    /// Written to a temporary file in the same folder, then renamed: a reader (the TLS reload)
    /// sees the old file or the new one, never half of one.
    static func writeAtomically(_ text: String, to path: String, mode: Int) throws {
        let temporary = "\(path).tmp-\(UUID().uuidString.prefix(8))"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
            throw ACMEError("cannot write \(temporary)")
        }
        if rename(temporary, path) != 0 {
            try? FileManager.default.removeItem(atPath: temporary)
            throw ACMEError("cannot rename \(temporary) to \(path)")
        }
    }

    static func pemBlocks(_ text: String) -> [String] {
        var blocks: [String] = []
        var current: [Substring] = []
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed == "-----BEGIN CERTIFICATE-----" { current = [line] } else if !current.isEmpty { current.append(line) }
            if trimmed == "-----END CERTIFICATE-----", !current.isEmpty {
                blocks.append(current.joined(separator: "\n"))
                current = []
            }
            if blocks.count >= 10 { break }
        }
        return blocks
    }
}
