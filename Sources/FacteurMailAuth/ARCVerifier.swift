// FacteurMailAuth: ARC chain validation (RFC 8617 §5.2). Collects the ARC sets, checks their
// structure (instances 1…N, one field of each kind per instance, the cv= rules), verifies the
// newest ARC-Message-Signature like a DKIM signature (RFC 6376 §6), optionally the older ones
// (to report the oldest passing instance, §5.2 step 5), then every ARC-Seal over the ARC sets
// (§5.1.1), newest first. Keys come from DNS (selector._domainkey.domain TXT) as for DKIM.

import Crypto
import _CryptoExtras
import FacteurDNS
import FacteurMIME
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What one ARC set says (for logs, the Authentication-Results comment and local policy).
public struct ARCInstanceInfo: Sendable, Hashable {
    public var instance: Int
    /// The ARC-Seal's d= and s=.
    public var sealerDomain: String
    public var selector: String
    /// The ARC-Authentication-Results payload after "i=N;", unfolded and trimmed.
    public var authenticationResults: String
    public var parsedResults: AuthenticationResultsHeader?

    public init(instance: Int, sealerDomain: String, selector: String, authenticationResults: String,
                parsedResults: AuthenticationResultsHeader?) {
        self.instance = instance
        self.sealerDomain = sealerDomain
        self.selector = selector
        self.authenticationResults = authenticationResults
        self.parsedResults = parsedResults
    }
}

/// The outcome of validating a message's ARC chain.
public struct ARCValidation: Sendable, Hashable {
    public var result: ARCResult
    /// Why (for logs and the Authentication-Results comment).
    public var reason: String
    /// The sets that could be read, oldest first (all of them when the result is pass).
    public var instances: [ARCInstanceInfo]
    /// RFC 8617 §5.2 step 5: the lowest instance whose ARC-Message-Signature, and every newer one,
    /// still verifies (1 means every AMS verifies). Nil unless the chain passed and older
    /// signatures were checked (`ARCVerifier.validateOlderSignatures`).
    public var oldestPassingAMS: Int?
    /// The failure came from a DNS error that may go away (a lookup timed out or SERVFAIL).
    public var isTemporaryFailure: Bool = false

    public init(result: ARCResult, reason: String, instances: [ARCInstanceInfo] = [], oldestPassingAMS: Int? = nil,
                isTemporaryFailure: Bool = false) {
        self.result = result
        self.reason = reason
        self.instances = instances
        self.oldestPassingAMS = oldestPassingAMS
        self.isTemporaryFailure = isTemporaryFailure
    }

    /// The value for Authentication-Results' header.oldest-pass: 0 when every AMS verifies (as
    /// OpenARC writes it), else the lowest instance from which every AMS verifies.
    public var oldestPassProperty: Int? { oldestPassingAMS.map { $0 == 1 ? 0 : $0 } }

    /// The newest set (the sealer that handed us the message).
    public var latest: ARCInstanceInfo? { instances.last }
}

/// Validates ARC chains. Sendable: create one and share it.
public struct ARCVerifier: Sendable {
    public let resolver: any DNSResolver
    /// Seconds since the epoch; injectable for tests.
    public var clock: @Sendable () -> Int64
    /// Tolerance for an AMS x= in the past.
    public var allowedClockSkew: Int64
    /// Signing algorithms accepted in a= . RFC 8617 uses rsa-sha256 only; adding ed25519-sha256
    /// accepts chains from sealers that use RFC 8463 keys (not interoperable with every validator).
    public var algorithms: Set<DKIMAlgorithm>
    /// Also verify the older ARC-Message-Signatures to compute `oldestPassingAMS` (more DNS and RSA).
    public var validateOlderSignatures: Bool

    public init(resolver: any DNSResolver, allowedClockSkew: Int64 = DKIMLimits.defaultClockSkew,
                algorithms: Set<DKIMAlgorithm> = [.rsaSHA256], validateOlderSignatures: Bool = false,
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.resolver = resolver
        self.allowedClockSkew = allowedClockSkew
        self.algorithms = algorithms
        self.validateOlderSignatures = validateOlderSignatures
        self.clock = clock
    }

