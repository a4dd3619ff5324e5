// FacteurMailAuth: DMARC evaluation — policy discovery (RFC 7489 §6.6.3, or the DMARCbis DNS Tree
// Walk, draft-ietf-dmarc-dmarcbis-41 §4.10), identifier alignment (RFC 7489 §3.1), the pass/fail
// decision (§4.2), the requested policy with sp= and np= (RFC 9091 §4.1), pct= sampling (§6.6.4) and
// DMARCbis t=, and the external report destination check (RFC 7489 §7.1). DNS goes through
// `DNSResolver`; queries are shared and bounded per evaluation.

import FacteurDNS

/// What the receiver knows about a message when DMARC runs (RFC 7489 §4.2, §6.6.2).
public struct DMARCInput: Sendable {
    /// The RFC5322.From domain (any case; U-labels are converted to A-labels).
    public var fromDomain: String
    /// The SPF result for `spfDomain`.
    public var spfResult: SPFResult
    /// The domain SPF evaluated: the RFC5321.MailFrom domain, or the HELO domain when the reverse
    /// path is null (RFC 7489 §4.1, RFC 7208 §2.4).
    public var spfDomain: String
    /// Every DKIM signature's result and its d= domain.
    public var dkim: [(result: DKIMResult, domain: String)]

    public init(fromDomain: String, spfResult: SPFResult, spfDomain: String, dkim: [(result: DKIMResult, domain: String)]) {
        self.fromDomain = fromDomain
        self.spfResult = spfResult
        self.spfDomain = spfDomain
        self.dkim = dkim
    }
}

/// The DMARC result in RFC 8601 §2.7.6 vocabulary (dmarc=).
public enum DMARCResult: String, Sendable, Hashable {
    /// No usable policy record: DMARC does not apply.
    case none
    case pass, fail
    /// A DNS lookup failed temporarily; the receiver may retry (4xx) or fail open.
    case temperror
    /// The From domain is not a valid domain name.
    case permerror
}

/// The outcome of one evaluation.
public struct DMARCEvaluation: Sendable {
    public var result: DMARCResult
    /// The From domain as evaluated (lower-cased A-labels; the input when it was not a valid name).
    public var fromDomain: String
    /// Where the record was found (the DMARC Policy Domain); nil when none was.
    public var policyDomain: String?
    public var record: DMARCRecord?
    /// The requested policy that applies to this From domain: p=, or sp=/np= when the record came
    /// from a parent domain (nil when no record).
    public var policy: DMARCPolicy?
    /// What to do with this message: none on pass; on fail the policy, one step less strict when
    /// pct= sampled the message out or t=y (RFC 7489 §6.6.4, DMARCbis §4.7).
    public var disposition: DMARCPolicy
    /// A passing SPF result whose domain aligns with the From domain.
    public var spfAligned: Bool
    /// A passing DKIM signature whose d= aligns with the From domain.
    public var dkimAligned: Bool
    /// For logs and the Authentication-Results comment.
    public var reason: String
    /// The From domain's Organizational Domain when it was determined.
    public var organizationalDomain: String? = nil
    /// The policy was applied one step less strictly because of pct= or t=y (aggregate reports call
    /// this "sampled_out", RFC 7489 Appendix C PolicyOverrideType).
    public var sampledOut: Bool = false
    /// The d= of the first aligned passing DKIM signature.
    public var alignedDKIMDomain: String? = nil

    public init(result: DMARCResult, fromDomain: String, policyDomain: String? = nil, record: DMARCRecord? = nil,
                policy: DMARCPolicy? = nil, disposition: DMARCPolicy = .none, spfAligned: Bool = false,
                dkimAligned: Bool = false, reason: String, organizationalDomain: String? = nil,
                sampledOut: Bool = false, alignedDKIMDomain: String? = nil) {
        self.result = result
        self.fromDomain = fromDomain
        self.policyDomain = policyDomain
        self.record = record
        self.policy = policy
        self.disposition = disposition
        self.spfAligned = spfAligned
        self.dkimAligned = dkimAligned
        self.reason = reason
        self.organizationalDomain = organizationalDomain
        self.sampledOut = sampledOut
        self.alignedDKIMDomain = alignedDKIMDomain
    }
}

