// SMTP commands (RFC 5321 §4.1) and their parser: one command line, CRLF stripped, in; a typed
// command or the reply that explains what is wrong, out. Pure: no I/O, no state.

/// A mailbox as written in a path (RFC 5321 §4.1.2; RFC 6531 allows UTF-8 in both halves).
public struct SMTPMailbox: Equatable, Sendable, CustomStringConvertible {
    /// The local part with quoting removed (`"john doe"` → `john doe`).
    public var localPart: String
    /// The domain, or the address literal with its brackets (`[192.0.2.1]`).
    public var domain: String

    public init(localPart: String, domain: String) {
        self.localPart = localPart
        self.domain = domain
    }

    /// `local@domain`, quoting the local part again when it needs it.
    public var description: String {
        let needsQuotes = localPart.isEmpty || !SMTPCommandParser.isDotString(Array(localPart.utf8))
        if needsQuotes {
            var quoted = "\""
            for character in localPart {
                if character == "\"" || character == "\\" { quoted.append("\\") }
                quoted.append(character)
            }
            return quoted + "\"@" + domain
        }
        return localPart + "@" + domain
    }

    public var isASCII: Bool { localPart.utf8.allSatisfy { $0 < 0x80 } && domain.utf8.allSatisfy { $0 < 0x80 } }
}

/// ESMTP parameters of MAIL and RCPT, keyword uppercased (RFC 5321 §4.1.2 esmtp-param).
public struct SMTPParameters: Equatable, Sendable {
    public var items: [(keyword: String, value: String?)]

    public init(_ items: [(keyword: String, value: String?)] = []) { self.items = items }

    public subscript(keyword: String) -> String?? {
        items.first { $0.keyword == keyword }.map { $0.value }
    }

    public func contains(_ keyword: String) -> Bool { items.contains { $0.keyword == keyword } }

    public static func == (lhs: SMTPParameters, rhs: SMTPParameters) -> Bool {
        lhs.items.count == rhs.items.count && zip(lhs.items, rhs.items).allSatisfy { $0.keyword == $1.keyword && $0.value == $1.value }
    }
}

public enum SMTPCommand: Equatable, Sendable {
    case ehlo(String)
    case helo(String)
    /// `nil` is the null reverse-path `<>` (bounces).
    case mail(from: SMTPMailbox?, parameters: SMTPParameters)
    /// A bare `<postmaster>` (RFC 5321 §4.1.1.3) has an empty domain.
    case rcpt(to: SMTPMailbox, parameters: SMTPParameters)
    case data
    case bdat(size: Int, last: Bool)
    case rset
    case noop
    case quit
    case vrfy(String)
    case expn(String)
    case help(String?)
    case startTLS
    case auth(mechanism: String, initialResponse: String?)
}

public enum SMTPCommandParser {
    /// The longest BDAT chunk size we read as a number; larger values are a syntax error.
    static let maxChunkSizeDigits = 18

