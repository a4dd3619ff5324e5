// DANEVerifier (RFC 7672 §3, RFC 6698 §2.1) and WebPKIVerifier on real certificates made with
// swift-certificates: DANE-EE by certificate and by key with each matching type, dates and names
// ignored for DANE-EE; DANE-TA through a CA in the chain with the name checked; PKIX usages unusable.

import Crypto
import FacteurDNS
import Foundation
import SwiftASN1
import X509
import XCTest
@testable import FacteurQueue

/// A CA and the certificates it issues, in memory.
struct TestPKI {
    let caKey = P256.Signing.PrivateKey()
    let ca: Certificate

    init(name: String = "Facteur Test CA") throws {
        let subject = try DistinguishedName { CommonName(name) }
        ca = try Certificate(version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
                             notValidBefore: Date() - 3600, notValidAfter: Date() + 86400 * 30,
                             issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                             extensions: try Certificate.Extensions {
                                 Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                                 Critical(KeyUsage(keyCertSign: true))
                             }, issuerPrivateKey: .init(caKey))
    }

    /// A server certificate for `names`, issued by the CA.
    func leaf(_ names: [String], notBefore: Date = Date() - 3600, notAfter: Date = Date() + 86400 * 30)
        throws -> (Certificate, P256.Signing.PrivateKey) {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(names.first ?? "x") }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: notBefore, notValidAfter: notAfter,
            issuer: ca.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names.map { .dnsName($0) })
            }, issuerPrivateKey: .init(caKey))
        return (certificate, key)
    }

    static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }
}

func tlsa(_ usage: UInt8, _ selector: UInt8, _ matching: UInt8, of certificate: Certificate) throws -> TLSARecord {
    let selected = selector == 0 ? try TestPKI.der(certificate) : try XCTUnwrap(DANEVerifier.subjectPublicKeyInfo(certificate))
    return TLSARecord(certificateUsage: usage, selector: selector, matchingType: matching,
                      certificateAssociationData: try XCTUnwrap(DANEVerifier.associationData(selected, matchingType: matching)))
}

final class DANEVerifierTests: XCTestCase {
    func testDANEEEMatchesByCertificateAndByKeyWithEachMatchingType() async throws {
        let pki = try TestPKI()
        let (leaf, _) = try pki.leaf(["mx.example.org"])
        let chain = [try TestPKI.der(leaf), try TestPKI.der(pki.ca)]
        for selector: UInt8 in [0, 1] {
            for matching: UInt8 in [0, 1, 2] {
                let outcome = await DANEVerifier.verify(chain: chain, records: [try tlsa(3, selector, matching, of: leaf)],
                                                        referenceNames: ["mx.example.org"])
                XCTAssertEqual(outcome, .verified(.daneEE), "3 \(selector) \(matching)")
            }
        }
    }

    func testDANEEEIgnoresNamesAndDatesButNotTheKey() async throws {
        let pki = try TestPKI()
        // Expired, and for another name: RFC 7672 §3.1.1 says neither matters for DANE-EE.
        let (leaf, _) = try pki.leaf(["elsewhere.example"], notBefore: Date() - 86400 * 10, notAfter: Date() - 86400)
        let record = try tlsa(3, 1, 1, of: leaf)
        let good = await DANEVerifier.verify(chain: [try TestPKI.der(leaf)], records: [record], referenceNames: ["mx.example.org"])
        XCTAssertEqual(good, .verified(.daneEE))
        let (other, _) = try pki.leaf(["mx.example.org"])
        let bad = await DANEVerifier.verify(chain: [try TestPKI.der(other)], records: [record], referenceNames: ["mx.example.org"])
        guard case .failed = bad else { return XCTFail("another key must not match: \(bad)") }
    }