/// How the Organizational Domain is found.
public enum DMARCOrganizationalDomain: Sendable {
    /// RFC 7489 §3.2: the public suffix plus one label.
    case publicSuffixList(PublicSuffixList)
    /// DMARCbis §4.10: walk `_dmarc` records up the DNS tree, honouring psd=.
    case treeWalk
}

/// Evaluates DMARC for messages. Sendable: create one and share it.
public struct DMARCEvaluator: Sendable {
    public let resolver: any DNSResolver
    public let organizationalDomainStrategy: DMARCOrganizationalDomain
    /// A number in 0..<1 for the pct= sample (injectable for tests).
    public let random: @Sendable () -> Double

    public init(resolver: any DNSResolver, organizationalDomain: DMARCOrganizationalDomain,
                random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) {
        self.resolver = resolver
        self.organizationalDomainStrategy = organizationalDomain
        self.random = random
    }

    // MARK: - Evaluation

    public func evaluate(_ input: DMARCInput) async -> DMARCEvaluation {
        guard let from = Self.normalize(input.fromDomain) else {
            return DMARCEvaluation(result: .permerror, fromDomain: input.fromDomain, disposition: .none,
                                   spfAligned: false, dkimAligned: false,
                                   reason: "From domain is not a valid domain name")
        }
        let session = DMARCLookupSession(resolver: resolver)
        let discovery = await discoverPolicy(from, session: session)
        let found: DiscoveredPolicy
        switch discovery {
        case .notFound(let reason):
            return DMARCEvaluation(result: .none, fromDomain: from, disposition: .none,
                                   spfAligned: false, dkimAligned: false, reason: reason)
        case .temporaryFailure(let reason):
            return DMARCEvaluation(result: .temperror, fromDomain: from, disposition: .none,
                                   spfAligned: false, dkimAligned: false, reason: reason)
        case .found(let policy):
            found = policy
        }
        let record = found.record
        guard record.isApplicable else {
            // RFC 7489 §6.6.3 step 6: no valid p= (or sp=/np=) and no valid rua=.
            return DMARCEvaluation(result: .none, fromDomain: from, policyDomain: nil, record: record, policy: nil,
                                   disposition: .none, spfAligned: false, dkimAligned: false,
                                   reason: "record at _dmarc.\(found.domain) has no valid p= and no valid rua=; DMARC not applied")
        }

        // Identifier alignment (RFC 7489 §3.1): only passing mechanisms count (§4.2).
        let spfCandidate = input.spfResult == .pass ? Self.normalize(input.spfDomain) : nil
        var dkimCandidates: [String] = []
        for signature in input.dkim where signature.result == .pass {
            guard let domain = Self.normalize(signature.domain), !dkimCandidates.contains(domain) else { continue }
            if dkimCandidates.count == DMARCLimits.maxDKIMDomains { break }
            dkimCandidates.append(domain)
        }
        let alignment = await align(from: from, spf: spfCandidate, dkim: dkimCandidates, record: record,
                                    knownOrganizationalDomain: found.organizationalDomain, session: session)
        let spfAligned = alignment.spf == true
        let alignedDKIM = zip(dkimCandidates, alignment.dkim).first { $0.1 == true }?.0
        let unresolved = alignment.spf == nil || alignment.dkim.contains { $0 == nil }

        var evaluation = DMARCEvaluation(result: .fail, fromDomain: from, policyDomain: found.domain, record: record,
                                         policy: nil, disposition: .none, spfAligned: spfAligned,
                                         dkimAligned: alignedDKIM != nil, reason: "",
                                         organizationalDomain: alignment.fromOrganizationalDomain ?? found.organizationalDomain,
                                         alignedDKIMDomain: alignedDKIM)

        // The requested policy (RFC 7489 §6.6.3; RFC 9091 §4.1 np=; DMARCbis §4.10.1).
        var policy = record.policy
        var policyNote = "p=\(record.policy.rawValue)"
        if found.domain != from {
            policy = record.subdomainPolicy ?? record.policy
            policyNote = record.subdomainPolicy.map { "sp=\($0.rawValue)" } ?? policyNote
            let failing = !(spfAligned || alignedDKIM != nil)
            if let np = record.nonExistentSubdomainPolicy, np != policy, failing {
                switch await domainExists(from) {
                case .some(false):
                    policy = np
                    policyNote = "np=\(np.rawValue) (\(from) does not exist)"
                case .some(true):
                    break
                case .none:
                    policyNote += " (existence of \(from) unknown: temporary DNS failure)"
                }
            }
        }
        evaluation.policy = policy

        if spfAligned || alignedDKIM != nil {
            evaluation.result = .pass
            evaluation.disposition = .none
            let via = [spfAligned ? "SPF \(spfCandidate ?? "")" : nil, alignedDKIM.map { "DKIM d=\($0)" }]
                .compactMap { $0 }.joined(separator: " and ")
            evaluation.reason = "aligned \(via); policy \(policyNote) at _dmarc.\(found.domain)"
            return evaluation
        }
        if unresolved {
            evaluation.result = .temperror
            evaluation.disposition = .none
            evaluation.reason = "alignment could not be determined (temporary DNS failure); policy \(policyNote) at _dmarc.\(found.domain)"
            return evaluation
        }
        // RFC 7489 §6.6.4: a message outside the pct= sample gets the next less strict policy;
        // DMARCbis t=y asks for the same one-step downgrade.
        let selected: Bool
        if record.testing {
            selected = false
        } else if record.percentage >= 100 {
            selected = true
        } else if record.percentage <= 0 {
            selected = false
        } else {
            selected = random() * 100 < Double(record.percentage)
        }
        evaluation.disposition = selected ? policy : policy.downgraded
        evaluation.sampledOut = !selected && policy != .none
        var reason = "no aligned SPF or DKIM pass; policy \(policyNote) at _dmarc.\(found.domain)"
        if evaluation.sampledOut {
            reason += record.testing ? ", t=y: applied \(evaluation.disposition.rawValue)"
                : ", pct=\(record.percentage) sampled out: applied \(evaluation.disposition.rawValue)"
        }
        evaluation.reason = reason
        return evaluation
    }

