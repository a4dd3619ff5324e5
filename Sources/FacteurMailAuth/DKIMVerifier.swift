// FacteurMailAuth: DKIM verification (RFC 6376 §6) of rsa-sha256 and ed25519-sha256 (RFC 8463);
// rsa-sha1 and RSA keys under 1024 bits fail (RFC 8301). Key records come from DNS
// (selector._domainkey.domain TXT, §3.6.2). Results use RFC 8601 §2.7.1's vocabulary.

import Crypto
import _CryptoExtras
import FacteurDNS
import FacteurMIME
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// RFC 8601 §2.7.1.
public enum DKIMResult: String, Sendable, Hashable {
    case none, pass, fail, policy, neutral, temperror, permerror
}

/// The outcome of one DKIM-Signature.
public struct DKIMSignatureResult: Sendable, Hashable {
    public var result: DKIMResult
    /// Why (for logs and the Authentication-Results comment).
    public var reason: String
    /// The parsed signature, when it parsed.
    public var signature: DKIMSignature?
    /// d= and s= (also when the signature did not fully parse, if they could be read).
    public var domain: String?
    public var selector: String?
    /// The key record had t=y: the signer is testing (RFC 6376 §3.6.1).
    public var testing: Bool = false
}

/// Verifies DKIM signatures. Sendable: create one and share it.
public struct DKIMVerifier: Sendable {
    public let resolver: any DNSResolver
    /// Seconds since the epoch; injectable for tests.
    public var clock: @Sendable () -> Int64
    /// Tolerance for t= in the future and x= in the past.
    public var allowedClockSkew: Int64

    public init(resolver: any DNSResolver, allowedClockSkew: Int64 = DKIMLimits.defaultClockSkew,
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.resolver = resolver
        self.clock = clock
        self.allowedClockSkew = allowedClockSkew
    }

    /// Verifies every DKIM-Signature of a whole message (CRLF line endings). No signature: [].
    public func verify(message: [UInt8]) async -> [DKIMSignatureResult] {
        let header = MessageHeader(parsing: message)
        var session = DKIMVerificationSession(headerBytes: Array(message[..<header.bodyOffset]))
        session.update(body: message[header.bodyOffset...])
        return await session.finish(using: self)
    }

