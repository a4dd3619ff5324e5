// An SMTP TLS report (RFC 8460 §4): the JSON document a sending MTA gives each recipient domain
// once a day, with the exact key names of §4.4. `json()` writes it (integers as JSON numbers,
// datetimes as RFC 3339 UTC); `parse(json:)` reads one received from elsewhere, ignoring fields it
// does not know but refusing wrong types, and bounded by `TLSReportLimits`.

import Foundation

/// Hard limits on what a received report may contain.
public enum TLSReportLimits {
    /// The JSON document, after decompression.
    public static let maxJSONBytes = 8 * 1024 * 1024
    /// The compressed attachment or HTTP body.
    public static let maxCompressedBytes = 2 * 1024 * 1024
    public static let maxPolicies = 1_000
    public static let maxFailureDetails = 10_000
    public static let maxPolicyStrings = 1_000
    /// Any one string value.
    public static let maxStringLength = 4_096
}

public enum TLSReportError: Error, Equatable, CustomStringConvertible {
    case tooLarge(limit: Int)
    /// Not JSON, or a field of the wrong type or missing (the decoder's description).
    case invalid(String)
    /// More policies, failure details or strings than the limits allow.
    case tooMany(String, limit: Int)
    /// A count below zero, or a date range that ends before it starts.
    case outOfRange(String)

    public var description: String {
        switch self {
        case .tooLarge(let limit): "report larger than \(limit) bytes"
        case .invalid(let message): "not an RFC 8460 report: \(message)"
        case .tooMany(let what, let limit): "more than \(limit) \(what)"
        case .outOfRange(let what): "out of range: \(what)"
        }
    }
}

/// RFC 8460 §4.4, the whole report.
public struct TLSReport: Sendable, Equatable, Codable {
    public var organizationName: String
    public var dateRange: DateRange
    public var contactInfo: String
    public var reportID: String
    public var policies: [PolicyResult]

    public init(organizationName: String, dateRange: DateRange, contactInfo: String, reportID: String, policies: [PolicyResult]) {
        self.organizationName = organizationName; self.dateRange = dateRange; self.contactInfo = contactInfo
        self.reportID = reportID; self.policies = policies
    }

    enum CodingKeys: String, CodingKey {
        case organizationName = "organization-name"
        case dateRange = "date-range"
        case contactInfo = "contact-info"
        case reportID = "report-id"
        case policies
    }

    /// "date-range": the period the report covers, both ends RFC 3339 date-times in UTC.
    public struct DateRange: Sendable, Equatable, Codable {
        public var start: Date
        public var end: Date
        public init(start: Date, end: Date) { self.start = start; self.end = end }

        enum CodingKeys: String, CodingKey {
            case start = "start-datetime"
            case end = "end-datetime"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            start = try RFC3339.decode(container, .start)
            end = try RFC3339.decode(container, .end)
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(RFC3339.format(start), forKey: .start)
            try container.encode(RFC3339.format(end), forKey: .end)
        }
    }

    /// One element of "policies": a policy and the sessions it governed.
    public struct PolicyResult: Sendable, Equatable, Codable {
        public var policy: Policy
        public var summary: Summary
        public var failureDetails: [FailureDetail]

        public init(policy: Policy, summary: Summary, failureDetails: [FailureDetail] = []) {
            self.policy = policy; self.summary = summary; self.failureDetails = failureDetails
        }

        enum CodingKeys: String, CodingKey {
            case policy, summary
            case failureDetails = "failure-details"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            policy = try container.decode(Policy.self, forKey: .policy)
            summary = try container.decode(Summary.self, forKey: .summary)
            // Reporters leave "failure-details" out when there were no failures.
            failureDetails = try container.decodeIfPresent([FailureDetail].self, forKey: .failureDetails) ?? []
        }
    }

    /// RFC 8460 §4.4 "policy" (§4.3 for the type).
    public struct Policy: Sendable, Hashable, Codable {
        public var policyType: TLSPolicyType
        public var policyString: [String]
        public var policyDomain: String
        public var mxHost: [String]?

        public init(policyType: TLSPolicyType, policyString: [String] = [], policyDomain: String, mxHost: [String]? = nil) {
            self.policyType = policyType; self.policyString = policyString; self.policyDomain = policyDomain; self.mxHost = mxHost
        }