    /// The Organizational Domain of `domain` (RFC 7489 §3.2 or DMARCbis §4.10.2), lower-cased A-labels.
    /// When it cannot be determined (a malformed name, a temporary DNS failure in the tree walk), the
    /// domain itself, as DMARCbis §4.10.2 says for a walk that finds nothing.
    public func organizationalDomain(of domain: String) async -> String {
        guard let normalized = Self.normalize(domain) else { return domain.lowercased() }
        switch organizationalDomainStrategy {
        case .publicSuffixList(let list):
            return list.registrableDomain(normalized) ?? normalized
        case .treeWalk:
            let session = DMARCLookupSession(resolver: resolver)
            if case .found(let organizational) = await treeWalkOrganizationalDomain(normalized, session: session) {
                return organizational
            }
            return normalized
        }
    }

    /// RFC 7489 §7.1: may reports about `policyDomain` go to an address at `destinationDomain`? Yes
    /// when both have the same Organizational Domain; otherwise only when
    /// `<policyDomain>._report._dmarc.<destinationDomain>` has a TXT record starting with v=DMARC1.
    /// A DNS failure or a name too long to query means no.
    public func verifyExternalDestination(policyDomain: String, destinationDomain: String) async -> Bool {
        guard let policy = Self.normalize(policyDomain), let destination = Self.normalize(destinationDomain) else {
            return false
        }
        if policy == destination { return true }
        async let policyOrganizational = organizationalDomain(of: policy)
        async let destinationOrganizational = organizationalDomain(of: destination)
        if await policyOrganizational == destinationOrganizational { return true }
        let labels = Self.labels(policy) + ["_report", "_dmarc"] + Self.labels(destination)
        guard let name = try? DNSName(labels: labels.map { Array($0.utf8) }) else { return false }
        do {
            let records = try await resolver.txt(name)
            return records.contains { DMARCRecord.isDMARC1($0.joined) }
        } catch {
            return false
        }
    }