    /// Validates the chain of a whole message (CRLF line endings).
    public func validate(message: [UInt8]) async -> ARCValidation {
        let header = MessageHeader(parsing: message)
        var session = session(headerBytes: Array(message[..<header.bodyOffset]))
        session.update(body: message[header.bodyOffset...])
        return await session.finish(using: self)
    }

    /// A streaming validation: feed the body to the session, then call `finish(using:)`.
    public func session(headerBytes: [UInt8]) -> ARCVerificationSession {
        ARCVerificationSession(headerBytes: headerBytes, algorithms: algorithms)
    }
}

/// One complete ARC set (§4.1), with the fields it came from.
struct ARCSet: Sendable {
    var aar: ARCAuthenticationResults
    var aarField: HeaderField
    var ams: ARCMessageSignature
    var amsField: HeaderField
    var seal: ARCSeal
    var sealField: HeaderField
}

/// Validation split in two so the body can be hashed as it streams in: create the session from
/// the header block, feed body chunks, then `finish`.
public struct ARCVerificationSession: Sendable {
    enum State: Sendable {
        case none
        case failed(String)
        case chain([ARCSet])
    }

    let headerBytes: [UInt8]
    let header: MessageHeader
    let state: State
    let instances: [ARCInstanceInfo]
    private var hashers: [DKIMVerificationSession.HasherKey: DKIMBodyHasher] = [:]

    /// `headerBytes`: the header block (CRLF line endings), blank line included or not.
    public init(headerBytes: [UInt8], algorithms: Set<DKIMAlgorithm> = [.rsaSHA256]) {
        self.headerBytes = headerBytes
        header = MessageHeader(parsing: headerBytes)
        let collected = Self.collect(header: header, algorithms: algorithms)
        state = collected.0
        instances = collected.1
        if case .chain(let sets) = state {
            for set in sets {
                let key = DKIMVerificationSession.HasherKey(canonicalization: set.ams.bodyCanonicalization,
                                                             limit: set.ams.bodyLength)
                if hashers[key] == nil { hashers[key] = DKIMBodyHasher(canonicalization: key.canonicalization, limit: key.limit) }
            }
        }
    }

    /// True when the message carries ARC header fields.
    public var hasChain: Bool {
        if case .none = state { return false }
        return true
    }

    /// Feeds body bytes (nothing is kept when there is no chain to check).
    public mutating func update<Bytes: Sequence>(body chunk: Bytes) where Bytes.Element == UInt8 {
        if hashers.count == 1, let key = hashers.keys.first {
            hashers[key]?.update(chunk)
            return
        }
        guard !hashers.isEmpty else { return }
        let bytes = Array(chunk)
        for key in Array(hashers.keys) { hashers[key]?.update(bytes) }
    }

