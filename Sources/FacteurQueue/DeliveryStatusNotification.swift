// Delivery status notifications: RFC 3464 (multipart/report, RFC 6522, with a
// message/delivery-status part; RFC 6533's global types for SMTPUTF8 messages), honouring
// RFC 3461's NOTIFY, RET, ENVID and ORCPT. A DSN is
// sent with the null reverse-path (RFC 3461 §6.2; RFC 5321 §4.5.5) so it is never bounced back.

import Foundation

/// RFC 3464 §2.3.3 Action (`expanded` is not used: we do not expand lists into the queue).
public enum DSNAction: String, Sendable {
    case failed, delayed, delivered
    /// Handed to a server that does not offer DSN (RFC 3461 §5.2.2): no further report will come.
    case relayed
}

/// One recipient's entry in a DSN (RFC 3464 §2.3).
public struct DSNRecipient: Sendable, Equatable {
    public var finalRecipient: String
    public var originalRecipient: String?
    public var action: DSNAction
    /// The last SMTP reply (`550 5.1.1 no such user`) or our own reason in that shape.
    public var diagnostic: String
    public var remoteMTA: String?
    public var lastAttempt: Date?
    public init(finalRecipient: String, originalRecipient: String? = nil, action: DSNAction, diagnostic: String,
                remoteMTA: String? = nil, lastAttempt: Date? = nil) {
        self.finalRecipient = finalRecipient; self.originalRecipient = originalRecipient; self.action = action
        self.diagnostic = diagnostic; self.remoteMTA = remoteMTA; self.lastAttempt = lastAttempt
    }

    /// RFC 3464 §2.3.4 Status: the enhanced code of the reply, else one derived from its class.
    public var status: String {
        let words = diagnostic.split(separator: " ")
        if words.count >= 2 {
            let parts = words[1].split(separator: ".", omittingEmptySubsequences: false)
            if parts.count == 3, ["2", "4", "5"].contains(String(parts[0])),
               parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isNumber) }) {
                return String(words[1])
            }
        }
        switch action {
        case .failed: return "5.0.0"
        case .delayed: return "4.0.0"
        case .delivered, .relayed: return "2.0.0"
        }
    }
}

/// Builds the DSN message bytes (CRLF line endings).
public struct DSNBuilder: Sendable {
    /// Our hostname: Reporting-MTA and the From address's domain.
    public var reportingMTA: String
    /// Include at most this much of the original message (RET=FULL); headers only beyond it.
    public var maxReturnedSize: Int

    public init(reportingMTA: String, maxReturnedSize: Int = 1024 * 1024) {
        self.reportingMTA = reportingMTA
        self.maxReturnedSize = maxReturnedSize
    }