    // MARK: - Policy discovery

    struct DiscoveredPolicy {
        var record: DMARCRecord
        /// Where the record was found.
        var domain: String
        /// The From domain's Organizational Domain, when discovery established it.
        var organizationalDomain: String?
    }

    enum Discovery {
        case found(DiscoveredPolicy)
        case notFound(String)
        case temporaryFailure(String)
    }

    func discoverPolicy(_ from: String, session: DMARCLookupSession) async -> Discovery {
        switch organizationalDomainStrategy {
        case .publicSuffixList(let list):
            return await discoverWithPublicSuffixList(from, list: list, session: session)
        case .treeWalk:
            return await discoverWithTreeWalk(from, session: session)
        }
    }

    /// RFC 7489 §6.6.3: the From domain's record, else the Organizational Domain's; never any level
    /// in between. Both are asked at once when they differ. More than one DMARC record at the name
    /// that answers ends discovery: DMARC is not applied (step 5; some receivers say permerror).
    func discoverWithPublicSuffixList(_ from: String, list: PublicSuffixList, session: DMARCLookupSession) async -> Discovery {
        let organizational = list.registrableDomain(from) ?? from
        async let orgLookup: DMARCLookup = organizational == from ? .none : await session.lookup(organizational)
        let fromLookup = await session.lookup(from)
        switch fromLookup {
        case .record(let record):
            return .found(DiscoveredPolicy(record: record, domain: from, organizationalDomain: organizational))
        case .temporaryFailure(let reason):
            return .temporaryFailure("_dmarc.\(from): \(reason)")
        case .multiple(let count):
            return .notFound("\(count) DMARC records at _dmarc.\(from); DMARC not applied")
        case .invalid(let reason):
            return .notFound("_dmarc.\(from): \(reason); DMARC not applied")
        case .none:
            break
        }
        if organizational == from {
            return .notFound("no DMARC record at _dmarc.\(from)")
        }
        switch await orgLookup {
        case .record(let record):
            return .found(DiscoveredPolicy(record: record, domain: organizational, organizationalDomain: organizational))
        case .temporaryFailure(let reason):
            return .temporaryFailure("_dmarc.\(organizational): \(reason)")
        case .multiple(let count):
            return .notFound("\(count) DMARC records at _dmarc.\(organizational); DMARC not applied")
        case .invalid(let reason):
            return .notFound("_dmarc.\(organizational): \(reason); DMARC not applied")
        case .none:
            return .notFound("no DMARC record at _dmarc.\(from) or _dmarc.\(organizational)")
        }
    }

