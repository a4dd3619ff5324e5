// The hook through which mail from other organisations is checked before it is stored: sender
// authentication (SPF, DKIM, DMARC, ARC; FacteurMailAuth, composed in FacteurServer), later
// content filters. The inspector sees the bytes as they arrive (a `MessageDigest`), so checks that
// hash the body never read the message twice, then decides at the end of DATA.

import FacteurMIME
import FacteurStore

/// Fed with the message bytes on the connection's event loop while DATA/BDAT arrives; then
/// `finish` hands a Sendable summary to `MessageInspector.inspect`.
public protocol MessageDigest: AnyObject {
    func consume(_ bytes: UnsafeRawBufferPointer)
    func finish() -> any Sendable
}

public protocol MessageInspector: Sendable {
    /// A digest for one message from an unauthenticated client (port 25).
    func makeDigest() -> any MessageDigest
    /// Called once the message is complete, before it is stored. `digest` is what the digest's
    /// `finish` returned (nil if it could not be kept, e.g. a message over the size limit).
    func inspect(_ transaction: SMTPTransaction, digest: (any Sendable)?, header: MessageHeader, headerBytes: [UInt8]) async -> InspectionVerdict
    /// Header fields to put on a message we forward through `domain` (an ARC set, RFC 8617),
    /// given what `inspect` found; `prefix` is what already goes above the message.
    func forwardingFields(message: MessageData, prefix: [UInt8], inspection: InspectionVerdict, domain: String) async -> [UInt8]
}

extension MessageInspector {
    public func forwardingFields(message: MessageData, prefix: [UInt8], inspection: InspectionVerdict, domain: String) async -> [UInt8] { [] }
}

public struct InspectionVerdict: Sendable {
    public enum Disposition: Sendable, Equatable {
        case accept
        /// Stored in each recipient's Junk folder (DMARC p=quarantine).
        case junk
        /// Refused at the end of DATA with this reply (5xx: rejected, 4xx: try later).
        case reject(SMTPReply)
    }
    public var disposition: Disposition
    /// CRLF-terminated fields to add to the top of the stored message (Authentication-Results).
    public var headerFields: [UInt8]
    /// Byte ranges of header fields to drop from the message (forged Authentication-Results).
    public var removedFields: [Range<Int>]
    /// For the delivery log line, e.g. "spf=pass dkim=pass dmarc=pass".
    public var summary: String
    /// What the inspector found, for its own later use (sealing forwarded mail).
    public var findings: (any Sendable)?

    public init(disposition: Disposition = .accept, headerFields: [UInt8] = [], removedFields: [Range<Int>] = [], summary: String = "") {
        self.disposition = disposition; self.headerFields = headerFields; self.removedFields = removedFields; self.summary = summary
    }
}
