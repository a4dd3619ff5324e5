// MTA-STS policy discovery (RFC 8461 §3.3, §5.1): the `_mta-sts.<domain>` TXT record, the HTTPS
// fetch of https://mta-sts.<domain>/.well-known/mta-sts.txt (no redirects, WebPKI-valid
// certificate, bounded size and time), and a durable cache kept for each policy's max_age,
// refreshed when the TXT id changes; a failed refresh keeps a still-valid cached policy.

import AsyncHTTPClient
import FacteurDNS
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// What policy discovery came to for one domain.
public enum MTASTSLookup: Sendable, Equatable {
    /// No MTA-STS for the domain (no TXT record and nothing cached, or mode none).
    case none
    case policy(MTASTSPolicy)
    /// The TXT record says there is a policy but it could not be had, and nothing valid is cached:
    /// deliver as if there were none, and report it (RFC 8460 §4.3.2.2).
    case failed(TLSFailureType, String)
}

/// Where the policies come from; the delivery code asks for one domain's at a time.
public protocol MTASTSPolicySource: Sendable {
    func lookup(domain: String) async -> MTASTSLookup
}

public actor MTASTSPolicyCache: MTASTSPolicySource {
    struct Entry: Codable, Sendable {
        var id: String
        var policy: MTASTSPolicy
        var fetched: Date
        var expires: Date { fetched.addingTimeInterval(TimeInterval(policy.maxAge)) }
    }

    public static let maxEntries = 10_000
    let resolver: any DNSResolver
    let group: any EventLoopGroup
    let cacheFile: String?
    let port: Int
    let trustRootsFile: String?
    let logger: Logger
    let clock: @Sendable () -> Date
    let fetchTimeout: TimeAmount
    var entries: [String: Entry] = [:]
    var loaded = false
    /// Fetches under way: lanes to one domain that ask at once share one HTTPS request.
    var inFlight: [String: Task<Result<MTASTSPolicy, FetchFailure>, Never>] = [:]

    /// `cacheFile`: a JSON file (in the data folder) that keeps policies across restarts (§5.1:
    /// a policy is cached for max_age). `port`: 443; tests serve policies elsewhere.
    /// `trustRootsFile`: PEM roots trusted besides the system's.
    public init(resolver: any DNSResolver, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                cacheFile: String?, port: Int = 443, trustRootsFile: String? = nil, fetchTimeout: TimeAmount = .seconds(30),
                logger: Logger = Logger(label: "facteur.mta-sts"), clock: @escaping @Sendable () -> Date = { Date() }) {
        self.resolver = resolver; self.group = group; self.cacheFile = cacheFile; self.port = port
        self.trustRootsFile = trustRootsFile; self.fetchTimeout = fetchTimeout; self.logger = logger; self.clock = clock
    }

    /// §5.1 "Policy Application Control Flow", as far as discovery goes.
    public func lookup(domain rawDomain: String) async -> MTASTSLookup {
        loadIfNeeded()
        let domain = rawDomain.lowercased()
        let now = clock()
        let cached = entries[domain].flatMap { $0.expires > now ? $0 : nil }
        let record: MTASTSRecord?
        do {
            let texts = try await resolver.txt(try DNSName("_mta-sts.\(domain)")).map(\.text)
            record = MTASTSRecord.select(texts)
        } catch {
            // No record, or DNS trouble: a valid cached policy still applies (§5.1).
            return cached.map { Self.applicable($0.policy) } ?? .none
        }
        guard let record else { return cached.map { Self.applicable($0.policy) } ?? .none }
        if let cached, cached.id == record.id { return Self.applicable(cached.policy) }
        let task: Task<Result<MTASTSPolicy, FetchFailure>, Never>
        if let running = inFlight[domain] {
            task = running
        } else {
            task = Task { await self.fetch(domain: domain) }
            inFlight[domain] = task
        }
        let result = await task.value
        inFlight[domain] = nil
        switch result {
        case .success(let policy):
            entries[domain] = Entry(id: record.id, policy: policy, fetched: now)
            save()
            logger.info("MTA-STS policy for \(domain): mode \(policy.mode.rawValue), id \(record.id), max_age \(policy.maxAge)")
            return Self.applicable(policy)
        case .failure(let failure):
            logger.warning("MTA-STS policy fetch for \(domain) failed: \(failure.detail)")
            if let cached { return Self.applicable(cached.policy) }
            return .failed(failure.type, failure.detail)
        }
    }

    static func applicable(_ policy: MTASTSPolicy) -> MTASTSLookup {
        policy.mode == .none ? .none : .policy(policy)
    }

    struct FetchFailure: Error, Sendable {
        var type: TLSFailureType
        var detail: String
    }

    /// §3.3: HTTPS GET of the well-known URL at `mta-sts.<domain>`, the certificate valid for that
    /// name, no redirect followed, 200 with text/plain, at most 64 KiB.
    func fetch(domain: String) async -> Result<MTASTSPolicy, FetchFailure> {
        let host = "mta-sts.\(domain)"
        // The name is resolved with our own resolver (the one MX lookups use), then the HTTP client
        // connects to that address while checking the certificate against the name.
        var address: String?
        if let name = try? DNSName(host) {
            if let v4 = try? await resolver.a(name).first { address = v4.description }
            else if let v6 = try? await resolver.aaaa(name).first { address = v6.description }
        }
        guard let address else {
            return .failure(FetchFailure(type: .stsPolicyFetchError, detail: "\(host) has no address"))
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        if let trustRootsFile { tls.additionalTrustRoots = [.file(trustRootsFile)] }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .seconds(10), read: .seconds(20)))
        configuration.dnsOverride = [host: address]
        let client = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
        defer { Task { try? await client.shutdown() } }
        let url = port == 443 ? "https://\(host)/.well-known/mta-sts.txt" : "https://\(host):\(port)/.well-known/mta-sts.txt"
        do {
            let request = HTTPClientRequest(url: url)
            let response = try await client.execute(request, timeout: fetchTimeout)
            guard response.status == .ok else {
                return .failure(FetchFailure(type: .stsPolicyFetchError, detail: "\(url): HTTP \(response.status.code) (redirects are not followed)"))
            }
            let contentType = response.headers.first(name: "content-type")?.lowercased() ?? ""
            guard contentType.hasPrefix("text/plain") else {
                return .failure(FetchFailure(type: .stsPolicyInvalid, detail: "\(url): content type \(contentType), not text/plain"))
            }
            let body = try await response.body.collect(upTo: MTASTSPolicy.maxBodySize)
            do {
                return .success(try MTASTSPolicy.parse(Array(buffer: body)))
            } catch {
                return .failure(FetchFailure(type: .stsPolicyInvalid, detail: "\(url): \(error)"))
            }
        } catch {
            let text = "\(error)"
            // A certificate problem is "sts-webpki-invalid" (RFC 8460 §4.3.2.2).
            let type: TLSFailureType = text.contains("handshakeFailed") || text.contains("certificate") ? .stsWebpkiInvalid : .stsPolicyFetchError
            return .failure(FetchFailure(type: type, detail: "\(url): \(text)"))
        }
    }

    // MARK: Durable cache

    private func loadIfNeeded() {
        guard !loaded else { return }
        loaded = true
        guard let cacheFile, let data = FileManager.default.contents(atPath: cacheFile) else { return }
        guard let decoded = try? JSONDecoder().decode([String: Entry].self, from: data) else {
            logger.warning("MTA-STS cache \(cacheFile) is unreadable; starting empty")
            return
        }
        let now = clock()
        entries = decoded.filter { $0.value.expires > now }
    }

    private func save() {
        guard let cacheFile else { return }
        let now = clock()
        entries = entries.filter { $0.value.expires > now }
        if entries.count > Self.maxEntries {
            // Keep the freshest: a bounded file whatever the number of destinations.
            let kept = entries.sorted { $0.value.fetched > $1.value.fetched }.prefix(Self.maxEntries)
            entries = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
        }
        do {
            let data = try JSONEncoder().encode(entries)
            try data.write(to: URL(fileURLWithPath: cacheFile), options: .atomic)
        } catch {
            logger.error("cannot write the MTA-STS cache \(cacheFile): \(error)")
        }
    }
}