    /// Checks one parsed signature whose body hash has been computed.
    func check(_ signature: DKIMSignature, field: HeaderField, header: MessageHeader, headerBytes: [UInt8],
               bodyHash: [UInt8], bodyTooShort: Bool) async -> DKIMSignatureResult {
        var outcome = DKIMSignatureResult(result: .fail, reason: "", signature: signature,
                                          domain: signature.domain, selector: signature.selector)
        func finish(_ result: DKIMResult, _ reason: String) -> DKIMSignatureResult {
            outcome.result = result
            outcome.reason = reason
            return outcome
        }
        // RFC 8301 §3.1: rsa-sha1 signatures are not valid.
        if signature.algorithm == .rsaSHA1 { return finish(.fail, "rsa-sha1 is not accepted (RFC 8301)") }
        let now = clock()
        if let x = signature.expiration, now > x &+ allowedClockSkew { return finish(.fail, "signature expired") }
        // A t= in the future is accepted (§3.5 allows ignoring such signatures, but senders' clocks
        // drift: the real-world vectors include a signature dated five hours ahead, which dkimpy accepts).

        // §3.6.2.2: selector._domainkey.domain.
        let keyName: DNSName
        do {
            keyName = try DNSName("\(signature.selector)._domainkey.\(signature.domain)")
        } catch {
            return finish(.permerror, "key name is not a domain name")
        }
        let records: [TXTRecord]
        do {
            records = try await resolver.txt(keyName)
        } catch {
            if error.isNotFound { return finish(.permerror, "no key for signature") }
            return finish(.temperror, "key lookup failed: \(error)")
        }
        var key: DKIMKeyRecord?
        var keyError = "no key record"
        for record in records {
            do {
                key = try DKIMKeyRecord(parsing: record.joined)
                break
            } catch {
                keyError = "key record: \(error)"
            }
        }
        guard let key else { return finish(.permerror, keyError) }
        outcome.testing = key.isTesting
        // §3.6.1 checks.
        if key.isRevoked { return finish(.permerror, "key revoked") }
        guard key.keyType == signature.algorithm.keyType else { return finish(.permerror, "key type \(key.keyType) does not match a=") }
        if let hashes = key.hashAlgorithms, !hashes.contains(signature.algorithm.hashName) {
            return finish(.permerror, "key h= does not allow \(signature.algorithm.hashName)")
        }
        guard key.serviceTypes.contains("*") || key.serviceTypes.contains("email") else {
            return finish(.permerror, "key not for email (s=)")
        }
        if key.flags.contains("s") {
            let iDomain = signature.identity.split(separator: "@").last.map { $0.lowercased() } ?? ""
            guard iDomain == signature.domain else { return finish(.permerror, "t=s key: i= must be exactly d=") }
        }

        // §6.1.3: body hash first (cheap), then the header hash and signature.
        if bodyTooShort { return finish(.fail, "body shorter than l=") }
        guard bodyHash == signature.bodyHash else { return finish(.fail, "body hash did not verify") }

        let data = Self.headerHashInput(signature: signature, field: field, header: header, headerBytes: headerBytes)
        let digest = SHA256.hash(data: data)
        switch signature.algorithm {
        case .rsaSHA256:
            let publicKey: _RSA.Signing.PublicKey
            do {
                // Keys under 2048 bits need the "unsafe" initialiser; RFC 8301 still allows 1024.
                publicKey = try _RSA.Signing.PublicKey(unsafeDERRepresentation: key.publicKey)
            } catch {
                return finish(.permerror, "unusable RSA key")
            }
            guard publicKey.keySizeInBits >= DKIMLimits.minimumRSAKeyBits else {
                return finish(.permerror, "RSA key shorter than \(DKIMLimits.minimumRSAKeyBits) bits (RFC 8301)")
            }
            let valid = publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature.signature),
                                                   for: digest, padding: .insecurePKCS1v1_5)
            return valid ? finish(.pass, "good signature") : finish(.fail, "signature did not verify")
        case .ed25519SHA256:
            // RFC 8463 §4: p= is the raw 32-byte public key; the signature is over the SHA-256 hash.
            guard key.publicKey.count == 32,
                  let publicKey = try? Curve25519.Signing.PublicKey(rawRepresentation: key.publicKey) else {
                return finish(.permerror, "unusable Ed25519 key")
            }
            let valid = publicKey.isValidSignature(signature.signature, for: Data(digest))
            return valid ? finish(.pass, "good signature") : finish(.fail, "signature did not verify")
        case .rsaSHA1:
            return finish(.fail, "rsa-sha1 is not accepted (RFC 8301)")
        }
    }

    /// §3.7: the selected header fields canonicalized, then the DKIM-Signature field itself with
    /// b= emptied and no final CRLF.
    static func headerHashInput(signature: DKIMSignature, field: HeaderField, header: MessageHeader,
                                headerBytes: [UInt8]) -> [UInt8] {
        var data: [UInt8] = []
        let c = signature.headerCanonicalization
        for selected in DKIMHeaderCanonicalizer.selectFields(signature.signedHeaders, from: header) {
            data += DKIMHeaderCanonicalizer.canonicalize(name: selected.name, value: selected.rawValue,
                                                         raw: headerBytes[selected.range], c)
        }
        // The signature field with b='s value removed: rebuild its raw bytes from the stripped value.
        let valueStart = field.range.upperBound - Self.lineBreakLength(headerBytes[field.range]) - field.rawValue.count
        let prefix = headerBytes[field.range.lowerBound..<max(field.range.lowerBound, valueStart)]
        data += DKIMHeaderCanonicalizer.canonicalize(name: field.name, value: signature.valueWithoutSignature,
                                                     raw: prefix + signature.valueWithoutSignature[...], c, includeCRLF: false)
        return data
    }

    static func lineBreakLength(_ raw: ArraySlice<UInt8>) -> Int {
        if raw.last == 0x0A { return raw.dropLast().last == 0x0D ? 2 : 1 }
        return 0
    }
}