    /// DMARCbis §4.10.1: the Author Domain's record; else walk up from its parent (or from the name cut
    /// to 7 labels) to find the Organizational Domain, whose record applies, or failing that the
    /// record of the Public Suffix Domain (psd=y) above it. Several records at one name are discarded
    /// and the walk goes on (§4.10 step 2).
    func discoverWithTreeWalk(_ from: String, session: DMARCLookupSession) async -> Discovery {
        // The Author Domain's own record applies as it is; the rest of the walk is only needed to
        // find its Organizational Domain, which alignment asks for when it must.
        switch await session.lookup(from) {
        case .temporaryFailure(let reason):
            return .temporaryFailure("_dmarc.\(from): \(reason)")
        case .record(let record):
            return .found(DiscoveredPolicy(record: record, domain: from, organizationalDomain: nil))
        case .none, .multiple, .invalid:
            break
        }
        let walk = await treeWalk(from, session: session)
        let steps: [TreeWalkStep]
        switch walk {
        case .temporaryFailure(let reason):
            return .temporaryFailure(reason)
        case .completed(let found):
            steps = found
        }
        guard !steps.isEmpty else {
            return .notFound("no DMARC record found walking up from _dmarc.\(from)")
        }
        let organizational = Self.selectOrganizationalDomain(start: from, steps: steps)
        if let atOrganizational = steps.first(where: { $0.domain == organizational }) {
            return .found(DiscoveredPolicy(record: atOrganizational.record, domain: organizational,
                                           organizationalDomain: organizational))
        }
        if let psd = steps.last, psd.record.publicSuffixDomain == .yes {
            return .found(DiscoveredPolicy(record: psd.record, domain: psd.domain, organizationalDomain: organizational))
        }
        return .notFound("no DMARC record for \(from) or its Organizational Domain \(organizational)")
    }

    // MARK: - The DNS Tree Walk (DMARCbis §4.10)

    struct TreeWalkStep {
        var domain: String
        var record: DMARCRecord
    }

    enum TreeWalk {
        /// The records found, from the longest name to the shortest; the walk stopped after a
        /// record with psd=y or psd=n, or at the top.
        case completed([TreeWalkStep])
        case temporaryFailure(String)
    }

    /// The label counts a walk queries for a name of `count` labels (DMARCbis §4.10 steps 1–7): the
    /// name itself, then — cut to 7 labels when it has 8 or more — one label fewer each time. At
    /// most 8 queries.
    static func treeWalkTargets(labelCount count: Int) -> [Int] {
        guard count > 0 else { return [] }
        let next = count >= DMARCLimits.maxTreeWalkQueries ? DMARCLimits.treeWalkShortenedLabels : count - 1
        return [count] + (next > 0 ? Array((1...next).reversed()) : [])
    }

    func treeWalk(_ domain: String, session: DMARCLookupSession) async -> TreeWalk {
        let labels = Self.labels(domain)
        var steps: [TreeWalkStep] = []
        for count in Self.treeWalkTargets(labelCount: labels.count) {
            let target = labels.suffix(count).joined(separator: ".")
            switch await session.lookup(target) {
            case .temporaryFailure(let reason):
                return .temporaryFailure("_dmarc.\(target): \(reason)")
            case .record(let record):
                steps.append(TreeWalkStep(domain: target, record: record))
                if record.publicSuffixDomain != .unknown { return .completed(steps) }
            case .none, .multiple, .invalid:
                continue
            }
        }
        return .completed(steps)
    }

    /// DMARCbis §4.10.2: psd=n names the Organizational Domain; psd=y (other than at the start)
    /// makes it the name one label below; otherwise the record with the fewest labels; with no
    /// record at all, the starting domain.
    static func selectOrganizationalDomain(start: String, steps: [TreeWalkStep]) -> String {
        let labels = Self.labels(start)
        for step in steps {
            switch step.record.publicSuffixDomain {
            case .no:
                return step.domain
            case .yes where step.domain != start:
                let below = Self.labels(step.domain).count + 1
                return labels.suffix(min(below, labels.count)).joined(separator: ".")
            default:
                continue
            }
        }
        return steps.last?.domain ?? start
    }

    enum OrganizationalDomainOutcome {
        case found(String)
        case temporaryFailure
    }

    func treeWalkOrganizationalDomain(_ domain: String, session: DMARCLookupSession) async -> OrganizationalDomainOutcome {
        switch await treeWalk(domain, session: session) {
        case .temporaryFailure:
            return .temporaryFailure
        case .completed(let steps):
            return .found(Self.selectOrganizationalDomain(start: domain, steps: steps))
        }
    }

