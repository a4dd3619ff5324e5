// Text for `facteur queue list` and `facteur queue show ID` (issue 5, item 4): per-recipient
// state, attempts, next attempt and the last remote reply. The CLI prints these; the data comes
// from SQLiteMailStore's queue API (queuedMessages, queuedMessage(id:), retryQueued,
// bounceQueued, deleteQueued).

import FacteurStore
import Foundation

public enum QueueListing {
    /// One line per message: id, age, size, sender, and recipients by state.
    public static func list(_ messages: [QueuedMessage], now: Date = Date()) -> String {
        guard !messages.isEmpty else { return "The queue is empty.\n" }
        var out = "ID       AGE      SIZE  SENDER -> RECIPIENTS (state)\n"
        for m in messages {
            let recipients = m.recipients.map { "\($0.address) (\($0.state.rawValue))" }.joined(separator: ", ")
            let id = String(m.id).padding(toLength: 8, withPad: " ", startingAt: 0)
            let age = duration(now.timeIntervalSince(m.created)).padding(toLength: 8, withPad: " ", startingAt: 0)
            let size = String(m.size).leftPadded(to: 5)
            out += "\(id) \(age) \(size) <\(clean(m.sender))> -> \(clean(recipients))\n"
        }
        out += "\(messages.count) message(s), \(messages.reduce(0) { $0 + $1.recipients.filter { !$0.state.isFinal }.count }) recipient(s) waiting\n"
        return out
    }

    /// Everything about one message and each recipient.
    public static func show(_ m: QueuedMessage, now: Date = Date()) -> String {
        var out = ""
        out += "Message \(m.id)\n"
        out += "  sender:      <\(clean(m.sender))>\(m.sender.isEmpty ? " (a delivery status notification)" : "")\n"
        if let account = m.account { out += "  account:     \(clean(account))\n" }
        out += "  size:        \(m.size) octets\(m.has8BitData ? ", 8-bit" : "")\(m.requiresSMTPUTF8 ? ", needs SMTPUTF8" : "")\n"
        out += "  queued:      \(DSNBuilder.date(m.created)) (\(duration(now.timeIntervalSince(m.created))) ago)\n"
        out += "  expires:     \(DSNBuilder.date(m.expires))\n"
        if let warnAt = m.warnAt { out += "  delay warning at: \(DSNBuilder.date(warnAt))\n" }
        if let envid = m.envelopeID { out += "  ENVID:       \(clean(envid))\n" }
        if let ret = m.ret { out += "  RET:         \(ret.rawValue)\n" }
        out += "  TLS demand:  \(m.tlsDemand.rawValue)\(m.tlsDemand == .requireTLS ? " (RFC 8689 REQUIRETLS)" : m.tlsDemand == .policyExempt ? " (TLS-Required: No or a TLS report: sent even if the TLS policy fails)" : "")\n"
        out += "  blob:        \(m.blobID)\n"
        for r in m.recipients {
            out += "  <\(clean(r.address))>: \(r.state.rawValue), \(r.attempts) attempt(s)"
            if !r.state.isFinal { out += ", next \(DSNBuilder.date(r.nextAttempt))" }
            out += "\n"
            if let reply = r.lastReply {
                out += "      last reply\(r.remoteHost.map { " from \(clean($0))" } ?? ""): \(clean(reply))\n"
            }
            if let notify = r.notify { out += "      NOTIFY=\(notify.parameterValue)\n" }
            if let orcpt = r.originalRecipient { out += "      ORCPT=\(clean(orcpt))\n" }
        }
        return out
    }

    static func duration(_ seconds: TimeInterval) -> String {
        let s = max(0, Int(seconds.isFinite ? seconds : 0))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" }
        if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60)m" }
        return "\(s / 86400)d\(s % 86400 / 3600)h"
    }

    /// Remote replies and addresses are untrusted: no control characters reach the terminal.
    static func clean(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.value < 0x20 || ($0.value >= 0x7F && $0.value < 0xA0) ? "?" : Character($0) })
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