        enum CodingKeys: String, CodingKey {
            case policyType = "policy-type"
            case policyString = "policy-string"
            case policyDomain = "policy-domain"
            case mxHost = "mx-host"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            policyType = try container.decode(TLSPolicyType.self, forKey: .policyType)
            policyString = try container.decodeIfPresent([String].self, forKey: .policyString) ?? []
            policyDomain = try container.decode(String.self, forKey: .policyDomain)
            // §4.4 shows "mx-host" as an array; some reporters send a single string.
            if let many = try? container.decodeIfPresent([String].self, forKey: .mxHost) {
                mxHost = many
            } else if let one = try container.decodeIfPresent(String.self, forKey: .mxHost) {
                mxHost = [one]
            } else {
                mxHost = nil
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(policyType, forKey: .policyType)
            // "no-policy-found" has no policy text to give (§4.4: omitted then).
            if policyType != .noPolicyFound || !policyString.isEmpty { try container.encode(policyString, forKey: .policyString) }
            try container.encode(policyDomain, forKey: .policyDomain)
            try container.encodeIfPresent(mxHost, forKey: .mxHost)
        }
    }

    /// RFC 8460 §4.4 "summary".
    public struct Summary: Sendable, Equatable, Codable {
        public var totalSuccessfulSessionCount: Int
        public var totalFailureSessionCount: Int

        public init(totalSuccessfulSessionCount: Int, totalFailureSessionCount: Int) {
            self.totalSuccessfulSessionCount = totalSuccessfulSessionCount; self.totalFailureSessionCount = totalFailureSessionCount
        }

        enum CodingKeys: String, CodingKey {
            case totalSuccessfulSessionCount = "total-successful-session-count"
            case totalFailureSessionCount = "total-failure-session-count"
        }
    }

    /// RFC 8460 §4.4 "failure-details" element. `resultType` keeps the reporter's string (§4.3
    /// names, see `TLSFailureType`) so that a report using a newer one is still readable.
    public struct FailureDetail: Sendable, Hashable, Codable {
        public var resultType: String
        public var sendingMTAIP: String?
        public var receivingMXHostname: String?
        public var receivingMXHelo: String?
        public var receivingIP: String?
        public var failedSessionCount: Int
        public var additionalInformation: String?
        public var failureReasonCode: String?

        public init(resultType: String, sendingMTAIP: String? = nil, receivingMXHostname: String? = nil, receivingMXHelo: String? = nil,
                    receivingIP: String? = nil, failedSessionCount: Int, additionalInformation: String? = nil, failureReasonCode: String? = nil) {
            self.resultType = resultType; self.sendingMTAIP = sendingMTAIP; self.receivingMXHostname = receivingMXHostname
            self.receivingMXHelo = receivingMXHelo; self.receivingIP = receivingIP; self.failedSessionCount = failedSessionCount
            self.additionalInformation = additionalInformation; self.failureReasonCode = failureReasonCode
        }

        public var failureType: TLSFailureType? { TLSFailureType(rawValue: resultType) }

        enum CodingKeys: String, CodingKey {
            case resultType = "result-type"
            case sendingMTAIP = "sending-mta-ip"
            case receivingMXHostname = "receiving-mx-hostname"
            case receivingMXHelo = "receiving-mx-helo"
            case receivingIP = "receiving-ip"
            case failedSessionCount = "failed-session-count"
            case additionalInformation = "additional-information"
            case failureReasonCode = "failure-reason-code"
        }
    }

    // MARK: Writing and reading

    /// The report as RFC 8460 §4 JSON (keys sorted, so the same report always gives the same bytes).
    public func json() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every field is a string, an integer or an array of them: encoding cannot fail.
        return (try? Array(encoder.encode(self))) ?? []
    }

