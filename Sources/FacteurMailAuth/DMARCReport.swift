// DMARC aggregate ("rua") report model: RFC 7489 §7.2 and Appendix C, and the DMARCbis aggregate
// reporting format (RFC 9990, draft-ietf-dmarc-aggregate-reporting; namespace
// urn:ietf:params:xml:ns:dmarc-2.0). One plain value type for both formats: the XML writer
// (DMARCReportXML.swift) picks per format what to emit, the parser (DMARCReportParser.swift) fills it
// leniently from whatever real reporters send. Deliberately independent of the DMARC evaluator's types.

/// One DMARC aggregate report: who reports, for which policy domain and period, and one record per
/// distinct (source IP, results, identifiers) tuple with its message count.
public struct DMARCAggregateReport: Sendable, Equatable {
    /// Which schema to write.
    public enum Format: Sendable, Equatable {
        /// RFC 7489 Appendix C: no namespace, `<version>1.0</version>`, `pct`, `sp`/`fo` always present.
        case rfc7489
        /// DMARCbis (RFC 9990): namespace `urn:ietf:params:xml:ns:dmarc-2.0`, `np`, `testing`,
        /// `discovery_method`, `generator`, no `pct`.
        case dmarcbis
    }

    /// RFC 9990 §2.1 / Appendix A: the namespace of the DMARCbis format.
    public static let dmarcbisNamespace = "urn:ietf:params:xml:ns:dmarc-2.0"

    /// `<version>`, as written in the report (RFC 7489 requires it; many reporters omit it).
    public var version: String?
    /// The XML namespace of `<feedback>` when the report had one (DMARCbis reports do).
    public var namespace: String?
    public var metadata: Metadata
    public var policyPublished: PolicyPublished
    public var records: [Record]

    public init(version: String? = "1.0", namespace: String? = nil, metadata: Metadata,
                policyPublished: PolicyPublished, records: [Record]) {
        self.version = version
        self.namespace = namespace
        self.metadata = metadata
        self.policyPublished = policyPublished
        self.records = records
    }

    /// Total number of messages the report covers (sum of the records' counts, saturating).
    public var messageCount: Int {
        records.reduce(0) { total, record in
            let (sum, overflow) = total.addingReportingOverflow(max(0, record.count))
            return overflow ? Int.max : sum
        }
    }

    // MARK: report_metadata

    /// `report_metadata` (RFC 7489 Appendix C ReportMetadataType).
    public struct Metadata: Sendable, Equatable {
        public var orgName: String
        public var email: String
        public var extraContactInfo: String?
        public var reportID: String
        public var dateRange: DateRange
        public var errors: [String]
        /// DMARCbis only: the software that generated the report.
        public var generator: String?

        public init(orgName: String, email: String, extraContactInfo: String? = nil, reportID: String,
                    dateRange: DateRange, errors: [String] = [], generator: String? = nil) {
            self.orgName = orgName
            self.email = email
            self.extraContactInfo = extraContactInfo
            self.reportID = reportID
            self.dateRange = dateRange
            self.errors = errors
            self.generator = generator
        }
    }

    /// `date_range`: seconds since the epoch, UTC.
    public struct DateRange: Sendable, Equatable {
        public var begin: Int64
        public var end: Int64
        public init(begin: Int64, end: Int64) {
            self.begin = begin
            self.end = end
        }
    }

    // MARK: policy_published

    /// `policy_published`: the DMARC record the receiver applied. Nil fields were absent, empty or
    /// unrecognisable in a parsed report; the writer fills RFC 7489's required ones with the record defaults.
    public struct PolicyPublished: Sendable, Equatable {
        public var domain: String
        public var adkim: Alignment?
        public var aspf: Alignment?
        public var p: Policy?
        public var sp: Policy?
        /// DMARCbis: policy for non-existent subdomains.
        public var np: Policy?
        /// RFC 7489 only (DMARCbis dropped `pct=`).
        public var pct: Int?
        /// DMARCbis: `t=` (testing mode).
        public var testing: Testing?
        public var fo: String?
        /// DMARCbis: how the policy record was found.
        public var discoveryMethod: DiscoveryMethod?

        public init(domain: String, adkim: Alignment? = nil, aspf: Alignment? = nil, p: Policy? = nil,
                    sp: Policy? = nil, np: Policy? = nil, pct: Int? = nil, testing: Testing? = nil,
                    fo: String? = nil, discoveryMethod: DiscoveryMethod? = nil) {
            self.domain = domain
            self.adkim = adkim
            self.aspf = aspf
            self.p = p
            self.sp = sp
            self.np = np
            self.pct = pct
            self.testing = testing
            self.fo = fo
            self.discoveryMethod = discoveryMethod
        }
    }

    /// AlignmentType: relaxed or strict (RFC 7489 §6.3 `adkim`/`aspf`).
    public enum Alignment: String, Sendable, Equatable, CaseIterable {
        case relaxed = "r"
        case strict = "s"
    }

    /// DispositionType: the policy a Domain Owner asks for (RFC 7489 §6.3 `p`/`sp`, DMARCbis `np`).
    public enum Policy: String, Sendable, Equatable, CaseIterable {
        case none, quarantine, reject
    }

    /// DMARCbis TestingType (`t=`).
    public enum Testing: String, Sendable, Equatable, CaseIterable {
        case no = "n"
        case yes = "y"
    }

