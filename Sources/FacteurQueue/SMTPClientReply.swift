// SMTP replies as a client reads them (RFC 5321 §4.2: `ddd-text` continuation lines, `ddd text`
// last line; RFC 3463 enhanced status codes) and the EHLO keywords (RFC 5321 §4.1.1.1).

/// One complete reply from an SMTP server.
public struct SMTPClientReply: Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    /// The text of each line, without the code and separator.
    public var lines: [String]

    public init(code: Int, lines: [String]) {
        self.code = code
        self.lines = lines
    }

    public var isPositive: Bool { (200 ..< 300).contains(code) }
    public var isIntermediate: Bool { (300 ..< 400).contains(code) }
    public var isTransient: Bool { (400 ..< 500).contains(code) }
    public var isPermanent: Bool { (500 ..< 600).contains(code) }

    /// RFC 3463 `class.subject.detail` at the start of the first line, if present.
    public var enhancedCode: String? {
        guard let first = lines.first, let word = first.split(separator: " ").first else { return nil }
        let parts = word.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, ["2", "4", "5"].contains(String(parts[0])),
              parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isNumber) }) else { return nil }
        return String(word)
    }

    /// One line, for logs, the queue's `lastReply` and DSNs: `550 5.1.1 no such user`.
    public var description: String {
        "\(code) " + lines.joined(separator: " / ")
    }
}

/// Reassembles replies from lines. Pure; the channel handler feeds it.
struct SMTPReplyParser {
    enum ParseError: Error, Equatable {
        case malformed(String)
        case tooLong
    }

    /// RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; servers exceed it, so we accept
    /// more, but bounded: replies are untrusted input.
    static let maxLineLength = 4096
    static let maxLines = 200

    private var code: Int?
    private var lines: [String] = []

    /// Feeds one line (without CRLF). Returns a reply when this line completes one.
    mutating func feed(_ line: [UInt8]) throws(ParseError) -> SMTPClientReply? {
        guard line.count <= Self.maxLineLength else { throw .tooLong }
        guard line.count >= 3, line[0 ..< 3].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw .malformed(String(decoding: line.prefix(80), as: UTF8.self))
        }
        let value = Int(line[0] - 0x30) * 100 + Int(line[1] - 0x30) * 10 + Int(line[2] - 0x30)
        guard (200 ..< 600).contains(value) else { throw .malformed("reply code \(value)") }
        var last = true
        var text: ArraySlice<UInt8> = []
        if line.count > 3 {
            switch line[3] {
            case UInt8(ascii: "-"): last = false
            case UInt8(ascii: " "): break
            default: throw .malformed(String(decoding: line.prefix(80), as: UTF8.self))
            }
            text = line[4...]
        }
        if let code, code != value { throw .malformed("reply code changed from \(code) to \(value) inside a reply") }
        code = value
        lines.append(String(decoding: text, as: UTF8.self))
        guard lines.count <= Self.maxLines else { throw .tooLong }
        if !last { return nil }
        let reply = SMTPClientReply(code: value, lines: lines)
        code = nil
        lines = []
        return reply
    }
}

/// What a server announced in its EHLO reply.
public struct SMTPServerExtensions: Sendable, Equatable {
    /// Keyword (uppercased) → parameters.
    public var keywords: [String: [String]] = [:]

    public init() {}

    public init(ehloReply: SMTPClientReply) {
        for line in ehloReply.lines.dropFirst() {
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first else { continue }
            keywords[first.uppercased()] = Array(words.dropFirst())
        }
    }

    public func has(_ keyword: String) -> Bool { keywords[keyword.uppercased()] != nil }

    /// RFC 1870: the announced limit; nil when not announced or 0 (no fixed limit).
    public var maximumSize: Int? {
        guard let value = keywords["SIZE"]?.first, let size = Int(value), size > 0 else { return nil }
        return size
    }

    public var authMechanisms: [String] { (keywords["AUTH"] ?? []).map { $0.uppercased() } }
}
