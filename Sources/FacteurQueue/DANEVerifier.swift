// DANE for SMTP (RFC 7672) certificate matching: TLSA records (RFC 6698 §2.1) against the chain an
// MX host presented. Only DANE-TA(2) and DANE-EE(3) are usable for SMTP (RFC 7672 §3.1.3); selectors
// 0 (full certificate) and 1 (SubjectPublicKeyInfo); matching types 0 (exact), 1 (SHA-256) and
// 2 (SHA-512) (RFC 6698 §2.1.2-2.1.3, RFC 7671 §5). Pure: no I/O, the clock is a parameter.

import Crypto
import FacteurDNS
import Foundation
import SwiftASN1
import X509

/// How a peer's certificate was authenticated, as the delivery log says it.
public enum TLSPeerVerification: String, Sendable, Equatable {
    /// DANE-EE(3): the leaf matched a TLSA record; names and dates are not checked (RFC 7672 §3.1.1).
    case daneEE = "dane-ee"
    /// DANE-TA(2): the chain leads to a trust anchor named by TLSA, and the leaf names the MX host.
    case daneTA = "dane-ta"
    /// The chain leads to a trusted root (system roots plus configured ones) and names the MX host.
    case webPKI = "webpki"
    /// Not authenticated (opportunistic TLS).
    case none
}

public enum DANEVerifier {
    /// Hard limits on hostile input: a server can present a long chain, DNS a large RRset.
    public static let maxChainLength = 10
    public static let maxRecords = 32

    /// The records DANE for SMTP can use (RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) are not used by
    /// SMTP; RFC 6698 §2.1: unknown selectors and matching types are unusable), with digests of the
    /// right length (RFC 7671 §5.1: a record whose data cannot be a digest of its type is unusable).
    public static func usableRecords(_ records: [TLSARecord]) -> [TLSARecord] {
        records.prefix(maxRecords).filter { record in
            guard record.certificateUsage == 2 || record.certificateUsage == 3, record.selector <= 1 else { return false }
            switch record.matchingType {
            case 0: return !record.certificateAssociationData.isEmpty
            case 1: return record.certificateAssociationData.count == 32
            case 2: return record.certificateAssociationData.count == 64
            default: return false
            }
        }
    }

    public enum Outcome: Sendable, Equatable {
        case verified(TLSPeerVerification)
        /// Nothing matched: the reason, for the log and the TLS report (RFC 8460 "validation-failure").
        case failed(String)
    }

    /// Matches `chain` (DER, the server's leaf first, as sent) against the TLSA `records`.
    /// `referenceNames` are the names a DANE-TA leaf must carry (RFC 7672 §3.2.2: the TLSA base
    /// domain, i.e. the MX host after CNAME expansion, and the MX host name itself).
    public static func verify(chain: [[UInt8]], records: [TLSARecord], referenceNames: [String],
                              now: Date = Date()) async -> Outcome {
        let usable = usableRecords(records)
        guard !usable.isEmpty else { return .failed("no usable TLSA record") }
        guard let leafDER = chain.first else { return .failed("the server presented no certificate") }
        let presented = Array(chain.prefix(maxChainLength))
        var certificates: [Certificate] = []
        for der in presented {
            guard let certificate = try? Certificate(derEncoded: der) else { break }
            certificates.append(certificate)
        }
        // DANE-EE(3) first: it needs nothing but the leaf (RFC 7672 §3.1.1).
        for record in usable where record.certificateUsage == 3 {
            if matches(record, der: leafDER, certificate: certificates.first) { return .verified(.daneEE) }
        }
        // DANE-TA(2): a certificate the server sent (RFC 7672 §3.1.2: servers SHOULD include the
        // trust anchor) matches; the chain must lead from the leaf to it, and the leaf must be valid
        // and name the MX host (§3.2.2, RFC 6125 rules as swift-certificates implements them).
        let anchors = usable.filter { $0.certificateUsage == 2 }
        guard !anchors.isEmpty else { return .failed("the server certificate matches no DANE-EE TLSA record") }
        guard let leaf = certificates.first else { return .failed("the server certificate cannot be parsed") }
        var sawAnchor = false
        for (index, certificate) in certificates.enumerated() where index > 0 {
            guard anchors.contains(where: { matches($0, der: presented[index], certificate: certificate) }) else { continue }
            sawAnchor = true
            let intermediates = CertificateStore(certificates.dropFirst().filter { $0 != certificate })
            for name in referenceNames {
                var verifier = Verifier(rootCertificates: CertificateStore([certificate])) {
                    RFC5280Policy(validationTime: now)
                    ServerIdentityPolicy(serverHostname: name, serverIP: nil)
                }
                if case .validCertificate = await verifier.validate(leaf: leaf, intermediates: intermediates) {
                    return .verified(.daneTA)
                }
            }
        }
        if sawAnchor {
            return .failed("the chain matches a DANE-TA TLSA record but the server certificate is not valid for \(referenceNames.joined(separator: " or "))")
        }
        return .failed("the server certificate chain matches no TLSA record")
    }

