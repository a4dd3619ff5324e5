// An ACME client (RFC 8555) over async-http-client: directory (§7.1.1), nonces (§7.2, with the
// badNonce retry of §6.5), accounts (§7.3), orders (§7.4), authorizations and challenges
// (§7.5), finalization with a CSR (§7.4) and certificate download (§7.4.2), and ACME Renewal
// Information (RFC 9773). Every response is size-limited: the CA is a network peer like any other.

import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOSSL
import SwiftASN1
import X509

public struct ACMEError: Error, CustomStringConvertible, Sendable {
    /// The problem document's type (RFC 8555 §6.7), e.g. urn:ietf:params:acme:error:badNonce.
    public var type: String?
    public var message: String
    public var description: String { type.map { "\(message) (\($0))" } ?? message }

    init(_ message: String, type: String? = nil) { self.message = message; self.type = type }
}

public struct ACMEClientConfiguration: Sendable {
    public var directoryURL: String
    /// `mailto:` URLs (RFC 8555 §7.3).
    public var contact: [String]
    /// PEM file of CA certificates to trust for the ACME server's HTTPS (a test CA like
    /// Pebble's); nil: the system's roots.
    public var trustRootsPEMFile: String?
    public var maxResponseBytes = 1 << 20
    public var requestTimeout: TimeAmount = .seconds(30)
    public var connectTimeout: TimeAmount = .seconds(10)
    /// An order never needs more authorizations than this (one per name; refuse a hostile CA's list).
    public var maxAuthorizations = 100
    /// How long an authorization or order may stay pending before we give up.
    public var pollingDeadline: Duration = .seconds(180)

    public init(directoryURL: String, contact: [String] = [], trustRootsPEMFile: String? = nil) {
        self.directoryURL = directoryURL; self.contact = contact; self.trustRootsPEMFile = trustRootsPEMFile
    }
}

/// RFC 8555 §7.1.1; renewalInfo from RFC 9773 §3.
struct ACMEDirectory: Sendable {
    var newNonce: String
    var newAccount: String
    var newOrder: String
    var renewalInfo: String?
}

/// RFC 9773 §4.2.
public struct ACMERenewalInfo: Sendable, Equatable {
    public var windowStart: Date
    public var windowEnd: Date
    /// Retry-After: when to ask again.
    public var retryAfter: TimeInterval?
}

