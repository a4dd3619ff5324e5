// The parsed summary of a message that IMAP's FETCH (ENVELOPE, BODYSTRUCTURE, BODY[section])
// and listing need, computed once at delivery so that nothing re-parses the blob later.
// RFC 3501 §7.4.2 / RFC 9051 §7.5.2 define what each field means on the wire.

/// What the store keeps about a message's structure.
///
/// A value type whose fields live in one shared, immutable box: a summary is large (an envelope
/// and a part tree held inline, some thirty references), and IMAP passes it through caches and
/// per-command tables, where copying the fields one by one cost more than the search that used
/// them. A copy is now one retain; a change replaces the box.
public struct MessageSummary: Codable, Sendable, Equatable {
    private final class Storage: Sendable {
        let envelope: Envelope
        let body: BodyPart
        let defects: [String]
        init(envelope: Envelope, body: BodyPart, defects: [String]) {
            self.envelope = envelope
            self.body = body
            self.defects = defects
        }
    }

    private var storage: Storage

    // `_read` lends the boxed value in place: `summary.envelope.subject` then copies one
    // string, not the whole envelope (ten fields, each retained and released).
    public var envelope: Envelope {
        _read { yield storage.envelope }
        set { storage = Storage(envelope: newValue, body: storage.body, defects: storage.defects) }
    }
    /// The root part: the whole message. Its `headerOffset` is 0.
    public var body: BodyPart {
        _read { yield storage.body }
        set { storage = Storage(envelope: storage.envelope, body: newValue, defects: storage.defects) }
    }
    /// What was wrong with the message, in words; the parse never fails.
    public var defects: [String] {
        _read { yield storage.defects }
        set { storage = Storage(envelope: storage.envelope, body: storage.body, defects: newValue) }
    }

    public init(envelope: Envelope, body: BodyPart, defects: [String] = []) {
        storage = Storage(envelope: envelope, body: body, defects: defects)
    }

    public static func == (a: MessageSummary, b: MessageSummary) -> Bool {
        a.storage === b.storage || (a.envelope == b.envelope && a.body == b.body && a.defects == b.defects)
    }

    private enum CodingKeys: String, CodingKey { case envelope, body, defects }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(envelope: try c.decode(Envelope.self, forKey: .envelope), body: try c.decode(BodyPart.self, forKey: .body),
                  defects: try c.decode([String].self, forKey: .defects))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(envelope, forKey: .envelope)
        try c.encode(body, forKey: .body)
        try c.encode(defects, forKey: .defects)
    }
}

/// IMAP's ENVELOPE: the header values as they stand in the message (unfolded, encoded words kept).
public struct Envelope: Codable, Sendable, Equatable {
    public var date: String?
    public var subject: String?
    public var from: [EnvelopeAddress]
    public var sender: [EnvelopeAddress]
    public var replyTo: [EnvelopeAddress]
    public var to: [EnvelopeAddress]
    public var cc: [EnvelopeAddress]
    public var bcc: [EnvelopeAddress]
    public var inReplyTo: String?
    public var messageID: String?

    public init(date: String? = nil, subject: String? = nil, from: [EnvelopeAddress] = [], sender: [EnvelopeAddress] = [],
                replyTo: [EnvelopeAddress] = [], to: [EnvelopeAddress] = [], cc: [EnvelopeAddress] = [],
                bcc: [EnvelopeAddress] = [], inReplyTo: String? = nil, messageID: String? = nil) {
        self.date = date; self.subject = subject; self.from = from; self.sender = sender; self.replyTo = replyTo
        self.to = to; self.cc = cc; self.bcc = bcc; self.inReplyTo = inReplyTo; self.messageID = messageID
    }
}

/// One address of an ENVELOPE list, in IMAP's four fields.
/// A group is written as RFC 3501 says: a start marker (mailbox = group name, host = nil)
/// then its members, then an end marker (mailbox = nil, host = nil).
public struct EnvelopeAddress: Codable, Sendable, Equatable {
    public var name: String?
    public var adl: String?
    public var mailbox: String?
    public var host: String?

    public init(name: String? = nil, adl: String? = nil, mailbox: String? = nil, host: String? = nil) {
        self.name = name; self.adl = adl; self.mailbox = mailbox; self.host = host
    }
}

/// A MIME parameter (`charset=utf-8`). In a `BodyPart`, as written in the field (RFC 2231 `name*`
/// and `name*0` kept apart and undecoded, as IMAP reports them); `rfc2231Decoded` decodes a list.
public struct MIMEParameter: Codable, Sendable, Equatable {
    public var name: String
    public var value: String
    public init(name: String, value: String) { self.name = name; self.value = value }
}

public struct ContentDisposition: Codable, Sendable, Equatable {
    public var type: String
    public var parameters: [MIMEParameter]
    public init(type: String, parameters: [MIMEParameter] = []) { self.type = type; self.parameters = parameters }
}

/// One MIME part with everything BODYSTRUCTURE needs, and where its bytes are.
/// Offsets are relative to the start of the stored message (the blob, without any per-recipient prefix).
public struct BodyPart: Codable, Sendable, Equatable {
    public var type: String                 // "text", "multipart", … as in the header (case kept); default "text"
    public var subtype: String              // "plain", "mixed", …; default "plain"
    public var parameters: [MIMEParameter]
    public var id: String?                  // Content-ID
    public var description: String?         // Content-Description
    public var encoding: String             // Content-Transfer-Encoding; default "7BIT"
    public var md5: String?                 // Content-MD5
    public var disposition: ContentDisposition?
    public var language: [String]?          // Content-Language
    public var location: String?            // Content-Location
    public var headerOffset: Int            // first byte of this part's header
    public var headerLength: Int            // header bytes including the blank line that ends them
    public var bodyOffset: Int
    public var bodyLength: Int              // octets of the body
    public var lines: Int                   // lines of the body (text/* and message/rfc822 report it)
    /// multipart: the parts; message/rfc822 (and message/global): exactly one, the encapsulated message's root.
    public var children: [BodyPart]
    /// message/rfc822: the encapsulated message's envelope.
    public var encapsulatedEnvelope: Envelope?

    public init(type: String = "text", subtype: String = "plain", parameters: [MIMEParameter] = [], id: String? = nil,
                description: String? = nil, encoding: String = "7BIT", md5: String? = nil,
                disposition: ContentDisposition? = nil, language: [String]? = nil, location: String? = nil,
                headerOffset: Int = 0, headerLength: Int = 0, bodyOffset: Int = 0, bodyLength: Int = 0, lines: Int = 0,
                children: [BodyPart] = [], encapsulatedEnvelope: Envelope? = nil) {
        self.type = type; self.subtype = subtype; self.parameters = parameters; self.id = id
        self.description = description; self.encoding = encoding; self.md5 = md5; self.disposition = disposition
        self.language = language; self.location = location; self.headerOffset = headerOffset
        self.headerLength = headerLength; self.bodyOffset = bodyOffset; self.bodyLength = bodyLength
        self.lines = lines; self.children = children; self.encapsulatedEnvelope = encapsulatedEnvelope
    }

    public var isMultipart: Bool { type.lowercased() == "multipart" }
}
