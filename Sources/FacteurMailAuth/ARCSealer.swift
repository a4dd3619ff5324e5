// FacteurMailAuth: ARC sealing (RFC 8617 §5.1): adds an ARC set — ARC-Authentication-Results
// (§4.1.1), ARC-Message-Signature (§4.1.2, a DKIM-style signature, relaxed/relaxed) and ARC-Seal
// (§4.1.3, a signature over the ARC sets, §5.1.1) — with rsa-sha256 or, on request, ed25519-sha256.

import Crypto
import _CryptoExtras
import FacteurMIME
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public enum ARCSealingError: Error, Sendable, Hashable {
    /// The newest ARC-Seal says cv=fail: the chain is over and no set may be added (RFC 8617 §5.1.2).
    case chainTerminated
    /// The message already has 50 sets (RFC 8617 §4.2.1).
    case tooManyInstances
    /// The chain validation given does not fit the message (§5.1.1.1: cv=none only for i=1, and an
    /// i=1 set cannot claim a chain that does not exist), or the existing chain is malformed.
    case invalidChainValidation(String)
    case invalidDomain(String)
    case signingFailed(String)
}

/// Seals messages for one domain and selector.
public struct ARCSealer: Sendable {
    /// DKIM's defaults plus DKIM-Signature, so the AMS also vouches for the signatures it saw.
    public static let defaultSignedHeaders = DKIMSigner.defaultSignedHeaders + ["dkim-signature"]

    public var domain: String
    public var selector: String
    public var key: DKIMSigningKey
    /// The fields the AMS signs when present, each instance of them (ARC-Seal is never signed, §4.1.2).
    public var signedHeaders: [String]

    public init(domain: String, selector: String, key: DKIMSigningKey, signedHeaders: [String] = ARCSealer.defaultSignedHeaders) {
        self.domain = domain.lowercased()
        self.selector = selector.lowercased()
        self.key = key
        self.signedHeaders = signedHeaders.map { $0.lowercased() }.filter { $0 != "arc-seal" }
    }

    /// A body hasher matching what `seal(headerBytes:bodyHash:…)` expects (relaxed body canonicalization).
    public static func makeBodyHasher() -> DKIMBodyHasher { DKIMBodyHasher(canonicalization: .relaxed) }

    /// Seals a whole message (CRLF line endings).
    /// - authenticationResults: the resinfo list of our Authentication-Results (what follows the
    ///   authserv-id, e.g. "spf=pass smtp.mailfrom=a@b; dkim=pass header.d=b; arc=pass"); empty means "none".
    /// - chainValidation: our validation of the chain as received (`ARCVerifier`), which becomes cv=.
    /// Returns ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results, folded, each ending
    /// with CRLF, to prepend to the message in that order.
    public func seal(message: [UInt8], authenticationResults: String, chainValidation: ARCResult, authservID: String,
                     timestamp: Int64) throws(ARCSealingError) -> String {
        let header = MessageHeader(parsing: message)
        var hasher = Self.makeBodyHasher()
        hasher.update(message[header.bodyOffset...])
        return try seal(headerBytes: Array(message[..<header.bodyOffset]), bodyHash: hasher.finalize(),
                        authenticationResults: authenticationResults, chainValidation: chainValidation,
                        authservID: authservID, timestamp: timestamp)
    }