    /// Reads a received report (plain JSON; decompress first).
    public static func parse(json bytes: [UInt8]) throws(TLSReportError) -> TLSReport {
        guard bytes.count <= TLSReportLimits.maxJSONBytes else { throw .tooLarge(limit: TLSReportLimits.maxJSONBytes) }
        let report: TLSReport
        do {
            report = try JSONDecoder().decode(TLSReport.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw .invalid(Self.describe(error))
        } catch {
            throw .invalid("\(error)")
        }
        try report.check()
        return report
    }

    /// The limits and ranges a decoder cannot express.
    func check() throws(TLSReportError) {
        let limit = TLSReportLimits.maxStringLength
        func short(_ value: String?, _ name: String) throws(TLSReportError) {
            if let value, value.utf8.count > limit { throw .tooMany("characters in \(name)", limit: limit) }
        }
        try short(organizationName, "organization-name")
        try short(contactInfo, "contact-info")
        try short(reportID, "report-id")
        guard dateRange.end >= dateRange.start else { throw .outOfRange("date-range ends before it starts") }
        guard policies.count <= TLSReportLimits.maxPolicies else { throw .tooMany("policies", limit: TLSReportLimits.maxPolicies) }
        var details = 0
        for result in policies {
            guard result.policy.policyString.count <= TLSReportLimits.maxPolicyStrings else {
                throw .tooMany("policy-string lines", limit: TLSReportLimits.maxPolicyStrings)
            }
            for line in result.policy.policyString { try short(line, "policy-string") }
            try short(result.policy.policyDomain, "policy-domain")
            for host in result.policy.mxHost ?? [] { try short(host, "mx-host") }
            guard result.summary.totalSuccessfulSessionCount >= 0, result.summary.totalFailureSessionCount >= 0 else {
                throw .outOfRange("negative session count")
            }
            details += result.failureDetails.count
            guard details <= TLSReportLimits.maxFailureDetails else {
                throw .tooMany("failure-details", limit: TLSReportLimits.maxFailureDetails)
            }
            for detail in result.failureDetails {
                guard detail.failedSessionCount >= 0 else { throw .outOfRange("negative failed-session-count") }
                for value in [detail.resultType, detail.sendingMTAIP, detail.receivingMXHostname, detail.receivingMXHelo,
                              detail.receivingIP, detail.additionalInformation, detail.failureReasonCode] {
                    try short(value, "failure-details")
                }
            }
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .typeMismatch(_, let context): return "wrong type at \(path(context))"
        case .valueNotFound(_, let context): return "null at \(path(context))"
        case .keyNotFound(let key, let context): return "missing \(([path(context), key.stringValue].filter { !$0.isEmpty }).joined(separator: "."))"
        case .dataCorrupted(let context): return context.codingPath.isEmpty ? "not JSON" : "bad value at \(path(context))"
        @unknown default: return "\(error)"
        }
    }

    /// The sessions counted in the whole report.
    public var totals: (successful: Int, failed: Int) {
        policies.reduce((0, 0)) { sum, result in
            (sum.0.addingReportingOverflow(result.summary.totalSuccessfulSessionCount).partialValue,
             sum.1.addingReportingOverflow(result.summary.totalFailureSessionCount).partialValue)
        }
    }
}

/// RFC 3339 §5.6 date-times: written as `YYYY-MM-DDTHH:MM:SSZ`; read with any offset and optional
/// fractional seconds.
public enum RFC3339 {
    public static func format(_ date: Date) -> String {
        let seconds = Int64(floor(date.timeIntervalSince1970))
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let rest = seconds - days * 86_400
        let (y, m, d) = civil(fromDays: days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let year = String(y)
        return "\(String(repeating: "0", count: max(0, 4 - year.count)))\(year)-\(two(m))-\(two(d))T\(two(rest / 3600)):\(two(rest / 60 % 60)):\(two(rest % 60))Z"
    }

    public static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count >= 20, b.count <= 40 else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for i in range {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                value = value * 10 + Int64(b[i] - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), b[4] == 0x2D, let month = number(5..<7), b[7] == 0x2D, let day = number(8..<10),
              b[10] == 0x54 || b[10] == 0x74 || b[10] == 0x20, let hour = number(11..<13), b[13] == 0x3A,
              let minute = number(14..<16), b[16] == 0x3A, let second = number(17..<19),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60 else { return nil }
        var i = 19
        var fraction = 0.0
        if b[i] == 0x2E {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { fraction += Double(b[i] - 0x30) * scale; scale /= 10; i += 1 }
            guard i > start else { return nil }
        }
        guard i < b.count else { return nil }
        var offset: Int64 = 0
        if b[i] == 0x5A || b[i] == 0x7A {
            i += 1
        } else if b[i] == 0x2B || b[i] == 0x2D, i + 6 == b.count, let oh = number(i + 1..<i + 3), b[i + 3] == 0x3A,
                  let om = number(i + 4..<i + 6), oh < 24, om < 60 {
            offset = (oh * 60 + om) * 60 * (b[i] == 0x2D ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let dayNumber = days(fromCivil: year, month, day)
        let seconds = dayNumber * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    static func decode<K: CodingKey>(_ container: KeyedDecodingContainer<K>, _ key: K) throws -> Date {
        let text = try container.decode(String.self, forKey: key)
        guard let date = parse(text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not an RFC 3339 date-time")
        }
        return date
    }

    // Howard Hinnant's days-from-civil algorithm (proleptic Gregorian calendar).
    static func days(fromCivil y: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y - 1 : y
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z: Int64) -> (Int64, Int64, Int64) {
        let z = z + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
    }
}