    func testDANETAChecksTheChainAndTheName() async throws {
        let pki = try TestPKI()
        let (leaf, _) = try pki.leaf(["mx.example.org"])
        let chain = [try TestPKI.der(leaf), try TestPKI.der(pki.ca)]
        let anchor = try tlsa(2, 1, 1, of: pki.ca)
        let good = await DANEVerifier.verify(chain: chain, records: [anchor], referenceNames: ["mx.example.org"])
        XCTAssertEqual(good, .verified(.daneTA))
        let wrongName = await DANEVerifier.verify(chain: chain, records: [anchor], referenceNames: ["other.example.org"])
        guard case .failed(let why) = wrongName else { return XCTFail("the name must be checked for DANE-TA") }
        XCTAssertTrue(why.contains("not valid for"), why)
        // A leaf of another CA does not chain to this anchor even if that CA is sent along.
        let stranger = try TestPKI(name: "Other CA")
        let (foreign, _) = try stranger.leaf(["mx.example.org"])
        let mixed = await DANEVerifier.verify(chain: [try TestPKI.der(foreign), try TestPKI.der(pki.ca)], records: [anchor],
                                              referenceNames: ["mx.example.org"])
        guard case .failed = mixed else { return XCTFail("a foreign leaf must not verify: \(mixed)") }
        // DANE-TA does not match the leaf itself.
        let leafAsAnchor = await DANEVerifier.verify(chain: chain, records: [try tlsa(2, 1, 1, of: leaf)], referenceNames: ["mx.example.org"])
        guard case .failed = leafAsAnchor else { return XCTFail("DANE-TA names an issuer, not the leaf") }
    }

    func testPKIXUsagesAndMalformedRecordsAreUnusable() async throws {
        let pki = try TestPKI()
        let (leaf, _) = try pki.leaf(["mx.example.org"])
        let pkixEE = try tlsa(1, 1, 1, of: leaf)
        let pkixTA = try tlsa(0, 1, 1, of: pki.ca)
        let shortDigest = TLSARecord(certificateUsage: 3, selector: 1, matchingType: 1, certificateAssociationData: [1, 2, 3])
        let badMatching = TLSARecord(certificateUsage: 3, selector: 1, matchingType: 9, certificateAssociationData: [1])
        let badSelector = TLSARecord(certificateUsage: 3, selector: 2, matchingType: 0, certificateAssociationData: [1])
        XCTAssertTrue(DANEVerifier.usableRecords([pkixEE, pkixTA, shortDigest, badMatching, badSelector]).isEmpty)
        let outcome = await DANEVerifier.verify(chain: [try TestPKI.der(leaf)], records: [pkixEE], referenceNames: ["mx.example.org"])
        XCTAssertEqual(outcome, .failed("no usable TLSA record"))
        let good = try tlsa(3, 1, 1, of: leaf)
        XCTAssertEqual(DANEVerifier.usableRecords([pkixEE, good]), [good])
        let none = await DANEVerifier.verify(chain: [], records: [good], referenceNames: ["mx.example.org"])
        guard case .failed = none else { return XCTFail("no certificate, no match") }
        let garbage = await DANEVerifier.verify(chain: [[0x30, 0x03, 0x02, 0x01]], records: [try tlsa(2, 1, 1, of: pki.ca)],
                                                referenceNames: ["mx.example.org"])
        guard case .failed = garbage else { return XCTFail("garbage must not verify") }
    }

    func testWebPKIVerificationTellsTheFailuresApart() async throws {
        let pki = try TestPKI()
        let roots = CertificateStore([pki.ca])
        let (leaf, _) = try pki.leaf(["mx.example.org"])
        let chain = [try TestPKI.der(leaf)]
        let good = await WebPKIVerifier.verify(chain: chain, hostname: "mx.example.org", roots: roots)
        XCTAssertTrue(good.0)
        let mismatch = await WebPKIVerifier.verify(chain: chain, hostname: "mx.other.org", roots: roots)
        XCTAssertFalse(mismatch.0)
        XCTAssertEqual(mismatch.1, .certificateHostMismatch)
        let untrusted = await WebPKIVerifier.verify(chain: chain, hostname: "mx.example.org", roots: CertificateStore([try TestPKI().ca]))
        XCTAssertEqual(untrusted.1, .certificateNotTrusted)
        let (old, _) = try pki.leaf(["mx.example.org"], notBefore: Date() - 86400 * 10, notAfter: Date() - 86400)
        let expired = await WebPKIVerifier.verify(chain: [try TestPKI.der(old)], hostname: "mx.example.org", roots: roots)
        XCTAssertEqual(expired.1, .certificateExpired)
    }
}