    /// RFC 6698 §2.1.2-2.1.3: the selected part of the certificate, as is or hashed.
    static func matches(_ record: TLSARecord, der: [UInt8], certificate: Certificate?) -> Bool {
        let selected: [UInt8]
        switch record.selector {
        case 0:
            selected = der
        case 1:
            guard let certificate, let spki = subjectPublicKeyInfo(certificate) else { return false }
            selected = spki
        default:
            return false
        }
        return associationData(selected, matchingType: record.matchingType) == record.certificateAssociationData
    }

    /// The DER of the certificate's SubjectPublicKeyInfo (RFC 5280 §4.1.2.7).
    public static func subjectPublicKeyInfo(_ certificate: Certificate) -> [UInt8]? {
        var serializer = DER.Serializer()
        guard (try? serializer.serialize(certificate.publicKey)) != nil else { return nil }
        return serializer.serializedBytes
    }

    /// The certificate association data for `selected` bytes (RFC 6698 §2.1.3).
    public static func associationData(_ selected: [UInt8], matchingType: UInt8) -> [UInt8]? {
        switch matchingType {
        case 0: return selected
        case 1: return Array(SHA256.hash(data: selected))
        case 2: return Array(SHA512.hash(data: selected))
        default: return nil
        }
    }
}

/// WebPKI verification (RFC 8461 §4.2 for MTA-STS, RFC 8689 §5 for REQUIRETLS): the chain leads to a
/// trusted root, dates valid, and the leaf names the MX host (RFC 6125).
public enum WebPKIVerifier {
    public static func verify(chain: [[UInt8]], hostname: String, roots: CertificateStore, now: Date = Date()) async -> (Bool, TLSFailureType?, String?) {
        var certificates: [Certificate] = []
        for der in chain.prefix(DANEVerifier.maxChainLength) {
            guard let certificate = try? Certificate(derEncoded: der) else { break }
            certificates.append(certificate)
        }
        guard let leaf = certificates.first else { return (false, .validationFailure, "no parsable server certificate") }
        var verifier = Verifier(rootCertificates: roots) {
            RFC5280Policy(validationTime: now)
            ServerIdentityPolicy(serverHostname: hostname, serverIP: nil)
        }
        switch await verifier.validate(leaf: leaf, intermediates: CertificateStore(certificates.dropFirst())) {
        case .validCertificate:
            return (true, nil, nil)
        case .couldNotValidate(let failures):
            // Tell the usual causes apart for the TLS report (RFC 8460 §4.3.1).
            if leaf.notValidAfter < now || leaf.notValidBefore > now {
                return (false, .certificateExpired, "the certificate of \(hostname) is outside its validity period")
            }
            var nameOnly = Verifier(rootCertificates: roots) { RFC5280Policy(validationTime: now) }
            if case .validCertificate = await nameOnly.validate(leaf: leaf, intermediates: CertificateStore(certificates.dropFirst())) {
                return (false, .certificateHostMismatch, "the certificate is not valid for \(hostname)")
            }
            let reason = failures.first.map { "\($0.policyFailureReason)" } ?? "no chain to a trusted root"
            return (false, .certificateNotTrusted, "the certificate of \(hostname) is not trusted: \(reason)")
        }
    }

    /// The system's roots (Debian: /etc/ssl/certs) plus the PEM certificates of `extraRootsFile`.
    public static func roots(extraRootsPEM: String?) throws -> CertificateStore {
        guard let pem = extraRootsPEM else { return CertificateStore.systemTrustRoots }
        let documents = try PEMDocument.parseMultiple(pemString: pem)
        let extra = try documents.filter { $0.discriminator == "CERTIFICATE" }.map { try Certificate(pemDocument: $0) }
        return CertificateStore.systemTrustRoots.appending(contentsOf: extra)
    }
}