    /// Seals given the header block and the body hash from `makeBodyHasher()` (streaming).
    public func seal(headerBytes: [UInt8], bodyHash: [UInt8], authenticationResults: String, chainValidation: ARCResult,
                     authservID: String, timestamp: Int64) throws(ARCSealingError) -> String {
        guard DKIMSignature.isDomainName(domain, allowSingleLabel: false) else { throw .invalidDomain(domain) }
        guard DKIMSignature.isDomainName(selector) else { throw .invalidDomain(selector) }
        guard !authservID.isEmpty, authservID.utf8.allSatisfy(AuthenticationResultsParser.isTokenByte) else {
            throw .invalidDomain(authservID)
        }
        let header = MessageHeader(parsing: headerBytes)
        let (existing, instance) = try existingChain(header, chainValidation)
        guard instance <= ARCLimits.maxInstance else { throw .tooManyInstances }
        switch (instance, chainValidation) {
        case (1, .none), (2..., .pass), (2..., .fail):
            break
        case (1, _):
            throw .invalidChainValidation("no ARC set on the message: cv must be none")
        default:
            throw .invalidChainValidation("the message has ARC sets: cv must be pass or fail")
        }

        // ARC-Authentication-Results (§4.1.1): i=N; authserv-id; results.
        var results = Self.collapse(authenticationResults)
        while results.hasPrefix(";") { results = Self.collapse(String(results.dropFirst())) }
        while results.hasSuffix(";") { results = Self.collapse(String(results.dropLast())) }
        if results.isEmpty { results = "none" }
        let aarValue = Self.foldText(" i=\(instance); \(authservID); \(results)", nameLength: ARCFieldName.authenticationResults.count + 1)
        let aarField = ARCFieldName.authenticationResults + ":" + aarValue + "\r\n"

        // ARC-Message-Signature (§4.1.2): hashed like a DKIM-Signature over the header with the new
        // AAR on top, so an h= naming arc-authentication-results covers it.
        let withAAR = Array(aarField.utf8) + headerBytes
        let signingHeader = MessageHeader(parsing: withAAR)
        var names: [String] = []
        for name in signedHeaders {
            names += Array(repeating: name, count: signingHeader.fields(named: name).count)
        }
        let amsTags: [(String, String)] = [
            ("a", key.algorithm.rawValue), ("b", ""), ("bh", Data(bodyHash).base64EncodedString()),
            ("c", "relaxed/relaxed"), ("d", domain), ("h", names.joined(separator: ":")), ("i", "\(instance)"),
            ("s", selector), ("t", "\(timestamp)"),
        ]
        var amsData: [UInt8] = []
        for selected in DKIMHeaderCanonicalizer.selectFields(names, from: signingHeader) {
            amsData += DKIMHeaderCanonicalizer.canonicalize(name: selected.name, value: selected.rawValue,
                                                            raw: withAAR[selected.range], .relaxed)
        }
        amsData += Self.relaxedUnsigned(ARCFieldName.messageSignature, amsTags)
        let amsValue = Self.foldTags(amsTags, signature: try sign(amsData),
                                    nameLength: ARCFieldName.messageSignature.count + 1, breakSignature: false)

        // ARC-Seal (§5.1.1): the sets 1…N as AAR, AMS, AS, relaxed; with cv=fail only the new set (§5.1.2).
        let sealTags: [(String, String)] = [
            ("a", key.algorithm.rawValue), ("b", ""), ("cv", chainValidation.rawValue), ("d", domain),
            ("i", "\(instance)"), ("s", selector), ("t", "\(timestamp)"),
        ]
        var sealData: [UInt8] = []
        if chainValidation != .fail {
            for set in existing {
                for field in [set.aarField, set.amsField, set.sealField] {
                    sealData += DKIMHeaderCanonicalizer.canonicalize(name: field.name, value: field.rawValue, raw: [], .relaxed)
                }
            }
        }
        sealData += DKIMHeaderCanonicalizer.canonicalize(name: ARCFieldName.authenticationResults, value: Array(aarValue.utf8),
                                                         raw: [], .relaxed)
        sealData += DKIMHeaderCanonicalizer.canonicalize(name: ARCFieldName.messageSignature, value: Array(amsValue.utf8),
                                                         raw: [], .relaxed)
        sealData += Self.relaxedUnsigned(ARCFieldName.seal, sealTags)
        let sealValue = Self.foldTags(sealTags, signature: try sign(sealData),
                                     nameLength: ARCFieldName.seal.count + 1, breakSignature: true)

        return ARCFieldName.seal + ":" + sealValue + "\r\n"
            + ARCFieldName.messageSignature + ":" + amsValue + "\r\n"
            + aarField
    }

