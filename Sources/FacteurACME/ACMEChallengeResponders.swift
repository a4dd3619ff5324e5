// Where the ACME client puts its challenge answers while the CA validates: the HTTP-01 token
// table of the public HTTP listener (RFC 8555 §8.3) and the TLS-ALPN-01 certificates of the
// TLS listeners (RFC 8737 §3). The composition root wires them to the real listeners.

import Crypto
import Foundation
import SwiftASN1
import X509

/// RFC 8555 §8.3: serves `keyAuthorization` at http://<host>/.well-known/acme-challenge/<token>.
public protocol HTTP01ChallengeResponder: Sendable {
    func install(token: String, keyAuthorization: String)
    func remove(token: String)
}

/// RFC 8737 §3: presents `certificateChainPEM` to clients that offer ALPN "acme-tls/1" with
/// SNI `host`.
public protocol TLSALPNChallengeResponder: Sendable {
    func install(host: String, certificateChainPEM: String, privateKeyPEM: String)
    func remove(host: String)
}

public enum ACMEChallengeType: String, Sendable, CaseIterable {
    case http01 = "http-01"
    case tlsALPN01 = "tls-alpn-01"
}

public enum TLSALPNChallenge {
    /// RFC 8737 §3: the ALPN protocol name the validation server offers.
    public static let alpnProtocol = "acme-tls/1"
    /// RFC 8737 §6.1: id-pe-acmeIdentifier.
    public static let acmeIdentifierOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 1, 31]

    /// RFC 8737 §3: a self-signed certificate whose only SAN is the identifier, with the critical
    /// acmeIdentifier extension holding the DER OCTET STRING of SHA-256(key authorization).
    public static func certificate(host: String, keyAuthorization: String) throws -> (certificatePEM: String, privateKeyPEM: String) {
        let key = P256.Signing.PrivateKey()
        let digest = Array(SHA256.hash(data: Data(keyAuthorization.utf8)))
        var serializer = DER.Serializer()
        try serializer.serialize(ASN1OctetString(contentBytes: digest[...]))
        let acmeIdentifier = Certificate.Extension(oid: acmeIdentifierOID, critical: true, value: serializer.serializedBytes[...])
        let name = try DistinguishedName { CommonName(host) }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 300, notValidAfter: now + 86_400 * 7,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames([.dnsName(host)])
                acmeIdentifier
            },
            issuerPrivateKey: .init(key))
        return (try certificate.serializeAsPEM().pemString + "\n", key.pemRepresentation + "\n")
    }
}