    public static func parse(_ line: [UInt8]) -> Result<SMTPCommand, SMTPReply> {
        if line.contains(0) { return .failure(SMTPReply(500, "5.5.2", "NUL character in command")) }
        // Verb: up to the first space.
        let spaceIndex = line.firstIndex(of: UInt8(ascii: " ")) ?? line.endIndex
        let verb = String(decoding: line[..<spaceIndex], as: UTF8.self).uppercased()
        var argument = spaceIndex < line.endIndex ? Array(line[(spaceIndex + 1)...]) : []
        // Trailing white space is common from hand-typed sessions; forgive it.
        while let last = argument.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { argument.removeLast() }
        let argumentText = String(decoding: argument, as: UTF8.self)

        switch verb {
        case "EHLO", "HELO":
            guard !argument.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: \(verb) hostname")) }
            let name = argumentText.split(separator: " ", maxSplits: 1).first.map(String.init) ?? argumentText
            return .success(verb == "EHLO" ? .ehlo(name) : .helo(name))
        case "MAIL":
            return parseMail(argument)
        case "RCPT":
            return parseRcpt(argument)
        case "DATA":
            guard argument.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: DATA (no parameters)")) }
            return .success(.data)
        case "BDAT":
            return parseBDAT(argumentText)
        case "RSET":
            guard argument.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: RSET (no parameters)")) }
            return .success(.rset)
        case "NOOP":
            return .success(.noop)  // RFC 5321 §4.1.1.9: a parameter is allowed and ignored
        case "QUIT":
            guard argument.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: QUIT (no parameters)")) }
            return .success(.quit)
        case "VRFY":
            guard !argument.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: VRFY address")) }
            return .success(.vrfy(argumentText))
        case "EXPN":
            guard !argument.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: EXPN list")) }
            return .success(.expn(argumentText))
        case "HELP":
            return .success(.help(argument.isEmpty ? nil : argumentText))
        case "STARTTLS":
            guard argument.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: STARTTLS (no parameters)")) }
            return .success(.startTLS)
        case "AUTH":
            let parts = argumentText.split(separator: " ", omittingEmptySubsequences: true)
            guard (1...2).contains(parts.count) else { return .failure(SMTPReply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")) }
            return .success(.auth(mechanism: parts[0].uppercased(), initialResponse: parts.count == 2 ? String(parts[1]) : nil))
        default:
            return .failure(.syntaxError)
        }
    }

    // MAIL FROM:<reverse-path> [SP Mail-parameters]      (RFC 5321 §4.1.1.2)
    static func parseMail(_ argument: [UInt8]) -> Result<SMTPCommand, SMTPReply> {
        guard let rest = stripPrefix("FROM:", argument) else {
            return .failure(SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
        }
        switch parsePathAndParameters(rest, allowNull: true) {
        case .failure(let reply): return .failure(reply)
        case .success(let (mailbox, parameters)): return .success(.mail(from: mailbox, parameters: parameters))
        }
    }

    // RCPT TO:( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path ) [SP Rcpt-parameters]   (§4.1.1.3)
    static func parseRcpt(_ argument: [UInt8]) -> Result<SMTPCommand, SMTPReply> {
        guard let rest = stripPrefix("TO:", argument) else {
            return .failure(SMTPReply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
        }
        switch parsePathAndParameters(rest, allowNull: false) {
        case .failure(let reply): return .failure(reply)
        case .success(let (mailbox, parameters)):
            guard let mailbox else { return .failure(SMTPReply(501, "5.1.3", "Bad recipient address syntax")) }
            return .success(.rcpt(to: mailbox, parameters: parameters))
        }
    }

    // bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF     (RFC 3030 §2)
    static func parseBDAT(_ argument: String) -> Result<SMTPCommand, SMTPReply> {
        let parts = argument.split(separator: " ", omittingEmptySubsequences: true)
        guard (1...2).contains(parts.count), parts[0].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              parts[0].utf8.count <= maxChunkSizeDigits, let size = Int(parts[0]) else {
            return .failure(SMTPReply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]"))
        }
        if parts.count == 2 {
            guard parts[1].uppercased() == "LAST" else { return .failure(SMTPReply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")) }
            return .success(.bdat(size: size, last: true))
        }
        return .success(.bdat(size: size, last: false))
    }

    /// Case-insensitive prefix (`FROM:`), then optional spaces (many clients send `MAIL FROM: <a@b>`).
    private static func stripPrefix(_ prefix: String, _ bytes: [UInt8]) -> ArraySlice<UInt8>? {
        let p = Array(prefix.utf8)
        guard bytes.count >= p.count else { return nil }
        for (a, b) in zip(bytes, p) where asciiUpper(a) != b { return nil }
        var rest = bytes[p.count...]
        while rest.first == UInt8(ascii: " ") { rest = rest.dropFirst() }
        return rest
    }

    private static func parsePathAndParameters(_ bytes: ArraySlice<UInt8>, allowNull: Bool) -> Result<(SMTPMailbox?, SMTPParameters), SMTPReply> {
        let badAddress = SMTPReply(501, allowNull ? "5.1.7" : "5.1.3", "Bad address syntax")
        var pathBytes: ArraySlice<UInt8>
        var rest: ArraySlice<UInt8>
        if bytes.first == UInt8(ascii: "<") {
            // Find the closing '>' outside a quoted string.
            var index = bytes.index(after: bytes.startIndex)
            var inQuotes = false
            var close: Int?
            while index < bytes.endIndex {
                let byte = bytes[index]
                if inQuotes, byte == UInt8(ascii: "\\") { index += 2; continue }
                if byte == UInt8(ascii: "\"") { inQuotes.toggle() }
                if !inQuotes, byte == UInt8(ascii: ">") { close = index; break }
                index += 1
            }
            guard let close else { return .failure(badAddress) }
            pathBytes = bytes[(bytes.startIndex + 1)..<close]
            rest = bytes[(close + 1)...]
        } else {
            // Without brackets (RFC 821 clients); take the first word.
            let end = bytes.firstIndex(of: UInt8(ascii: " ")) ?? bytes.endIndex
            pathBytes = bytes[..<end]
            rest = bytes[end...]
            if pathBytes.isEmpty { return .failure(badAddress) }
        }
        if let first = rest.first, first != UInt8(ascii: " ") { return .failure(badAddress) }

        var mailbox: SMTPMailbox?
        if pathBytes.isEmpty {
            guard allowNull else { return .failure(badAddress) }
            mailbox = nil
        } else {
            // Source routes (A-d-l ":") are obsolete; RFC 5321 §4.1.1.3 says to ignore them.
            if pathBytes.first == UInt8(ascii: "@") {
                guard let colon = pathBytes.firstIndex(of: UInt8(ascii: ":")) else { return .failure(badAddress) }
                pathBytes = pathBytes[(colon + 1)...]
            }
            if !allowNull, pathBytes.count == 10, String(decoding: pathBytes, as: UTF8.self).lowercased() == "postmaster" {
                mailbox = SMTPMailbox(localPart: "postmaster", domain: "")
            } else {
                guard let parsed = parseMailbox(pathBytes) else { return .failure(badAddress) }
                mailbox = parsed
            }
        }

        guard let parameters = parseParameters(rest) else {
            return .failure(SMTPReply(501, "5.5.4", "Bad parameter syntax"))
        }
        return .success((mailbox, parameters))
    }

    // Mailbox = Local-part "@" ( Domain / address-literal )
    static func parseMailbox(_ bytes: ArraySlice<UInt8>) -> SMTPMailbox? {
        guard let at = bytes.lastIndex(of: UInt8(ascii: "@")) else { return nil }
        let local = bytes[..<at]
        let domain = bytes[(at + 1)...]
        guard !local.isEmpty, local.count <= 64 * 4, !domain.isEmpty, domain.count <= 255 else { return nil }
        let localPart: String
        if local.first == UInt8(ascii: "\"") {
            guard let unquoted = unquote(local) else { return nil }
            localPart = unquoted
        } else {
            guard isDotString(Array(local)) else { return nil }
            localPart = String(decoding: local, as: UTF8.self)
        }
        guard isDomainOrLiteral(domain) else { return nil }
        guard validUTF8(local), validUTF8(domain) else { return nil }
        return SMTPMailbox(localPart: localPart, domain: String(decoding: domain, as: UTF8.self))
    }

    // Dot-string = Atom *("." Atom); atext per RFC 5322 §3.2.3, plus UTF-8 (RFC 6531 §3.3)
    static func isDotString(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first, let last = bytes.last, first != UInt8(ascii: "."), last != UInt8(ascii: ".") else { return false }
        var previousDot = false
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                if previousDot { return false }
                previousDot = true
                continue
            }
            previousDot = false
            guard isAtext(byte) else { return false }
        }
        return true
    }

    static func isAtext(_ byte: UInt8) -> Bool {
        if byte >= 0x80 { return true }
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-/=?^_`{|}~".utf8).contains(byte)
        }
    }

    // Quoted-string = DQUOTE *QcontentSMTP DQUOTE
    private static func unquote(_ bytes: ArraySlice<UInt8>) -> String? {
        guard bytes.count >= 2, bytes.last == UInt8(ascii: "\"") else { return nil }
        var out: [UInt8] = []
        var index = bytes.startIndex + 1
        let end = bytes.endIndex - 1
        while index < end {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                guard index + 1 < end, (32...126).contains(bytes[index + 1]) else { return nil }
                out.append(bytes[index + 1])
                index += 2
                continue
            }
            guard byte >= 0x80 || (32...126).contains(byte), byte != UInt8(ascii: "\"") else { return nil }
            out.append(byte)
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    // Domain = sub-domain *("." sub-domain) / address-literal = "[" ... "]"
    private static func isDomainOrLiteral(_ bytes: ArraySlice<UInt8>) -> Bool {
        if bytes.first == UInt8(ascii: "[") {
            guard bytes.last == UInt8(ascii: "]"), bytes.count > 2 else { return false }
            return bytes.dropFirst().dropLast().allSatisfy { $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "[") && $0 != UInt8(ascii: "]") && $0 != UInt8(ascii: "\\") }
        }
        var labelLength = 0
        var previous: UInt8 = UInt8(ascii: ".")
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard labelLength > 0, previous != UInt8(ascii: "-") else { return false }
                labelLength = 0
            } else {
                let isLetDig = byte >= 0x80 || (byte >= 48 && byte <= 57) || (byte | 0x20 >= 97 && byte | 0x20 <= 122)
                guard isLetDig || (byte == UInt8(ascii: "-") && labelLength > 0) || byte == UInt8(ascii: "_") else { return false }
                labelLength += 1
                guard labelLength <= 63 * 4 else { return false }
            }
            previous = byte
        }
        return labelLength > 0 && previous != UInt8(ascii: "-")
    }

    // Mail-parameters = esmtp-param *(SP esmtp-param); esmtp-param = esmtp-keyword ["=" esmtp-value]
    private static func parseParameters(_ bytes: ArraySlice<UInt8>) -> SMTPParameters? {
        var items: [(keyword: String, value: String?)] = []
        for word in bytes.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true) {
            guard items.count < 32 else { return nil }
            let equals = word.firstIndex(of: UInt8(ascii: "="))
            let keyword = word[..<(equals ?? word.endIndex)]
            guard let first = keyword.first, isAlnum(first), keyword.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") }) else { return nil }
            var value: String?
            if let equals {
                let valueBytes = word[(equals + 1)...]
                guard !valueBytes.isEmpty, valueBytes.allSatisfy({ $0 >= 0x80 || ($0 >= 33 && $0 <= 126 && $0 != UInt8(ascii: "=")) }),
                      validUTF8(valueBytes) else { return nil }
                value = String(decoding: valueBytes, as: UTF8.self)
            }
            items.append((String(decoding: keyword, as: UTF8.self).uppercased(), value))
        }
        return SMTPParameters(items)
    }

    private static func isAlnum(_ byte: UInt8) -> Bool {
        (byte >= 48 && byte <= 57) || (byte | 0x20 >= 97 && byte | 0x20 <= 122)
    }

    private static func asciiUpper(_ byte: UInt8) -> UInt8 {
        (byte >= 97 && byte <= 122) ? byte - 32 : byte
    }

    private static func validUTF8(_ bytes: ArraySlice<UInt8>) -> Bool {
        if bytes.allSatisfy({ $0 < 0x80 }) { return true }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