    /// The sets already on the message and the instance of the new one. A chain that validates
    /// structurally is extended; a broken one only with cv=fail (§5.1.2: the new seal then covers
    /// its own set alone), numbered after the highest i= that can be read; none after cv=fail.
    func existingChain(_ header: MessageHeader, _ chainValidation: ARCResult) throws(ARCSealingError) -> ([ARCSet], Int) {
        let algorithms: Set<DKIMAlgorithm> = [.rsaSHA256, .ed25519SHA256]
        let (state, _) = ARCVerificationSession.collect(header: header, algorithms: algorithms)
        switch state {
        case .none:
            return ([], 1)
        case .chain(let sets):
            return (sets, sets.count + 1)
        case .failed(let reason):
            let seals = header.fields(named: ARCFieldName.seal).compactMap { try? ARCSeal(parsing: $0.rawValue, algorithms: algorithms) }
            if let newest = seals.max(by: { $0.instance < $1.instance }), newest.chainValidation == .fail {
                throw .chainTerminated
            }
            guard chainValidation == .fail else {
                throw .invalidChainValidation("the existing ARC chain is malformed (\(reason)): seal it with cv=fail")
            }
            let newest = Self.highestInstance(header)
            guard newest >= 1 else { throw .invalidChainValidation("no ARC instance can be read: cv=fail needs i>1") }
            return ([], newest + 1)
        }
    }

    /// The highest i= among the ARC fields whose instance can be read, however broken the rest is.
    static func highestInstance(_ header: MessageHeader) -> Int {
        var highest = 0
        for field in header.fields {
            var instance: Int?
            if field.hasName(ARCFieldName.seal) || field.hasName(ARCFieldName.messageSignature) {
                if let tags = try? DKIMTagList.parse(field.rawValue), let i = tags.first(where: { $0.name == "i" }) {
                    instance = try? ARCTags.instance(ARCTags.text(i.value))
                }
            } else if field.hasName(ARCFieldName.authenticationResults) {
                instance = (try? ARCAuthenticationResults(parsing: field.rawValue))?.instance
            }
            if let instance { highest = max(highest, instance) }
        }
        return highest
    }

    func sign(_ data: [UInt8]) throws(ARCSealingError) -> String {
        let digest = SHA256.hash(data: data)
        do {
            switch key {
            case .rsa(let rsa):
                return try rsa.signature(for: digest, padding: .insecurePKCS1v1_5).rawRepresentation.base64EncodedString()
            case .ed25519(let ed):
                return try ed.signature(for: Data(digest)).base64EncodedString()
            }
        } catch {
            throw .signingFailed("\(error)")
        }
    }

    /// "name:a=…; b=; …" canonicalized relaxed, without CRLF: what the signature covers (RFC 6376 §3.7).
    static func relaxedUnsigned(_ name: String, _ tags: [(String, String)]) -> [UInt8] {
        let value = tags.map { "\($0.0)=\($0.1)" }.joined(separator: "; ")
        return DKIMHeaderCanonicalizer.canonicalize(name: name, value: Array(value.utf8), raw: [], .relaxed, includeCRLF: false)
    }

    /// Tags joined by "; ", folded before a tag that would pass 76 columns. b= carries `signature`:
    /// broken over lines when `breakSignature` (verifiers drop its folding whitespace, RFC 6376 §3.5),
    /// else alone on its line in one piece. The AMS keeps its b= whole because later seals hash the
    /// AMS relaxed, where whitespace inside b= survives as spaces: whole, our seal's input is the one
    /// the reference sealer of the ARC test suite (and dkimpy) computes, and the suite's b= match.
    static func foldTags(_ tags: [(String, String)], signature: String, nameLength: Int, breakSignature: Bool) -> String {
        var out = ""
        var column = nameLength
        for (index, tag) in tags.enumerated() {
            let last = index == tags.count - 1
            if tag.0 == "b" {
                if column + 4 > 76 || !breakSignature {
                    out += "\r\n\tb="
                    column = 10
                } else {
                    out += " b="
                    column += 3
                }
                var rest = Substring(signature)
                while !rest.isEmpty {
                    let room = breakSignature ? max(8, 76 - column) : rest.count
                    out += rest.prefix(room)
                    column += min(room, rest.count)
                    rest = rest.dropFirst(room)
                    if !rest.isEmpty {
                        out += "\r\n\t"
                        column = 8
                    }
                }
                out += last ? "" : ";"
                column += 1
                continue
            }
            let text = "\(tag.0)=\(tag.1)" + (last ? "" : ";")
            if column + 1 + text.count > 76 {
                out += "\r\n\t"
                column = 8
            } else {
                out += " "
                column += 1
            }
            out += text
            column += text.count
        }
        return out
    }