    // MARK: - Identifier alignment (RFC 7489 §3.1, DMARCbis §4.10.2)

    struct Alignment {
        /// nil: could not be determined (temporary DNS failure).
        var spf: Bool?
        var dkim: [Bool?]
        var fromOrganizationalDomain: String?
    }

    func align(from: String, spf: String?, dkim: [String], record: DMARCRecord,
               knownOrganizationalDomain: String?, session: DMARCLookupSession) async -> Alignment {
        switch organizationalDomainStrategy {
        case .publicSuffixList(let list):
            let fromOrganizational = list.registrableDomain(from) ?? from
            func aligned(_ domain: String, _ mode: DMARCAlignmentMode) -> Bool {
                if domain == from { return true }
                return mode == .relaxed && (list.registrableDomain(domain) ?? domain) == fromOrganizational
            }
            return Alignment(spf: spf.map { aligned($0, record.spfAlignment) } ?? false,
                             dkim: dkim.map { aligned($0, record.dkimAlignment) },
                             fromOrganizationalDomain: fromOrganizational)
        case .treeWalk:
            // Walks are needed only for relaxed alignment of names that differ from the From domain
            // yet share at least its top label (an Organizational Domain is an ancestor of both).
            func needsWalk(_ domain: String, _ mode: DMARCAlignmentMode) -> Bool {
                domain != from && mode == .relaxed && Self.labels(domain).last == Self.labels(from).last
            }
            var walkDomains: [String] = []
            if let spf, needsWalk(spf, record.spfAlignment) { walkDomains.append(spf) }
            for domain in dkim where needsWalk(domain, record.dkimAlignment) && !walkDomains.contains(domain) {
                walkDomains.append(domain)
            }
            var organizational: [String: OrganizationalDomainOutcome] = [:]
            var fromOrganizational: OrganizationalDomainOutcome? = knownOrganizationalDomain.map { .found($0) }
            if !walkDomains.isEmpty {
                // Independent walks run at once; the session shares the queries they have in common.
                let needFrom = fromOrganizational == nil
                await withTaskGroup(of: (String?, OrganizationalDomainOutcome).self) { group in
                    if needFrom {
                        group.addTask { (nil, await self.treeWalkOrganizationalDomain(from, session: session)) }
                    }
                    for domain in walkDomains {
                        group.addTask { (domain, await self.treeWalkOrganizationalDomain(domain, session: session)) }
                    }
                    for await (domain, outcome) in group {
                        if let domain { organizational[domain] = outcome } else { fromOrganizational = outcome }
                    }
                }
            }
            func aligned(_ domain: String, _ mode: DMARCAlignmentMode) -> Bool? {
                if domain == from { return true }
                guard needsWalk(domain, mode) else { return false }
                guard case .found(let fromOrg)? = fromOrganizational,
                      case .found(let domainOrg)? = organizational[domain] else { return nil }
                return fromOrg == domainOrg
            }
            var fromOrganizationalDomain: String?
            if case .found(let value)? = fromOrganizational { fromOrganizationalDomain = value }
            return Alignment(spf: spf.map { aligned($0, record.spfAlignment) } ?? false,
                             dkim: dkim.map { aligned($0, record.dkimAlignment) },
                             fromOrganizationalDomain: fromOrganizationalDomain)
        }
    }

    // MARK: - Domain existence (RFC 9091 §2.7 / DMARCbis §3.2.13), for np=

    enum AddressOutcome {
        case exists, nxdomain, noData, temporary
    }

