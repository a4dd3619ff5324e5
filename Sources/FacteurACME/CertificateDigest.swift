// The DANE TLSA "3 1 1" association data (RFC 6698 §2.1, RFC 7671 §5.1: DANE-EE, SPKI,
// SHA-256) of a certificate: what `facteur dns records` prints for _25._tcp.<hostname>.

import Crypto
import Foundation
import SwiftASN1
import X509

public enum CertificateDigest {
    /// Hex SHA-256 of the leaf certificate's DER SubjectPublicKeyInfo.
    public static func spkiSHA256(certificatePEMFile path: String) throws -> String {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard let first = ACMECertificateService.pemBlocks(text).first else { throw ACMEError("\(path): no certificate") }
        return try spkiSHA256(try Certificate(pemEncoded: first))
    }

    public static func spkiSHA256(_ certificate: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate.publicKey)
        return SHA256.hash(data: serializer.serializedBytes).map { String(format: "%02x", $0) }.joined()
    }
}