    public func build(to sender: String, envelopeID: String?, arrival: Date, recipients: [DSNRecipient],
                      original: [UInt8], ret: DSNReturn?, willRetryUntil: Date? = nil, now: Date, utf8: Bool = false,
                      boundary: String = "=_facteur_" + UUID().uuidString,
                      messageID: String = UUID().uuidString) -> [UInt8] {
        let anyFailed = recipients.contains { $0.action == .failed }
        let anyDelayed = recipients.contains { $0.action == .delayed }
        let subject = anyFailed ? "Undelivered mail returned to sender"
            : anyDelayed ? "Delivery delayed: mail not yet delivered" : "Successful mail delivery report"
        var out = ""
        func line(_ text: String) { out += text + "\r\n" }
        line("From: Mail Delivery System <MAILER-DAEMON@\(reportingMTA)>")
        line("To: <\(Self.clean(sender))>")
        line("Subject: \(subject)")
        line("Date: \(Self.date(now))")
        line("Message-ID: <\(messageID)@\(reportingMTA)>")
        // RFC 3834 §5: automatic responders and filters must not answer this.
        line("Auto-Submitted: auto-replied")
        line("MIME-Version: 1.0")
        line("Content-Type: multipart/report; report-type=delivery-status;")
        line("\tboundary=\"\(boundary)\"")
        line("")
        line("This is a MIME-encapsulated delivery status notification.")
        line("")
        line("--\(boundary)")
        line("Content-Type: text/plain; charset=utf-8")
        line("Content-Transfer-Encoding: 8bit")
        line("")
        line("This is the mail system at \(reportingMTA).")
        line("")
        if anyFailed {
            line("Your message could not be delivered to one or more recipients.")
        } else if anyDelayed {
            line("Your message has not been delivered yet to one or more recipients.")
            if let willRetryUntil { line("The mail system will keep trying until \(Self.date(willRetryUntil)).") }
            line("You do not need to send it again.")
        } else if recipients.contains(where: { $0.action == .relayed }) {
            line("Your message was handed to a mail server that does not send delivery reports;")
            line("this is the last report you will get for these recipients.")
        } else {
            line("Your message was delivered.")
        }
        line("")
        for r in recipients {
            line("<\(Self.clean(r.finalRecipient))>: \(r.action.rawValue): \(Self.clean(r.diagnostic))")
        }
        line("")
        line("--\(boundary)")
        // RFC 6533 §3, §6: an internationalised message gets the UTF-8-capable report types.
        line("Content-Type: \(utf8 ? "message/global-delivery-status" : "message/delivery-status")")
        line("")
        // Per-message fields, RFC 3464 §2.2.
        line("Reporting-MTA: dns; \(reportingMTA)")
        if let envelopeID { line("Original-Envelope-Id: \(Self.clean(envelopeID))") }
        line("Arrival-Date: \(Self.date(arrival))")
        // Per-recipient fields, RFC 3464 §2.3; each group preceded by a blank line.
        for r in recipients {
            line("")
            line("Final-Recipient: rfc822; \(Self.clean(r.finalRecipient))")
            if let orcpt = r.originalRecipient { line("Original-Recipient: \(Self.clean(orcpt))") }
            line("Action: \(r.action.rawValue)")
            line("Status: \(r.status)")
            if let remote = r.remoteMTA { line("Remote-MTA: dns; \(Self.clean(remote))") }
            line("Diagnostic-Code: smtp; \(Self.clean(r.diagnostic))")
            if let last = r.lastAttempt { line("Last-Attempt-Date: \(Self.date(last))") }
            if r.action == .delayed, let willRetryUntil { line("Will-Retry-Until: \(Self.date(willRetryUntil))") }
        }
        line("")
        line("--\(boundary)")
        // RFC 3461 §4.3: RET=HDRS returns the headers only; without RET we choose: the whole
        // message for failures when it is not too large, headers otherwise.
        let full = (ret == .full || (ret == nil && anyFailed)) && original.count <= maxReturnedSize
        var bytes = Array(out.utf8)
        if full {
            bytes += Array("Content-Type: \(utf8 ? "message/global" : "message/rfc822")\r\n\r\n".utf8)
            bytes += original
        } else {
            bytes += Array("Content-Type: \(utf8 ? "message/global-headers" : "text/rfc822-headers")\r\n\r\n".utf8)
            bytes += Self.header(of: original)
        }
        if !(bytes.count >= 2 && bytes[bytes.count - 2] == 0x0D && bytes[bytes.count - 1] == 0x0A) {
            bytes += [0x0D, 0x0A]
        }
        bytes += Array("--\(boundary)--\r\n".utf8)
        return bytes
    }

    /// The header section (up to and including the blank line), or everything when there is none.
    static func header(of message: [UInt8]) -> [UInt8] {
        if message.count >= 2, message[0] == 0x0D, message[1] == 0x0A { return [0x0D, 0x0A] }
        var i = 0
        while i + 3 < message.count {
            if message[i] == 0x0D, message[i + 1] == 0x0A, message[i + 2] == 0x0D, message[i + 3] == 0x0A {
                return Array(message[0 ..< i + 4])
            }
            i += 1
        }
        return message
    }

    /// Text from remote servers and envelopes goes into header-like fields: no line breaks,
    /// no control characters, bounded length.
    static func clean(_ text: String) -> String {
        let scalars = text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) }
        return String(String(scalars).prefix(900))
    }

    /// RFC 5322 §3.3 date-time in UTC.
    static func date(_ date: Date) -> String {
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        func two(_ v: Int?) -> String { let v = v ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        let weekday = days[((c.weekday ?? 1) - 1 + 7) % 7]
        let month = months[((c.month ?? 1) - 1 + 12) % 12]
        return "\(weekday), \(c.day ?? 1) \(month) \(c.year ?? 1970) \(two(c.hour)):\(two(c.minute)):\(two(c.second)) +0000"
    }
}
