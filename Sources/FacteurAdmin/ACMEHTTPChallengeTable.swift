// The answers to ACME HTTP-01 challenges (RFC 8555 §8.3): token → key authorization, filled by
// the ACME client while an authorization is pending and served at
// http://<host>/.well-known/acme-challenge/<token>.

import NIOConcurrencyHelpers

public final class ACMEHTTPChallengeTable: Sendable {
    /// A hostile or broken ACME client must not grow this without bound.
    public static let maxEntries = 1_000
    private let entries = NIOLockedValueBox<[String: String]>([:])

    public init() {}

    /// Returns false when the table is full or the token is not base64url (§8.3: the token
    /// only contains base64url characters, so nothing else can ever match a request path).
    @discardableResult
    public func set(token: String, keyAuthorization: String) -> Bool {
        guard Self.isToken(token) else { return false }
        return entries.withLockedValue { table in
            if table[token] == nil, table.count >= Self.maxEntries { return false }
            table[token] = keyAuthorization
            return true
        }
    }

    public func remove(token: String) {
        _ = entries.withLockedValue { $0.removeValue(forKey: token) }
    }

    public func keyAuthorization(token: String) -> String? {
        entries.withLockedValue { $0[token] }
    }

    public var count: Int { entries.withLockedValue { $0.count } }

    static func isToken(_ token: String) -> Bool {
        !token.isEmpty && token.utf8.count <= 256 && token.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }
}
