// What one outbound TLS negotiation came to, in the vocabulary of SMTP TLS Reporting (RFC 8460
// §4.3 and §4.4): the delivery code produces one outcome per session it opens to an MX host, and
// a `TLSReportSink` counts them for the daily report to each recipient domain.

import Foundation

/// RFC 8460 §4.3 "policy-type": what policy governed the session.
public enum TLSPolicyType: String, Sendable, Codable, CaseIterable {
    /// DANE (RFC 7672): DNSSEC-validated TLSA records for the MX host.
    case tlsa
    /// MTA-STS (RFC 8461) in mode enforce or testing.
    case sts
    /// Neither: opportunistic TLS.
    case noPolicyFound = "no-policy-found"
}

/// RFC 8460 §4.3 "result-type": why a session failed. The names are the report's strings.
public enum TLSFailureType: String, Sendable, Codable, CaseIterable {
    // Negotiation failures (§4.3.1).
    case starttlsNotSupported = "starttls-not-supported"
    case certificateHostMismatch = "certificate-host-mismatch"
    case certificateExpired = "certificate-expired"
    case certificateNotTrusted = "certificate-not-trusted"
    case validationFailure = "validation-failure"
    // Policy failures, DANE (§4.3.2.1).
    case tlsaInvalid = "tlsa-invalid"
    case dnssecInvalid = "dnssec-invalid"
    case daneRequired = "dane-required"
    // Policy failures, MTA-STS (§4.3.2.2).
    case stsPolicyFetchError = "sts-policy-fetch-error"
    case stsPolicyInvalid = "sts-policy-invalid"
    case stsWebpkiInvalid = "sts-webpki-invalid"
}

/// One TLS negotiation with one MX host (or the policy failure that kept us from trying).
public struct TLSSessionOutcome: Sendable, Equatable, Codable {
    /// The recipient domain the delivery was for: the report goes to its `_smtp._tls` rua.
    public var recipientDomain: String
    /// The policy in force; for `.noPolicyFound` the policy domain is the recipient domain.
    public var policyType: TLSPolicyType
    /// RFC 8460 §4.4 "policy-string": the MTA-STS policy's lines, or the TLSA records in
    /// presentation form; empty for no-policy-found.
    public var policyStrings: [String]
    /// RFC 8460 §4.4 "policy-domain".
    public var policyDomain: String
    /// RFC 8460 §4.4 "mx-host": the MX pattern(s) of an MTA-STS policy, joined by commas; nil otherwise.
    public var mxHostPattern: String?
    /// The MX host we connected to (or tried to), and its address.
    public var receivingMXHostname: String
    public var receivingIP: String?
    /// Our source address for the session, when we know it.
    public var sendingMTAIP: String?
    /// nil: TLS was negotiated and the policy was satisfied (a successful session).
    public var failure: TLSFailureType?
    /// Free text for "additional-information" / "failure-reason-code".
    public var failureDetail: String?
    public var date: Date

    public init(recipientDomain: String, policyType: TLSPolicyType, policyStrings: [String] = [], policyDomain: String,
                mxHostPattern: String? = nil, receivingMXHostname: String, receivingIP: String? = nil,
                sendingMTAIP: String? = nil, failure: TLSFailureType? = nil, failureDetail: String? = nil, date: Date) {
        self.recipientDomain = recipientDomain; self.policyType = policyType; self.policyStrings = policyStrings
        self.policyDomain = policyDomain; self.mxHostPattern = mxHostPattern
        self.receivingMXHostname = receivingMXHostname; self.receivingIP = receivingIP
        self.sendingMTAIP = sendingMTAIP; self.failure = failure; self.failureDetail = failureDetail; self.date = date
    }

    public var succeeded: Bool { failure == nil }
}

/// Where delivery reports each TLS outcome. It must not block delivery: implementations buffer
/// and write in the background.
public protocol TLSReportSink: Sendable {
    func record(_ outcome: TLSSessionOutcome) async
}