    /// DMARCbis DiscoveryType: RFC 7489's public suffix list lookup, or DMARCbis's DNS tree walk.
    public enum DiscoveryMethod: String, Sendable, Equatable, CaseIterable {
        case psl, treewalk
    }

    // MARK: record

    /// One `record`: a row (source, count, evaluated policy), the identifiers, the raw auth results.
    public struct Record: Sendable, Equatable {
        public var sourceIP: String
        public var count: Int
        public var policyEvaluated: PolicyEvaluated
        public var identifiers: Identifiers
        public var authResults: AuthResults

        public init(sourceIP: String, count: Int, policyEvaluated: PolicyEvaluated, identifiers: Identifiers,
                    authResults: AuthResults) {
            self.sourceIP = sourceIP
            self.count = count
            self.policyEvaluated = policyEvaluated
            self.identifiers = identifiers
            self.authResults = authResults
        }
    }

    /// PolicyEvaluatedType: what the receiver did, and the DMARC-aligned DKIM and SPF verdicts.
    public struct PolicyEvaluated: Sendable, Equatable {
        public var disposition: Disposition?
        public var dkim: AlignedResult?
        public var spf: AlignedResult?
        public var reasons: [OverrideReason]

        public init(disposition: Disposition?, dkim: AlignedResult?, spf: AlignedResult?,
                    reasons: [OverrideReason] = []) {
            self.disposition = disposition
            self.dkim = dkim
            self.spf = spf
            self.reasons = reasons
        }
    }

    /// The disposition applied: RFC 7489 DispositionType, plus DMARCbis ActionDispositionType's `pass`
    /// (no action because DMARC passed under an enforcing policy).
    public enum Disposition: String, Sendable, Equatable, CaseIterable {
        case none, pass, quarantine, reject
    }

    /// DMARCResultType: the DMARC-aligned result of one mechanism.
    public enum AlignedResult: String, Sendable, Equatable, CaseIterable {
        case pass, fail
    }

    /// PolicyOverrideReason: why the disposition differs from the published policy.
    public struct OverrideReason: Sendable, Equatable, Hashable {
        public var type: OverrideType
        public var comment: String?
        public init(type: OverrideType, comment: String? = nil) {
            self.type = type
            self.comment = comment
        }
    }

    /// PolicyOverrideType, the union of RFC 7489's and DMARCbis's values.
    public enum OverrideType: String, Sendable, Equatable, Hashable, CaseIterable {
        case forwarded
        case sampledOut = "sampled_out"
        case trustedForwarder = "trusted_forwarder"
        case mailingList = "mailing_list"
        case localPolicy = "local_policy"
        case other
        /// DMARCbis: the policy was in testing mode (`t=y`).
        case policyTestMode = "policy_test_mode"
    }

    /// IdentifierType: the domains the record is about.
    public struct Identifiers: Sendable, Equatable {
        public var headerFrom: String
        public var envelopeFrom: String?
        public var envelopeTo: String?
        public init(headerFrom: String, envelopeFrom: String? = nil, envelopeTo: String? = nil) {
            self.headerFrom = headerFrom
            self.envelopeFrom = envelopeFrom
            self.envelopeTo = envelopeTo
        }
    }

    /// AuthResultType: DKIM and SPF results as verified, not interpreted for DMARC.
    public struct AuthResults: Sendable, Equatable {
        public var dkim: [DKIMAuthResult]
        public var spf: [SPFAuthResult]
        public init(dkim: [DKIMAuthResult] = [], spf: [SPFAuthResult] = []) {
            self.dkim = dkim
            self.spf = spf
        }
    }

    /// DKIMAuthResultType: one signature's `d=`, `s=` and verification result (RFC 8601 §2.7.1).
    public struct DKIMAuthResult: Sendable, Equatable, Hashable {
        public var domain: String
        public var selector: String?
        public var result: DKIMResult?
        public var humanResult: String?
        public init(domain: String, selector: String? = nil, result: DKIMResult?, humanResult: String? = nil) {
            self.domain = domain
            self.selector = selector
            self.result = result
            self.humanResult = humanResult
        }
    }

    /// DKIMResultType.
    public enum DKIMResult: String, Sendable, Equatable, Hashable, CaseIterable {
        case none, pass, fail, policy, neutral, temperror, permerror
    }

    /// SPFAuthResultType: the checked domain, which identity it came from, and the SPF result.
    public struct SPFAuthResult: Sendable, Equatable, Hashable {
        public var domain: String
        public var scope: SPFScope?
        public var result: SPFResult?
        public var humanResult: String?
        public init(domain: String, scope: SPFScope? = .mfrom, result: SPFResult?, humanResult: String? = nil) {
            self.domain = domain
            self.scope = scope
            self.result = result
            self.humanResult = humanResult
        }
    }

    /// SPFDomainScope: the HELO identity or the MAIL FROM identity (RFC 7208 §2.3, §2.4).
    public enum SPFScope: String, Sendable, Equatable, Hashable, CaseIterable {
        case helo, mfrom
    }

    /// SPFResultType (RFC 7208 §2.6; DMARCbis adds RFC 8601's `policy`).
    public enum SPFResult: String, Sendable, Equatable, Hashable, CaseIterable {
        case none, neutral, pass, fail, softfail, policy, temperror, permerror
    }
}