    /// §5.2 steps 1–3: collect the sets and check their structure.
    static func collect(header: MessageHeader, algorithms: Set<DKIMAlgorithm>) -> (State, [ARCInstanceInfo]) {
        var seals: [Int: [(ARCSeal, HeaderField)]] = [:]
        var signatures: [Int: [(ARCMessageSignature, HeaderField)]] = [:]
        var results: [Int: [(ARCAuthenticationResults, HeaderField)]] = [:]
        var firstError: String?
        var count = 0
        for field in header.fields {
            let isSeal = field.hasName(ARCFieldName.seal)
            let isSignature = field.hasName(ARCFieldName.messageSignature)
            let isResults = field.hasName(ARCFieldName.authenticationResults)
            guard isSeal || isSignature || isResults else { continue }
            count += 1
            guard count <= ARCLimits.maxFields else { return (.failed("too many ARC header fields"), []) }
            do throws(DKIMSyntaxError) {
                if isSeal {
                    let seal = try ARCSeal(parsing: field.rawValue, algorithms: algorithms)
                    seals[seal.instance, default: []].append((seal, field))
                } else if isSignature {
                    let ams = try ARCMessageSignature(parsing: field.rawValue, algorithms: algorithms)
                    signatures[ams.instance, default: []].append((ams, field))
                } else {
                    let aar = try ARCAuthenticationResults(parsing: field.rawValue)
                    results[aar.instance, default: []].append((aar, field))
                }
            } catch {
                if firstError == nil { firstError = "\(field.name): \(error)" }
            }
        }
        guard count > 0 else { return (.none, []) }
        let newest = Set(seals.keys).union(signatures.keys).union(results.keys).max() ?? 0

        // What can be reported even for a broken chain: instances with one seal and one AAR.
        var infos: [ARCInstanceInfo] = []
        if newest > 0 {
            for i in 1...newest {
                guard let s = seals[i], s.count == 1, let r = results[i], r.count == 1 else { continue }
                infos.append(ARCInstanceInfo(instance: i, sealerDomain: s[0].0.domain, selector: s[0].0.selector,
                                             authenticationResults: r[0].0.payload, parsedResults: r[0].0.parsed))
            }
        }
        // Step 2: any malformed ARC field fails the chain, as does a newest seal saying cv=fail.
        if let firstError { return (.failed(firstError), infos) }
        if seals[newest]?.contains(where: { $0.0.chainValidation == .fail }) == true {
            return (.failed("ARC-Seal i=\(newest) has cv=fail: the chain was already broken"), infos)
        }
        // Step 3: instances 1…N each with exactly one AAR, AMS and AS; i=1 says cv=none, others cv=pass.
        guard newest >= 1 else { return (.failed("no ARC instance could be read"), infos) }
        var sets: [ARCSet] = []
        for i in 1...newest {
            guard let s = seals[i], let m = signatures[i], let r = results[i] else {
                return (.failed("ARC set i=\(i) is incomplete"), infos)
            }
            guard s.count == 1, m.count == 1, r.count == 1 else {
                return (.failed("ARC set i=\(i) has a duplicated field"), infos)
            }
            let expected: ARCResult = i == 1 ? .none : .pass
            guard s[0].0.chainValidation == expected else {
                return (.failed("ARC-Seal i=\(i) has cv=\(s[0].0.chainValidation.rawValue), expected \(expected.rawValue)"), infos)
            }
            sets.append(ARCSet(aar: r[0].0, aarField: r[0].1, ams: m[0].0, amsField: m[0].1, seal: s[0].0, sealField: s[0].1))
        }
        return (.chain(sets), infos)
    }

    /// §5.2 steps 4–7: verifies the newest AMS (and the older ones if asked), then every seal.
    public mutating func finish(using verifier: ARCVerifier) async -> ARCValidation {
        let sets: [ARCSet]
        switch state {
        case .none:
            return ARCValidation(result: .none, reason: "no ARC sets")
        case .failed(let reason):
            return ARCValidation(result: .fail, reason: reason, instances: instances)
        case .chain(let chain):
            sets = chain
        }
        var hashes: [DKIMVerificationSession.HasherKey: ([UInt8], Bool)] = [:]
        for (key, var hasher) in hashers {
            let hash = hasher.finalize()
            hashes[key] = (hash, hasher.isShorterThanLimit)
        }
        var keys = ARCKeyCache()
        func fail(_ reason: String, temporary: Bool = false) -> ARCValidation {
            ARCValidation(result: .fail, reason: reason, instances: instances, isTemporaryFailure: temporary)
        }

        // Step 4: the newest AMS must verify.
        let newest = sets.count
        let check = await verifyAMS(sets[newest - 1], hashes: hashes, verifier: verifier, keys: &keys)
        guard check.ok else {
            return fail("ARC-Message-Signature i=\(newest): \(check.reason)", temporary: check.temporary)
        }
        // The seals' keys (and the older AMS keys, when asked) are fetched concurrently: a chain of
        // many hops would otherwise cost one DNS round trip per sealer in turn.
        var names = sets.map { ARCKeyCache.Name(domain: $0.seal.domain, selector: $0.seal.selector) }
        if verifier.validateOlderSignatures {
            names += sets.dropLast().map { ARCKeyCache.Name(domain: $0.ams.domain, selector: $0.ams.selector) }
        }
        await keys.prefetch(names, resolver: verifier.resolver)
        // Step 5 (optional): walk back while the older AMS still verify.
        var oldestPass: Int?
        if verifier.validateOlderSignatures {
            oldestPass = newest
            for index in stride(from: newest - 2, through: 0, by: -1) {
                guard await verifyAMS(sets[index], hashes: hashes, verifier: verifier, keys: &keys).ok else { break }
                oldestPass = index + 1
            }
        }
        // Step 6: every seal, newest first.
        for index in stride(from: newest - 1, through: 0, by: -1) {
            let data = Self.sealHashInput(sets[...index])
            let seal = sets[index].seal
            let check = await keys.verify(seal.signature, over: data, algorithm: seal.algorithm, domain: seal.domain,
                                          selector: seal.selector, resolver: verifier.resolver)
            guard check.ok else {
                return fail("ARC-Seal i=\(index + 1): \(check.reason)", temporary: check.temporary)
            }
        }
        return ARCValidation(result: .pass, reason: "\(newest) ARC set\(newest == 1 ? "" : "s") verified",
                             instances: instances, oldestPassingAMS: oldestPass)
    }

