// FacteurSMTP: the SMTP server (RFC 5321) — parser, pure session state machine, NIO adapter.
// Extensions: PIPELINING (RFC 2920), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), SIZE (RFC 1870),
// ENHANCEDSTATUSCODES (RFC 2034, codes from RFC 3463), CHUNKING (RFC 3030), STARTTLS (RFC 3207).

/// One SMTP reply, possibly multi-line (RFC 5321 §4.2.1).
public struct SMTPReply: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: Int
    /// RFC 3463 enhanced status code (`2.0.0`), written after the basic code on every line.
    public var enhanced: String?
    public var lines: [String]

    public init(_ code: Int, _ enhanced: String?, _ lines: [String]) {
        self.code = code
        self.enhanced = enhanced
        self.lines = lines.isEmpty ? [""] : lines
    }

    public init(_ code: Int, _ enhanced: String?, _ text: String) {
        self.init(code, enhanced, [text])
    }

    public var isPositive: Bool { code < 400 }
    public var isTransientFailure: Bool { (400..<500).contains(code) }

    /// The wire form, each line CRLF-terminated.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        for (index, line) in lines.enumerated() {
            let separator = index == lines.count - 1 ? " " : "-"
            var text = "\(code)\(separator)"
            if let enhanced { text += enhanced + (line.isEmpty ? "" : " ") }
            text += line
            out.append(contentsOf: text.utf8)
            out.append(contentsOf: [13, 10])
        }
        return out
    }

    public var description: String { String(decoding: encoded, as: UTF8.self) }
}

extension SMTPReply {
    static func ok(_ text: String = "Ok") -> SMTPReply { SMTPReply(250, "2.0.0", text) }
    static let badSequence = SMTPReply(503, "5.5.1", "Bad sequence of commands")
    static let syntaxError = SMTPReply(500, "5.5.2", "Syntax error, command unrecognized")
    static let lineTooLong = SMTPReply(500, "5.5.6", "Line too long")
    static let tooManyErrors = SMTPReply(421, "4.7.0", "Too many errors, closing connection")
    static let timeout = SMTPReply(421, "4.4.2", "Timeout, closing connection")
    static let shuttingDown = SMTPReply(421, "4.3.2", "Service shutting down, closing connection")
    static let localError = SMTPReply(451, "4.3.0", "Local error in processing, try again later")
}
