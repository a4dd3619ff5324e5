// FacteurMailAuth: DKIM signing (RFC 6376 §5) with rsa-sha256 or ed25519-sha256 (RFC 8463),
// relaxed/relaxed canonicalization, and an oversigned header list (§8.15: each listed field is
// signed once more than it occurs, so no instance can be added after signing).

import Crypto
import _CryptoExtras
import FacteurMIME
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A private key for signing.
public enum DKIMSigningKey: Sendable {
    case rsa(_RSA.Signing.PrivateKey)
    case ed25519(Curve25519.Signing.PrivateKey)

    public var algorithm: DKIMAlgorithm {
        switch self {
        case .rsa: .rsaSHA256
        case .ed25519: .ed25519SHA256
        }
    }

    /// A new 2048-bit RSA key (RFC 8301 §3.2 recommends at least 2048 bits for signers).
    public static func generateRSA() throws -> DKIMSigningKey {
        .rsa(try _RSA.Signing.PrivateKey(keySize: .bits2048))
    }

    /// A new Ed25519 key (RFC 8463).
    public static func generateEd25519() -> DKIMSigningKey {
        .ed25519(Curve25519.Signing.PrivateKey())
    }

    /// An RSA key from PEM (PKCS#1 or PKCS#8). Keys of 1024 bits are accepted for existing setups.
    public init(rsaPEM pem: String) throws {
        self = .rsa(try _RSA.Signing.PrivateKey(unsafePEMRepresentation: pem))
    }

    /// An Ed25519 key from its 32-byte seed, base64 (the form dkimpy and RFC 8463 use).
    public init(ed25519SeedBase64 text: String) throws {
        let compact = text.filter { !$0.isWhitespace }
        guard let seed = Data(base64Encoded: compact), seed.count == 32 else { throw DKIMSigningError.signingFailed("bad Ed25519 seed") }
        self = .ed25519(try Curve25519.Signing.PrivateKey(rawRepresentation: seed))
    }

    /// The TXT record to publish at selector._domainkey.domain (RFC 6376 §3.6.1, RFC 8463 §4).
    public var dnsRecord: String {
        switch self {
        case .rsa(let key):
            "v=DKIM1; k=rsa; p=\(key.publicKey.derRepresentation.base64EncodedString())"
        case .ed25519(let key):
            "v=DKIM1; k=ed25519; p=\(key.publicKey.rawRepresentation.base64EncodedString())"
        }
    }
}

public enum DKIMSigningError: Error, Sendable, Hashable {
    /// §5.4: a message without From cannot be signed.
    case noFromField
    case invalidDomain(String)
    case signingFailed(String)
}

/// Signs messages for one domain and selector.
public struct DKIMSigner: Sendable {
    /// The fields signed when present, and oversigned (RFC 6376 §5.4, §8.15): the originator and
    /// recipient fields, subject, date, threading and MIME structure, list headers.
    public static let defaultSignedHeaders = [
        "from", "reply-to", "sender", "subject", "date", "message-id", "to", "cc",
        "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding",
        "content-disposition", "list-id", "list-unsubscribe", "list-unsubscribe-post", "list-help", "list-post",
        "feedback-id",
    ]

    public var domain: String
    public var selector: String
    public var key: DKIMSigningKey
    public var signedHeaders: [String]
    /// x= is t= plus this, when set.
    public var expiration: Int64?
    public var clock: @Sendable () -> Int64

    public init(domain: String, selector: String, key: DKIMSigningKey, signedHeaders: [String] = DKIMSigner.defaultSignedHeaders,
                expiration: Int64? = nil, clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.domain = domain.lowercased()
        self.selector = selector.lowercased()
        self.key = key
        self.signedHeaders = signedHeaders.map { $0.lowercased() }
        self.expiration = expiration
        self.clock = clock
    }

    /// A body hasher matching what `sign` expects (relaxed body canonicalization).
    public static func makeBodyHasher() -> DKIMBodyHasher { DKIMBodyHasher(canonicalization: .relaxed) }

    /// Signs with several signers (Facteur's default: ed25519-sha256 and rsa-sha256) over one body
    /// hash; returns the fields to prepend, in order.
    public static func sign(message: [UInt8], with signers: [DKIMSigner]) throws(DKIMSigningError) -> String {
        let header = MessageHeader(parsing: message)
        var hasher = makeBodyHasher()
        hasher.update(message[header.bodyOffset...])
        let bodyHash = hasher.finalize()
        let headerBytes = Array(message[..<header.bodyOffset])
        var fields = ""
        for signer in signers { fields += try signer.sign(headerBytes: headerBytes, bodyHash: bodyHash) }
        return fields
    }