    func verifyAMS(_ set: ARCSet, hashes: [DKIMVerificationSession.HasherKey: ([UInt8], Bool)], verifier: ARCVerifier,
                   keys: inout ARCKeyCache) async -> ARCCheck {
        let ams = set.ams
        if let x = ams.expiration, verifier.clock() > x &+ verifier.allowedClockSkew {
            return ARCCheck(ok: false, reason: "signature expired")
        }
        let key = DKIMVerificationSession.HasherKey(canonicalization: ams.bodyCanonicalization, limit: ams.bodyLength)
        guard let entry = hashes[key], !entry.1 else {
            return ARCCheck(ok: false, reason: "body shorter than l=")
        }
        guard entry.0 == ams.bodyHash else { return ARCCheck(ok: false, reason: "body hash did not verify") }
        let data = amsHashInput(ams, field: set.amsField)
        return await keys.verify(ams.signature, over: data, algorithm: ams.algorithm, domain: ams.domain,
                                 selector: ams.selector, resolver: verifier.resolver)
    }

    /// RFC 6376 §3.7 applied to the AMS: the fields h= names, then the AMS with b= emptied, no CRLF.
    func amsHashInput(_ ams: ARCMessageSignature, field: HeaderField) -> [UInt8] {
        var data: [UInt8] = []
        let c = ams.headerCanonicalization
        for selected in DKIMHeaderCanonicalizer.selectFields(ams.signedHeaders, from: header) {
            data += DKIMHeaderCanonicalizer.canonicalize(name: selected.name, value: selected.rawValue,
                                                         raw: headerBytes[selected.range], c)
        }
        let valueStart = field.range.upperBound - DKIMVerifier.lineBreakLength(headerBytes[field.range]) - field.rawValue.count
        let prefix = headerBytes[field.range.lowerBound..<max(field.range.lowerBound, valueStart)]
        data += DKIMHeaderCanonicalizer.canonicalize(name: field.name, value: ams.valueWithoutSignature,
                                                     raw: prefix + ams.valueWithoutSignature[...], c, includeCRLF: false)
        return data
    }

    /// §5.1.1: the sets from i=1 up to the seal's own, each as AAR, AMS, AS, relaxed; the seal being
    /// checked last, with b= emptied and no final CRLF.
    static func sealHashInput(_ sets: ArraySlice<ARCSet>) -> [UInt8] {
        var data: [UInt8] = []
        for (offset, set) in sets.enumerated() {
            data += DKIMHeaderCanonicalizer.canonicalize(name: set.aarField.name, value: set.aarField.rawValue, raw: [], .relaxed)
            data += DKIMHeaderCanonicalizer.canonicalize(name: set.amsField.name, value: set.amsField.rawValue, raw: [], .relaxed)
            if offset == sets.count - 1 {
                data += DKIMHeaderCanonicalizer.canonicalize(name: set.sealField.name, value: set.seal.valueWithoutSignature,
                                                             raw: [], .relaxed, includeCRLF: false)
            } else {
                data += DKIMHeaderCanonicalizer.canonicalize(name: set.sealField.name, value: set.sealField.rawValue,
                                                             raw: [], .relaxed)
            }
        }
        return data
    }
}

struct ARCCheck: Sendable {
    var ok: Bool
    var reason: String
    var temporary = false
}

/// Key records looked up during one validation, so a sealer's key is fetched once per message.
struct ARCKeyCache {
    private var records: [String: Result<DKIMKeyRecord, ARCKeyError>] = [:]

    struct ARCKeyError: Error, Sendable {
        var reason: String
        var temporary: Bool
    }

    struct Name: Hashable, Sendable {
        var domain: String
        var selector: String
        var text: String { "\(selector)._domainkey.\(domain)" }
    }