/// Verification split in two so the body can be hashed as it streams in: create the session from
/// the header block, feed body chunks, then `finish`.
public struct DKIMVerificationSession: Sendable {
    let headerBytes: [UInt8]
    let header: MessageHeader
    /// Each signature field, parsed or with its syntax error.
    let signatures: [(field: HeaderField, parsed: Result<DKIMSignature, DKIMSyntaxError>)]
    /// One hasher per distinct (canonicalization, l=).
    private var hashers: [HasherKey: DKIMBodyHasher] = [:]

    struct HasherKey: Hashable, Sendable {
        var canonicalization: DKIMCanonicalization
        var limit: Int?
    }

    /// `headerBytes`: the header block (CRLF line endings), blank line included or not.
    public init(headerBytes: [UInt8]) {
        self.headerBytes = headerBytes
        header = MessageHeader(parsing: headerBytes)
        signatures = header.fields(named: "DKIM-Signature").prefix(DKIMLimits.maxSignaturesVerified).map { field in
            (field, Result { () throws(DKIMSyntaxError) in try DKIMSignature(parsing: field.rawValue) })
        }
        for case .success(let signature) in signatures.map(\.parsed) {
            let key = HasherKey(canonicalization: signature.bodyCanonicalization, limit: signature.bodyLength)
            if hashers[key] == nil { hashers[key] = DKIMBodyHasher(canonicalization: key.canonicalization, limit: key.limit) }
        }
    }

    /// True when the message carries at least one DKIM-Signature.
    public var hasSignatures: Bool { !signatures.isEmpty }

    /// Feeds body bytes.
    public mutating func update<Bytes: Sequence>(body chunk: Bytes) where Bytes.Element == UInt8 {
        if hashers.count == 1, let key = hashers.keys.first {
            hashers[key]?.update(chunk)
            return
        }
        let bytes = Array(chunk)
        for key in Array(hashers.keys) { hashers[key]?.update(bytes) }
    }

    /// Looks up keys and checks every signature. Signatures are checked concurrently.
    public mutating func finish(using verifier: DKIMVerifier) async -> [DKIMSignatureResult] {
        var hashes: [HasherKey: ([UInt8], Bool)] = [:]
        for (key, var hasher) in hashers {
            let hash = hasher.finalize()
            hashes[key] = (hash, hasher.isShorterThanLimit)
        }
        let header = self.header, headerBytes = self.headerBytes
        let work = signatures
        return await withTaskGroup(of: (Int, DKIMSignatureResult).self) { group in
            for (index, item) in work.enumerated() {
                switch item.parsed {
                case .failure(let error):
                    let tags = try? DKIMTagList.parse(item.field.rawValue)
                    func tagText(_ n: String) -> String? {
                        tags?.first { $0.name == n }.map { String(decoding: $0.value, as: UTF8.self) }
                    }
                    group.addTask {
                        (index, DKIMSignatureResult(result: .permerror, reason: "\(error)", signature: nil,
                                                    domain: tagText("d"), selector: tagText("s")))
                    }
                case .success(let signature):
                    let key = HasherKey(canonicalization: signature.bodyCanonicalization, limit: signature.bodyLength)
                    let (hash, short) = hashes[key] ?? ([], true)
                    let field = item.field
                    group.addTask {
                        (index, await verifier.check(signature, field: field, header: header, headerBytes: headerBytes,
                                                     bodyHash: hash, bodyTooShort: short))
                    }
                }
            }
            var results: [(Int, DKIMSignatureResult)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}
