// What the public HTTP(S) listener answers, as a pure function of the request: the MTA-STS
// policy (RFC 8461 §3.3: only over HTTPS, only for Host mta-sts.<policy domain>), ACME HTTP-01
// key authorizations (RFC 8555 §8.3) and 404 for everything else.

import NIOConcurrencyHelpers

public struct PublicWebResponse: Sendable, Equatable {
    public var status: Int
    public var reason: String
    public var contentType: String
    public var body: String

    static func text(_ status: Int, _ reason: String, _ body: String) -> PublicWebResponse {
        PublicWebResponse(status: status, reason: reason, contentType: "text/plain; charset=utf-8", body: body)
    }
    static let notFound = text(404, "Not Found", "not found\n")
}

public final class PublicWebRouter: Sendable {
    public static let mtaSTSPath = "/.well-known/mta-sts.txt"
    public static let challengePrefix = "/.well-known/acme-challenge/"

    private struct State {
        var policy: MTASTSPolicy?
        var domains: Set<String> = []
    }
    private let state: NIOLockedValueBox<State>
    public let challenges: ACMEHTTPChallengeTable

    /// - Parameters:
    ///   - policy: nil serves no MTA-STS policy at all.
    ///   - domains: the local domains whose `mta-sts.` host serves the policy.
    public init(policy: MTASTSPolicy?, domains: Set<String>, challenges: ACMEHTTPChallengeTable = .init()) {
        self.state = NIOLockedValueBox(State(policy: policy, domains: Set(domains.map { $0.lowercased() })))
        self.challenges = challenges
    }

    /// Domains are added and removed while the server runs (`facteur domain add`).
    public func setDomains(_ domains: Set<String>) {
        state.withLockedValue { $0.domains = Set(domains.map { $0.lowercased() }) }
    }

    public func setPolicy(_ policy: MTASTSPolicy?) {
        state.withLockedValue { $0.policy = policy }
    }

    /// `host` is the Host header as received (may carry a port); `secure` is true over TLS.
    public func respond(method: String, path: String, host: String?, secure: Bool) -> PublicWebResponse {
        guard method == "GET" || method == "HEAD" else {
            return .text(405, "Method Not Allowed", "method not allowed\n")
        }
        // The query string plays no part in either resource.
        let bare = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        if bare.hasPrefix(Self.challengePrefix) {
            let token = String(bare.dropFirst(Self.challengePrefix.count))
            guard let answer = challenges.keyAuthorization(token: token) else { return .notFound }
            // §8.3: the body is the key authorization; the content type is application/octet-stream.
            return PublicWebResponse(status: 200, reason: "OK", contentType: "application/octet-stream", body: answer)
        }
        if bare == Self.mtaSTSPath, secure, let domain = Self.policyDomain(host: host) {
            let policy: MTASTSPolicy? = state.withLockedValue { $0.domains.contains(domain) ? $0.policy : nil }
            if let policy {
                return PublicWebResponse(status: 200, reason: "OK", contentType: "text/plain", body: policy.text)
            }
        }
        return .notFound
    }

    /// `mta-sts.example.org:443` → `example.org`.
    static func policyDomain(host: String?) -> String? {
        guard var host = host?.lowercased() else { return nil }
        if host.hasPrefix("[") { return nil }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        if host.hasSuffix(".") { host.removeLast() }
        let prefix = "mta-sts."
        guard host.hasPrefix(prefix), host.count > prefix.count else { return nil }
        return String(host.dropFirst(prefix.count))
    }
}