public actor ACMEClient {
    public nonisolated let configuration: ACMEClientConfiguration
    public nonisolated let accountKey: ACMEAccountKey
    private let http: HTTPClient
    private let logger: Logger
    private var directory: ACMEDirectory?
    private var nonce: String?
    public private(set) var accountURL: String?

    public init(configuration: ACMEClientConfiguration, accountKey: ACMEAccountKey, accountURL: String? = nil, logger: Logger) throws {
        self.configuration = configuration
        self.accountKey = accountKey
        self.accountURL = accountURL
        self.logger = logger
        var tls = TLSConfiguration.makeClientConfiguration()
        if let path = configuration.trustRootsPEMFile {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(path))
        }
        var http = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow,
                                            timeout: .init(connect: configuration.connectTimeout, read: configuration.requestTimeout))
        http.connectionPool.idleTimeout = .seconds(10)
        self.http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: http)
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    // MARK: - Directory and nonces

    func loadDirectory() async throws -> ACMEDirectory {
        if let directory { return directory }
        let response = try await send(url: configuration.directoryURL, method: .get, body: nil)
        guard response.status == 200, let json = response.json,
              let newNonce = json["newNonce"] as? String, let newAccount = json["newAccount"] as? String,
              let newOrder = json["newOrder"] as? String else {
            throw ACMEError("directory \(configuration.directoryURL): unexpected answer (HTTP \(response.status))")
        }
        let loaded = ACMEDirectory(newNonce: newNonce, newAccount: newAccount, newOrder: newOrder,
                                   renewalInfo: json["renewalInfo"] as? String)
        directory = loaded
        return loaded
    }

    /// Whether the CA offers ARI (RFC 9773 §3).
    public func supportsRenewalInfo() async throws -> Bool { try await loadDirectory().renewalInfo != nil }

    private func freshNonce() async throws -> String {
        if let nonce {
            self.nonce = nil
            return nonce
        }
        _ = try await send(url: try await loadDirectory().newNonce, method: .head, body: nil)
        guard let nonce = self.nonce else { throw ACMEError("newNonce gave no Replay-Nonce") }
        self.nonce = nil
        return nonce
    }

    // MARK: - Accounts (§7.3)

    /// newAccount with termsOfServiceAgreed; the CA returns the existing account for a known key
    /// (§7.3.1), so this is also how an account URL is recovered.
    @discardableResult
    public func registerAccount() async throws -> String {
        var payload: [String: Any] = ["termsOfServiceAgreed": true]
        if !configuration.contact.isEmpty { payload["contact"] = configuration.contact }
        let response = try await post(try await loadDirectory().newAccount, payload: payload, useJWK: true)
        guard response.status == 200 || response.status == 201, let location = response.location else {
            throw problem(response, "newAccount")
        }
        accountURL = location
        return location
    }

    // MARK: - Orders (§7.4)

    public struct Order: Sendable {
        public var url: String
        public var status: String
        public var authorizations: [String]
        public var finalize: String
        public var certificate: String?
    }

    public struct Authorization: Sendable {
        public struct Challenge: Sendable {
            public var type: String
            public var url: String
            public var token: String
            public var status: String
        }
        public var identifier: String
        public var status: String
        public var challenges: [Challenge]
    }

    /// - Parameter replaces: the ARI certID of the certificate this order renews (RFC 9773 §5).
    public func newOrder(domains: [String], replaces: String? = nil) async throws -> Order {
        var payload: [String: Any] = ["identifiers": domains.map { ["type": "dns", "value": $0] }]
        if let replaces, try await supportsRenewalInfo() { payload["replaces"] = replaces }
        let response = try await post(try await loadDirectory().newOrder, payload: payload)
        guard response.status == 201, let location = response.location else {
            throw problem(response, "newOrder")
        }
        return try Self.order(url: location, response)
    }

    public func fetchOrder(_ url: String) async throws -> Order {
        let response = try await post(url, payload: nil)
        guard response.status == 200 else { throw problem(response, "order") }
        return try Self.order(url: url, response)
    }

    private static func order(url: String, _ response: Response) throws -> Order {
        guard let json = response.json, let status = json["status"] as? String,
              let authorizations = json["authorizations"] as? [String], let finalize = json["finalize"] as? String else {
            throw ACMEError("order: malformed JSON")
        }
        return Order(url: url, status: status, authorizations: authorizations, finalize: finalize,
                     certificate: json["certificate"] as? String)
    }

    public func fetchAuthorization(_ url: String) async throws -> (Authorization, retryAfter: TimeInterval?) {
        let response = try await post(url, payload: nil)
        guard response.status == 200, let json = response.json, let status = json["status"] as? String,
              let identifier = (json["identifier"] as? [String: Any])?["value"] as? String else {
            throw problem(response, "authorization")
        }
        let challenges = (json["challenges"] as? [[String: Any]] ?? []).compactMap { entry -> Authorization.Challenge? in
            guard let type = entry["type"] as? String, let url = entry["url"] as? String else { return nil }
            return .init(type: type, url: url, token: entry["token"] as? String ?? "", status: entry["status"] as? String ?? "")
        }
        return (Authorization(identifier: identifier, status: status, challenges: challenges), response.retryAfter)
    }

    /// §7.5.1: the client tells the server it is ready by POSTing an empty object.
    public func respond(to challenge: Authorization.Challenge) async throws {
        let response = try await post(challenge.url, payload: [String: Any]())
        guard response.status == 200 else { throw problem(response, "challenge \(challenge.type)") }
    }

    /// Polls until the authorization leaves "pending" (§7.5.1), honouring Retry-After.
    public func waitForAuthorization(_ url: String) async throws -> Authorization {
        let deadline = ContinuousClock.now + configuration.pollingDeadline
        while true {
            let (authorization, retryAfter) = try await fetchAuthorization(url)
            if authorization.status != "pending" && authorization.status != "processing" { return authorization }
            try await pause(retryAfter, deadline: deadline, what: "authorization \(authorization.identifier)")
        }
    }

    /// §7.4: finalize with a CSR, then poll until the order is valid.
    public func finalize(_ order: Order, csrDER: [UInt8]) async throws -> Order {
        let response = try await post(order.finalize, payload: ["csr": Base64URL.encode(csrDER)])
        guard response.status == 200 else { throw problem(response, "finalize") }
        var current = try Self.order(url: order.url, response)
        let deadline = ContinuousClock.now + configuration.pollingDeadline
        while current.status == "processing" || current.status == "ready" {
            try await pause(response.retryAfter, deadline: deadline, what: "order")
            current = try await fetchOrder(order.url)
        }
        guard current.status == "valid", current.certificate != nil else {
            throw ACMEError("order ended \(current.status)")
        }
        return current
    }

    /// §7.4.2: the PEM chain, leaf first.
    public func downloadCertificate(_ url: String) async throws -> String {
        let response = try await post(url, payload: nil, accept: "application/pem-certificate-chain")
        guard response.status == 200, let text = String(data: response.body, encoding: .utf8),
              text.contains("-----BEGIN CERTIFICATE-----") else {
            throw problem(response, "certificate download")
        }
        return text
    }

    // MARK: - ARI (RFC 9773)

    /// RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial number DER content).
    public static func renewalCertID(_ certificate: Certificate) -> String? {
        guard let aki = try? certificate.extensions.authorityKeyIdentifier, let keyID = aki.keyIdentifier else { return nil }
        // The DER INTEGER's content octets: a serial whose top bit is set gets its leading zero
        // back (swift-certificates keeps the magnitude only).
        var serial = Array(certificate.serialNumber.bytes)
        if let first = serial.first, first & 0x80 != 0 { serial.insert(0, at: 0) }
        return "\(Base64URL.encode(keyID)).\(Base64URL.encode(serial))"
    }

    /// RFC 9773 §4.2: an unauthenticated GET of <renewalInfo>/<certID>.
    public func renewalInfo(for certificate: Certificate) async throws -> ACMERenewalInfo? {
        guard let base = try await loadDirectory().renewalInfo, let certID = Self.renewalCertID(certificate) else { return nil }
        let url = base.hasSuffix("/") ? base + certID : base + "/" + certID
        let response = try await send(url: url, method: .get, body: nil)
        guard response.status == 200, let json = response.json,
              let window = json["suggestedWindow"] as? [String: Any],
              let start = (window["start"] as? String).flatMap(Self.parseDate),
              let end = (window["end"] as? String).flatMap(Self.parseDate), end >= start else {
            throw ACMEError("renewalInfo: HTTP \(response.status) or malformed window")
        }
        return ACMERenewalInfo(windowStart: start, windowEnd: end, retryAfter: response.retryAfter)
    }

    static func parseDate(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    // MARK: - Transport

    struct Response {
        var status: Int
        var location: String?
        var retryAfterValue: String?
        var body: Data
        var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
        /// Retry-After in seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP date).
        var retryAfter: TimeInterval? {
            guard let value = retryAfterValue else { return nil }
            if let seconds = Int(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 { return TimeInterval(seconds) }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
            return formatter.date(from: value).map { max(0, $0.timeIntervalSinceNow) }
        }
    }

    /// A JWS-signed POST (§6.2), retried on badNonce (§6.5: the error carries a fresh nonce).
    /// `payload` nil is POST-as-GET (§6.3).
    private func post(_ url: String, payload: Any?, useJWK: Bool = false, accept: String? = nil) async throws -> Response {
        let body = try payload.map { try JSONSerialization.data(withJSONObject: $0, options: [.withoutEscapingSlashes]) }
        guard useJWK || accountURL != nil else { throw ACMEError("no account yet (call registerAccount first)") }
        var attempt = 0
        while true {
            attempt += 1
            let jws = try accountKey.sign(url: url, nonce: try await freshNonce(), kid: useJWK ? nil : accountURL, payload: body)
            let response = try await send(url: url, method: .post, body: jws, accept: accept)
            if response.status == 400, attempt < 5,
               (response.json?["type"] as? String) == "urn:ietf:params:acme:error:badNonce" {
                logger.debug("ACME badNonce, retrying", metadata: ["url": "\(url)"])
                continue
            }
            return response
        }
    }

    enum Method { case get, head, post }

    private func send(url: String, method: Method, body: Data?, accept: String? = nil) async throws -> Response {
        var request = HTTPClientRequest(url: url)
        switch method {
        case .get: request.method = .GET
        case .head: request.method = .HEAD
        case .post: request.method = .POST
        }
        request.headers.add(name: "User-Agent", value: "Facteur-ACME/1")
        if let accept { request.headers.add(name: "Accept", value: accept) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/jose+json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await http.execute(request, timeout: configuration.requestTimeout)
        if let nonce = response.headers.first(name: "replay-nonce"), nonce.utf8.count <= 512 { self.nonce = nonce }
        let data: Data
        do {
            data = Data(try await response.body.collect(upTo: configuration.maxResponseBytes).readableBytesView)
        } catch {
            throw ACMEError("\(url): response larger than \(configuration.maxResponseBytes) bytes or broken (\(error))")
        }
        return Response(status: Int(response.status.code), location: response.headers.first(name: "location"),
                        retryAfterValue: response.headers.first(name: "retry-after"), body: data)
    }

    private func problem(_ response: Response, _ what: String) -> ACMEError {
        let json = response.json
        let detail = (json?["detail"] as? String).map { String($0.prefix(500)) } ?? "HTTP \(response.status)"
        return ACMEError("\(what): \(detail)", type: json?["type"] as? String)
    }

    private func pause(_ retryAfter: TimeInterval?, deadline: ContinuousClock.Instant, what: String) async throws {
        guard ContinuousClock.now < deadline else { throw ACMEError("\(what): still pending after \(configuration.pollingDeadline)") }
        // Retry-After is honoured, within reason: a hostile value must not park us for days.
        let seconds = min(max(retryAfter ?? 1, 0.5), 30)
        try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
    }
}