    /// Whether `domain` exists, asking A, AAAA and MX at once; nil when a temporary failure leaves it
    /// open. NXDOMAIN for any of them means nothing is there (RFC 8020). NODATA for all three means
    /// "non-existent" under RFC 9091 §2.7 (the PSL strategy, which implements RFC 7489 + RFC 9091);
    /// DMARCbis §3.2.13 (the tree walk) counts only NXDOMAIN, so there the name exists.
    func domainExists(_ domain: String) async -> Bool? {
        guard let name = try? DNSName(labels: Self.labels(domain).map { Array($0.utf8) }) else { return false }
        let resolver = self.resolver
        @Sendable func ask(_ type: DNSRecordType) async -> AddressOutcome {
            do {
                _ = try await resolver.query(name: name, type: type)
                return .exists
            } catch {
                if case .nxdomain = error { return .nxdomain }
                return error.isNotFound ? .noData : (error.isTemporary ? .temporary : .noData)
            }
        }
        async let a = ask(.a)
        async let aaaa = ask(.aaaa)
        async let mx = ask(.mx)
        let outcomes = await [a, aaaa, mx]
        if outcomes.contains(.exists) { return true }
        if outcomes.contains(.nxdomain) { return false }
        if outcomes.contains(.temporary) { return nil }
        if case .treeWalk = organizationalDomainStrategy { return true }
        return false
    }

    // MARK: - Names

    /// Lower-cased A-labels without a final dot, or nil for a malformed name.
    static func normalize(_ domain: String) -> String? {
        PublicSuffixList.asciiDomain(domain)
    }

    static func labels(_ domain: String) -> [String] {
        domain.split(separator: ".").map(String.init)
    }
}

/// What one `_dmarc` TXT lookup found (RFC 7489 §6.6.3 steps 1–2; DMARCbis §4.10 step 2).
enum DMARCLookup: Sendable {
    /// No TXT record starting with v=DMARC1 (NXDOMAIN, NODATA, or other TXT records only).
    case none
    case record(DMARCRecord)
    /// More than one v=DMARC1 record.
    case multiple(Int)
    /// A v=DMARC1 record that could not be used (too long).
    case invalid(String)
    case temporaryFailure(String)
}

/// The `_dmarc` lookups of one evaluation: each name is asked once, even by concurrent tree walks,
/// and no more than `DMARCLimits.maxQueriesPerEvaluation` names are asked.
actor DMARCLookupSession {
    let resolver: any DNSResolver
    private var lookups: [String: Task<DMARCLookup, Never>] = [:]
    /// The names asked, in order (for tests and logs).
    private(set) var queried: [String] = []

    init(resolver: any DNSResolver) {
        self.resolver = resolver
    }

    func lookup(_ domain: String) async -> DMARCLookup {
        if let pending = lookups[domain] { return await pending.value }
        guard queried.count < DMARCLimits.maxQueriesPerEvaluation else {
            return .temporaryFailure("more than \(DMARCLimits.maxQueriesPerEvaluation) DMARC queries")
        }
        queried.append(domain)
        let resolver = self.resolver
        let task = Task { await Self.query(resolver, domain) }
        lookups[domain] = task
        return await task.value
    }

    static func query(_ resolver: any DNSResolver, _ domain: String) async -> DMARCLookup {
        let labels = [Array("_dmarc".utf8)] + domain.split(separator: ".").map { Array($0.utf8) }
        // A name too long to exist has no record.
        guard let name = try? DNSName(labels: labels) else { return .none }
        let records: [TXTRecord]
        do {
            records = try await resolver.txt(name)
        } catch {
            return error.isTemporary ? .temporaryFailure("\(error)") : .none
        }
        // Step 2: records that do not start with v=DMARC1 are discarded.
        let candidates = records.map(\.joined).filter { DMARCRecord.isDMARC1($0) }
        guard let first = candidates.first else { return .none }
        if candidates.count > 1 { return .multiple(candidates.count) }
        do {
            return .record(try DMARCRecord(parsing: first))
        } catch {
            return .invalid("DMARC record refused: \(error)")
        }
    }
}