    /// Signs a whole message (CRLF line endings) and returns the DKIM-Signature field to prepend,
    /// folded, ending with CRLF.
    public func sign(message: [UInt8]) throws(DKIMSigningError) -> String {
        let header = MessageHeader(parsing: message)
        var hasher = Self.makeBodyHasher()
        hasher.update(message[header.bodyOffset...])
        return try sign(headerBytes: Array(message[..<header.bodyOffset]), bodyHash: hasher.finalize())
    }

    /// Signs given the header block and the body hash from a relaxed `DKIMBodyHasher` (streaming).
    public func sign(headerBytes: [UInt8], bodyHash: [UInt8]) throws(DKIMSigningError) -> String {
        guard DKIMSignature.isDomainName(domain, allowSingleLabel: false) else { throw .invalidDomain(domain) }
        guard DKIMSignature.isDomainName(selector) else { throw .invalidDomain(selector) }
        let header = MessageHeader(parsing: headerBytes)
        guard header.field(named: "from") != nil else { throw .noFromField }

        // Oversign: each name once more than it occurs (at least once).
        var names: [String] = []
        for name in signedHeaders {
            let count = header.fields(named: name).count
            names += Array(repeating: name, count: count + 1)
        }
        let now = clock()
        var tags = [
            "v=1", "a=\(key.algorithm.rawValue)", "c=relaxed/relaxed", "d=\(domain)", "s=\(selector)", "t=\(now)",
        ]
        if let expiration { tags.append("x=\(now &+ expiration)") }
        tags.append("h=\(names.joined(separator: ":"))")
        tags.append("bh=\(Data(bodyHash).base64EncodedString())")
        tags.append("b=")
        // Fold between tags (and inside h= at colons) to keep lines short.
        var value = ""
        var lineLength = "DKIM-Signature:".count
        for (index, tag) in tags.enumerated() {
            var pieces: [String] = [tag]
            if tag.hasPrefix("h=") {
                pieces = []
                var current = "h="
                for (n, name) in names.enumerated() {
                    let piece = name + (n < names.count - 1 ? ":" : "")
                    if current.count + piece.count > 70 { pieces.append(current); current = "" }
                    current += piece
                }
                pieces.append(current)
            }
            let last = index == tags.count - 1
            for (p, piece) in pieces.enumerated() {
                let text = piece + (p == pieces.count - 1 && !last ? ";" : "")
                if lineLength + 1 + text.count > 76 && lineLength > 1 {
                    value += "\r\n\t"
                    lineLength = 8
                } else if !(p > 0) {
                    value += " "
                    lineLength += 1
                }
                value += text
                lineLength += text.count
            }
        }
        let field = "DKIM-Signature:" + value
        // §3.7: hash the signed fields (relaxed), then this field with an empty b= and no CRLF.
        var data: [UInt8] = []
        for selected in DKIMHeaderCanonicalizer.selectFields(names, from: header) {
            data += DKIMHeaderCanonicalizer.canonicalize(name: selected.name, value: selected.rawValue,
                                                         raw: headerBytes[selected.range], .relaxed)
        }
        data += DKIMHeaderCanonicalizer.canonicalize(name: "DKIM-Signature", value: Array(value.utf8),
                                                     raw: Array(field.utf8)[...], .relaxed, includeCRLF: false)
        let digest = SHA256.hash(data: data)
        let signature: Data
        do {
            switch key {
            case .rsa(let rsa):
                signature = try rsa.signature(for: digest, padding: .insecurePKCS1v1_5).rawRepresentation
            case .ed25519(let ed):
                signature = try ed.signature(for: Data(digest))
            }
        } catch {
            throw .signingFailed("\(error)")
        }
        // b= goes last, folded; its value (FWS included) is removed before verification (§3.7).
        let b = signature.base64EncodedString()
        var folded = ""
        var index = b.startIndex
        var room = max(1, 76 - lineLength)
        while index < b.endIndex {
            let end = b.index(index, offsetBy: room, limitedBy: b.endIndex) ?? b.endIndex
            if !folded.isEmpty { folded += "\r\n\t" }
            folded += b[index..<end]
            index = end
            room = 72
        }
        return field + folded + "\r\n"
    }
}
