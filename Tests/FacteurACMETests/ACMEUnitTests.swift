import Crypto
@testable import FacteurACME
import Foundation
import SwiftASN1
import X509
import XCTest

final class ACMEUnitTests: XCTestCase {
    func testJWSIsFlattenedES256OverProtectedAndPayload() throws {
        let key = ACMEAccountKey()
        let jws = try key.sign(url: "https://ca/new-order", nonce: "n1", kid: "https://ca/acct/1", payload: Data(#"{"a":1}"#.utf8))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: jws) as? [String: String])
        let protected = try XCTUnwrap(json["protected"]), payload = try XCTUnwrap(json["payload"])
        func decode(_ text: String) -> Data? {
            var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while base64.count % 4 != 0 { base64 += "=" }
            return Data(base64Encoded: base64)
        }
        let header = try XCTUnwrap(try JSONSerialization.jsonObject(with: try XCTUnwrap(decode(protected))) as? [String: Any])
        XCTAssertEqual(header["alg"] as? String, "ES256")
        XCTAssertEqual(header["nonce"] as? String, "n1")
        XCTAssertEqual(header["url"] as? String, "https://ca/new-order")
        XCTAssertEqual(header["kid"] as? String, "https://ca/acct/1")
        XCTAssertNil(header["jwk"], "§6.2: jwk and kid are mutually exclusive")
        XCTAssertEqual(decode(payload), Data(#"{"a":1}"#.utf8))
        let signature = try P256.Signing.ECDSASignature(rawRepresentation: try XCTUnwrap(decode(try XCTUnwrap(json["signature"]))))
        XCTAssertTrue(key.privateKey.publicKey.isValidSignature(signature, for: Data("\(protected).\(payload)".utf8)))

        let postAsGet = try key.sign(url: "u", nonce: "n", kid: nil, payload: nil)
        let flattened = try XCTUnwrap(try JSONSerialization.jsonObject(with: postAsGet) as? [String: String])
        XCTAssertEqual(flattened["payload"], "", "§6.3: POST-as-GET has an empty payload")
        let jwkHeader = try XCTUnwrap(try JSONSerialization.jsonObject(with: try XCTUnwrap(decode(try XCTUnwrap(flattened["protected"])))) as? [String: Any])
        let jwk = try XCTUnwrap(jwkHeader["jwk"] as? [String: String])
        XCTAssertEqual(jwk["kty"], "EC")
        XCTAssertEqual(jwk["crv"], "P-256")
        XCTAssertEqual(decode(try XCTUnwrap(jwk["x"]))?.count, 32)
    }

    func testKeyAuthorizationUsesTheRFC7638Thumbprint() throws {
        let key = ACMEAccountKey()
        let point = Array(key.privateKey.publicKey.x963Representation)
        let canonical = #"{"crv":"P-256","kty":"EC","x":"\#(Base64URL.encode(point[1..<33]))","y":"\#(Base64URL.encode(point[33..<65]))"}"#
        let thumbprint = Base64URL.encode(SHA256.hash(data: Data(canonical.utf8)))
        XCTAssertEqual(key.keyAuthorization(token: "tok"), "tok.\(thumbprint)")
        XCTAssertFalse(thumbprint.contains("="))
        XCTAssertEqual(try ACMEAccountKey(pem: key.pem).thumbprint, key.thumbprint)
    }

    func testTLSALPNCertificateCarriesTheCriticalAcmeIdentifier() throws {
        let (pem, keyPEM) = try TLSALPNChallenge.certificate(host: "mail.example.org", keyAuthorization: "tok.thumb")
        let certificate = try Certificate(pemEncoded: pem)
        let extensionValue = try XCTUnwrap(certificate.extensions[oid: TLSALPNChallenge.acmeIdentifierOID])
        XCTAssertTrue(extensionValue.critical)
        XCTAssertEqual(Array(extensionValue.value), [0x04, 0x20] + Array(SHA256.hash(data: Data("tok.thumb".utf8))))
        XCTAssertEqual(try certificate.extensions.subjectAlternativeNames, SubjectAlternativeNames([.dnsName("mail.example.org")]))
        XCTAssertEqual(Certificate.PublicKey(try P256.Signing.PrivateKey(pemRepresentation: keyPEM).publicKey), certificate.publicKey)
    }

    func testRenewalCertIDIsAKIDotSerial() throws {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("x") }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(bytes: [0x00, 0x87, 0x65, 0x43, 0x21]), publicKey: .init(key.publicKey),
            notValidBefore: Date(), notValidAfter: Date() + 3600, issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                AuthorityKeyIdentifier(keyIdentifier: [0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4])
            }, issuerPrivateKey: .init(key))
        // RFC 9773 §4.1's example: keyIdentifier 69:88:5B:…:D4 and serial 00:87:65:43:21.
        XCTAssertEqual(ACMEClient.renewalCertID(certificate), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    }

    func testCSRNamesEveryDomain() throws {
        let key = P256.Signing.PrivateKey()
        let der = try ACMECertificateService.csr(domains: ["mail.example.org", "mta-sts.example.org"], key: key)
        let csr = try CertificateSigningRequest(derEncoded: der)
        XCTAssertEqual(csr.publicKey, Certificate.PublicKey(key.publicKey))
        let request = try XCTUnwrap(try csr.attributes.extensionRequest)
        XCTAssertEqual(try request.extensions.subjectAlternativeNames,
                       SubjectAlternativeNames([.dnsName("mail.example.org"), .dnsName("mta-sts.example.org")]))
    }

    func testPEMBlocksAreBounded() {
        let block = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        XCTAssertEqual(ACMECertificateService.pemBlocks(String(repeating: block, count: 50)).count, 10)
        XCTAssertEqual(ACMECertificateService.pemBlocks("garbage").count, 0)
        XCTAssertEqual(ACMECertificateService.pemBlocks(block.replacingOccurrences(of: "\n", with: "\r\n")).count, 1)
    }
}