    /// Folds free text at spaces outside quoted strings and comments, keeping lines near 76 columns.
    static func foldText(_ text: String, nameLength: Int) -> String {
        var out = ""
        var column = nameLength
        var word = ""
        var inQuotes = false, escaped = false, commentDepth = 0
        func flush(_ isFirst: Bool) {
            if !isFirst && column + 1 + word.count > 76 {
                out += "\r\n\t"
                column = 8
            } else if !isFirst {
                out += " "
                column += 1
            }
            out += word
            column += word.count
            word = ""
        }
        var first = true
        // The text starts with one space (after the colon): keep it as the first separator.
        for ch in text.dropFirst() {
            if escaped {
                escaped = false
            } else if ch == "\\" && (inQuotes || commentDepth > 0) {
                escaped = true
            } else if ch == "\"" && commentDepth == 0 {
                inQuotes.toggle()
            } else if ch == "(" && !inQuotes {
                commentDepth += 1
            } else if ch == ")" && !inQuotes && commentDepth > 0 {
                commentDepth -= 1
            } else if ch == " " && !inQuotes && commentDepth == 0 {
                flush(first)
                first = false
                continue
            }
            word.append(ch)
        }
        flush(first)
        return " " + out
    }

    /// Splits a resinfo list at the ";" that are outside quoted strings and comments.
    static func splitResults(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var inQuotes = false, escaped = false, commentDepth = 0
        for ch in text {
            if escaped {
                escaped = false
            } else if ch == "\\" && (inQuotes || commentDepth > 0) {
                escaped = true
            } else if ch == "\"" && commentDepth == 0 {
                inQuotes.toggle()
            } else if ch == "(" && !inQuotes {
                commentDepth += 1
            } else if ch == ")" && !inQuotes && commentDepth > 0 {
                commentDepth -= 1
            } else if ch == ";" && !inQuotes && commentDepth == 0 {
                parts.append(current)
                current = ""
                continue
            }
            current.append(ch)
        }
        parts.append(current)
        return parts
    }

    /// Unfolds and collapses whitespace runs (the AAR is hashed relaxed anyway, §5.1.1).
    static func collapse(_ text: String) -> String {
        String(decoding: DKIMHeaderCanonicalizer.relaxedValue(Array(text.utf8)), as: UTF8.self)
    }

    /// Merges the results of every Authentication-Results field carrying `authservID` into one
    /// resinfo list ("spf=pass …; dkim=pass …"), as written, for `seal(…authenticationResults:)`.
    /// Nil when there is no such field.
    public static func authenticationResults(in header: MessageHeader, authservID: String) -> String? {
        var pieces: [String] = []
        for field in header.fields(named: "Authentication-Results") {
            guard let id = AuthenticationResultsParser.authservID(of: field.rawValue),
                  id.lowercased() == authservID.lowercased(),
                  let offset = AuthenticationResultsParser.resultsOffset(of: field.rawValue) else { continue }
            let text = collapse(String(decoding: field.rawValue[offset...], as: UTF8.self))
            for part in splitResults(text) {
                let trimmed = collapse(part)
                // The "none" form (RFC 8601 §2.2 no-result) adds nothing to a merged list.
                if !trimmed.isEmpty && trimmed.lowercased() != "none" { pieces.append(trimmed) }
            }
            if pieces.count > AuthenticationResultsLimits.maxResults { break }
        }
        if pieces.isEmpty && !header.fields(named: "Authentication-Results").contains(where: {
            AuthenticationResultsParser.authservID(of: $0.rawValue)?.lowercased() == authservID.lowercased()
        }) {
            return nil
        }
        return pieces.joined(separator: "; ")
    }
}