    mutating func key(domain: String, selector: String, resolver: any DNSResolver) async -> Result<DKIMKeyRecord, ARCKeyError> {
        let name = Name(domain: domain, selector: selector).text
        if let known = records[name] { return known }
        let outcome = await Self.fetch(name, resolver: resolver)
        records[name] = outcome
        return outcome
    }

    /// Looks up every key not known yet, at the same time.
    mutating func prefetch(_ names: [Name], resolver: any DNSResolver) async {
        let missing = Set(names.map(\.text)).subtracting(records.keys)
        guard !missing.isEmpty else { return }
        let fetched = await withTaskGroup(of: (String, Result<DKIMKeyRecord, ARCKeyError>).self) { group in
            for name in missing {
                group.addTask { (name, await Self.fetch(name, resolver: resolver)) }
            }
            var all: [(String, Result<DKIMKeyRecord, ARCKeyError>)] = []
            for await item in group { all.append(item) }
            return all
        }
        for (name, outcome) in fetched { records[name] = outcome }
    }

    static func fetch(_ name: String, resolver: any DNSResolver) async -> Result<DKIMKeyRecord, ARCKeyError> {
        let keyName: DNSName
        do {
            keyName = try DNSName(name)
        } catch {
            return .failure(ARCKeyError(reason: "key name is not a domain name", temporary: false))
        }
        let records: [TXTRecord]
        do {
            records = try await resolver.txt(keyName)
        } catch {
            if error.isNotFound { return .failure(ARCKeyError(reason: "no key at \(name)", temporary: false)) }
            return .failure(ARCKeyError(reason: "key lookup failed: \(error)", temporary: true))
        }
        var problem = "no key record at \(name)"
        for record in records {
            do {
                return .success(try DKIMKeyRecord(parsing: record.joined))
            } catch {
                problem = "key record: \(error)"
            }
        }
        return .failure(ARCKeyError(reason: problem, temporary: false))
    }

    /// Checks `signature` over SHA-256(`data`) with the key at selector._domainkey.domain (RFC 6376 §3.6).
    mutating func verify(_ signature: [UInt8], over data: [UInt8], algorithm: DKIMAlgorithm, domain: String,
                         selector: String, resolver: any DNSResolver) async -> ARCCheck {
        let key: DKIMKeyRecord
        switch await self.key(domain: domain, selector: selector, resolver: resolver) {
        case .success(let record):
            key = record
        case .failure(let error):
            return ARCCheck(ok: false, reason: error.reason, temporary: error.temporary)
        }
        if key.isRevoked { return ARCCheck(ok: false, reason: "key revoked") }
        guard key.keyType == algorithm.keyType else { return ARCCheck(ok: false, reason: "key type \(key.keyType) does not match a=") }
        if let hashes = key.hashAlgorithms, !hashes.contains(algorithm.hashName) {
            return ARCCheck(ok: false, reason: "key h= does not allow \(algorithm.hashName)")
        }
        guard key.serviceTypes.contains("*") || key.serviceTypes.contains("email") else {
            return ARCCheck(ok: false, reason: "key not for email (s=)")
        }
        let digest = SHA256.hash(data: data)
        switch algorithm {
        case .rsaSHA256:
            guard let publicKey = try? _RSA.Signing.PublicKey(unsafeDERRepresentation: key.publicKey) else {
                return ARCCheck(ok: false, reason: "unusable RSA key")
            }
            guard publicKey.keySizeInBits >= DKIMLimits.minimumRSAKeyBits else {
                return ARCCheck(ok: false, reason: "RSA key shorter than \(DKIMLimits.minimumRSAKeyBits) bits (RFC 8301)")
            }
            let valid = publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature),
                                                   for: digest, padding: .insecurePKCS1v1_5)
            return ARCCheck(ok: valid, reason: valid ? "good signature" : "signature did not verify")
        case .ed25519SHA256:
            guard key.publicKey.count == 32,
                  let publicKey = try? Curve25519.Signing.PublicKey(rawRepresentation: key.publicKey) else {
                return ARCCheck(ok: false, reason: "unusable Ed25519 key")
            }
            let valid = publicKey.isValidSignature(signature, for: Data(digest))
            return ARCCheck(ok: valid, reason: valid ? "good signature" : "signature did not verify")
        case .rsaSHA1:
            return ARCCheck(ok: false, reason: "rsa-sha1 is not accepted (RFC 8301)")
        }
    }
}
