// The header lines Facteur adds for each recipient at delivery (RFC 5321 §4.4):
// Return-Path (the envelope sender), Delivered-To (the recipient, for loop detection) and
// Received (where the message came from, how — with the TLS version and cipher, RFC 8314 §4.3 —
// and when). They are stored per recipient as a prefix in front of the shared blob.

import Foundation

public enum TraceHeaders {
    public static func prefix(transaction: SMTPTransaction, recipient: String, hostname: String, date: Date) -> [UInt8] {
        let sender = transaction.sender.map { "<\($0)>" } ?? "<>"
        var text = "Return-Path: \(sender)\r\n"
        text += "Delivered-To: \(sanitize(recipient))\r\n"
        return Array(text.utf8) + received(transaction: transaction, recipient: recipient, hostname: hostname, date: date)
    }

    /// The Received line alone: what a relayed (queued) message carries on; Return-Path and
    /// Delivered-To belong to final delivery only (RFC 5321 §4.4).
    public static func received(transaction: SMTPTransaction, recipient: String?, hostname: String, date: Date) -> [UInt8] {
        let client = addressLiteral(transaction.clientAddress)
        var text = "Received: from \(sanitize(transaction.heloName)) (\(client))\r\n"
        // RFC 8314 §4.3: record the TLS version and cipher, as a comment (RFC 5321 §4.4 allows CFWS here).
        if let tls = transaction.tls {
            // RFC 8689 §4: the message must keep to TLS onward; say so in the trace, beside the TLS it came under.
            text += "\t(using \(sanitize(tls))\(transaction.requireTLS ? "; REQUIRETLS" : ""))\r\n"
        }
        text += "\tby \(hostname) (Facteur) with \(transaction.receivedProtocol) id \(transaction.id)"
        if let recipient { text += "\r\n\tfor <\(sanitize(recipient))>" }
        text += "; \(rfc5322Date(date))\r\n"
        return Array(text.utf8)
    }

    /// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3).
    static func addressLiteral(_ address: String) -> String {
        address.contains(":") ? "[IPv6:\(address)]" : "[\(address)]"
    }

    /// Client-supplied text goes into a header: keep printable characters only.
    static func sanitize(_ text: String) -> String {
        String(text.unicodeScalars.prefix(255).map { scalar -> Character in
            (scalar.value < 32 || scalar.value == 127) ? "?" : Character(scalar)
        })
    }

    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// RFC 5322 §3.3 date-time in UTC, e.g. `Fri, 27 Nov 2026 11:29:50 +0000`.
    public static func rfc5322Date(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(parts.tm_mday) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) +0000"
    }
}
