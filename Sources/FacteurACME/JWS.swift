// JSON Web Signatures as ACME uses them (RFC 8555 §6.2): flattened JSON serialization
// (RFC 7515 §7.2.2), ES256 (RFC 7518 §3.4: the raw 64-byte r‖s signature), the account key as
// a JWK (RFC 7517) and its SHA-256 thumbprint (RFC 7638) for key authorizations (§8.1).

import Crypto
import Foundation

enum Base64URL {
    /// RFC 7515 §2: base64url without padding.
    static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func encode(_ text: String) -> String { encode(Array(text.utf8)) }
}

/// The ACME account key: a P-256 key signing with ES256.
public struct ACMEAccountKey: Sendable {
    public let privateKey: P256.Signing.PrivateKey

    public init(privateKey: P256.Signing.PrivateKey = .init()) { self.privateKey = privateKey }

    public init(pem: String) throws { privateKey = try P256.Signing.PrivateKey(pemRepresentation: pem) }

    public var pem: String { privateKey.pemRepresentation }

    /// The JWK members in the lexicographic order RFC 7638 §3.2 requires for the thumbprint.
    var jwkJSON: String {
        // x963: 0x04 ‖ x (32 bytes) ‖ y (32 bytes).
        let point = Array(privateKey.publicKey.x963Representation)
        let x = Base64URL.encode(point[1..<33])
        let y = Base64URL.encode(point[33..<65])
        return #"{"crv":"P-256","kty":"EC","x":"\#(x)","y":"\#(y)"}"#
    }

    /// RFC 7638: base64url(SHA-256(canonical JWK)).
    public var thumbprint: String { Base64URL.encode(SHA256.hash(data: Data(jwkJSON.utf8))) }

    /// RFC 8555 §8.1: token "." base64url(thumbprint).
    public func keyAuthorization(token: String) -> String { "\(token).\(thumbprint)" }

    /// RFC 8555 §6.2: `jwk` for newAccount (no account URL yet), `kid` afterwards. A nil
    /// payload is a POST-as-GET (§6.3): the empty string, not "{}".
    func sign(url: String, nonce: String, kid: String?, payload: Data?) throws -> Data {
        var header = #"{"alg":"ES256","nonce":\#(Self.quote(nonce)),"url":\#(Self.quote(url)),"#
        if let kid { header += #""kid":\#(Self.quote(kid))}"# } else { header += #""jwk":\#(jwkJSON)}"# }
        let protected = Base64URL.encode(header)
        let body = payload.map { Base64URL.encode($0) } ?? ""
        let signature = try privateKey.signature(for: Data("\(protected).\(body)".utf8))
        let jws = #"{"protected":"\#(protected)","payload":"\#(body)","signature":"\#(Base64URL.encode(signature.rawRepresentation))"}"#
        return Data(jws.utf8)
    }

    /// A JSON string literal (URLs and nonces come from the server: escape them properly).
    static func quote(_ value: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [value], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
        let text = String(decoding: data, as: UTF8.self)
        return String(text.dropFirst().dropLast())
    }
}
