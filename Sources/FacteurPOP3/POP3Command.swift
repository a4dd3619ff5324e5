// FacteurPOP3: the POP3 server — RFC 1939 (the protocol), RFC 2449 (CAPA, response codes),
// RFC 2595 §4 (STLS), RFC 5034 (SASL AUTH), RFC 3206 (SYS and AUTH response codes),
// RFC 8314 (implicit TLS, POP3S).
//
// This file: POP3 commands and their parser. One command line, CRLF stripped, in; a typed
// command or the reason it is bad, out. Pure: no I/O, no state.
//
// APOP (RFC 1939 §7) is not implemented: it needs the server to hold every password in a form
// from which MD5(timestamp + password) can be computed, i.e. reversibly. Facteur stores only
// salted KDF hashes and SCRAM keys, so APOP cannot be offered without weakening storage for
// everybody. SASL SCRAM-SHA-256 (RFC 5034 + RFC 7677) gives the same "no password on the wire".

/// A POP3 command (RFC 1939 §4–§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4).
public enum POP3Command: Equatable, Sendable {
    case user(String)
    case pass(String)
    case stat
    /// `LIST` (nil) or `LIST msg`.
    case list(Int?)
    case retr(Int)
    case dele(Int)
    case noop
    case rset
    case quit
    case top(message: Int, lines: Int)
    case uidl(Int?)
    case capa
    case stls
    /// `AUTH` alone lists the mechanisms (an old convention clients still use); otherwise the
    /// mechanism and the optional initial response (base64, `=` for an empty one, RFC 5034 §4).
    case auth(mechanism: String?, initialResponse: String?)
}

/// Why a command line could not be parsed; the session turns it into `-ERR` with this text.
public struct POP3ParseError: Error, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

public enum POP3CommandParser {
    /// RFC 2449 §4: a command line is at most 255 octets including CRLF. SASL responses
    /// (RFC 5034 §4) are not commands and may be longer; the adapter frames those separately.
    public static let maxCommandLength = 255
    /// RFC 2449 §4: each argument is at most 40 octets. Passwords (PASS) may be longer in
    /// practice; we take the rest of the line for PASS, bounded by the command length.
    public static let maxArgumentLength = 40
    /// Message numbers above this are refused as syntax errors (no maildrop has this many).
    static let maxNumber = 1_000_000_000

    public static func parse(_ line: [UInt8]) -> Result<POP3Command, POP3ParseError> {
        guard line.count <= maxCommandLength else { return .failure(POP3ParseError("Command line too long")) }
        guard !line.contains(0), line.allSatisfy({ $0 >= 0x20 || $0 == 0x09 }) else {
            return .failure(POP3ParseError("Control characters in command"))
        }
        // keyword: 3-4 printable characters, case-insensitive (RFC 1939 §3).
        let space = line.firstIndex(of: UInt8(ascii: " ")) ?? line.endIndex
        let keywordBytes = line[line.startIndex..<space]
        guard (3...4).contains(keywordBytes.count), keywordBytes.allSatisfy(isAlpha) else {
            return .failure(POP3ParseError("Unknown command"))
        }
        let keyword = String(decoding: keywordBytes.map { $0 & ~0x20 }, as: UTF8.self)
        let rest: ArraySlice<UInt8> = space < line.endIndex ? line[(space + 1)...] : []

        // PASS takes the rest of the line verbatim: passwords may contain spaces.
        if keyword == "PASS" {
            guard space < line.endIndex, !rest.isEmpty else { return .failure(POP3ParseError("PASS needs a password")) }
            return .success(.pass(String(decoding: rest, as: UTF8.self)))
        }
        let arguments = rest.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        if arguments.contains(where: { $0.count > maxArgumentLength }), keyword != "AUTH" {
            return .failure(POP3ParseError("Argument too long"))
        }
        switch keyword {
        case "USER":
            guard arguments.count == 1 else { return .failure(POP3ParseError("USER needs exactly one name")) }
            return .success(.user(String(decoding: arguments[0], as: UTF8.self)))
        case "STAT": return noArguments(arguments, .stat)
        case "NOOP": return noArguments(arguments, .noop)
        case "RSET": return noArguments(arguments, .rset)
        case "QUIT": return noArguments(arguments, .quit)
        case "CAPA": return noArguments(arguments, .capa)
        case "STLS": return noArguments(arguments, .stls)
        case "LIST", "UIDL":
            guard arguments.count <= 1 else { return .failure(POP3ParseError("\(keyword) takes at most one message number")) }
            var number: Int?
            if let argument = arguments.first {
                guard let parsed = messageNumber(argument) else { return .failure(POP3ParseError("Invalid message number")) }
                number = parsed
            }
            return .success(keyword == "LIST" ? .list(number) : .uidl(number))
        case "RETR", "DELE":
            guard arguments.count == 1 else { return .failure(POP3ParseError("\(keyword) needs a message number")) }
            guard let number = messageNumber(arguments[0]) else { return .failure(POP3ParseError("Invalid message number")) }
            return .success(keyword == "RETR" ? .retr(number) : .dele(number))
        case "TOP":
            guard arguments.count == 2 else { return .failure(POP3ParseError("TOP needs a message number and a line count")) }
            guard let number = messageNumber(arguments[0]) else { return .failure(POP3ParseError("Invalid message number")) }
            guard let lines = decimal(arguments[1]) else { return .failure(POP3ParseError("Invalid line count")) }
            return .success(.top(message: number, lines: lines))
        case "AUTH":
            guard arguments.count <= 2 else { return .failure(POP3ParseError("AUTH takes a mechanism and an optional initial response")) }
            guard let mechanism = arguments.first else { return .success(.auth(mechanism: nil, initialResponse: nil)) }
            // RFC 4422 §3.1 mechanism names: up to 20 of A-Z 0-9 - _.
            guard mechanism.count <= 20, mechanism.allSatisfy({ isAlpha($0) || isDigit($0) || $0 == 0x2D || $0 == 0x5F }) else {
                return .failure(POP3ParseError("Invalid mechanism name"))
            }
            let initial = arguments.count == 2 ? String(decoding: arguments[1], as: UTF8.self) : nil
            return .success(.auth(mechanism: String(decoding: mechanism, as: UTF8.self).uppercased(), initialResponse: initial))
        default:
            return .failure(POP3ParseError("Unknown command"))
        }
    }

    private static func noArguments(_ arguments: [ArraySlice<UInt8>], _ command: POP3Command) -> Result<POP3Command, POP3ParseError> {
        arguments.isEmpty ? .success(command) : .failure(POP3ParseError("This command takes no argument"))
    }

    /// RFC 1939 §3: a message number is a positive decimal; "0" never names a message.
    static func messageNumber(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard let value = decimal(bytes), value >= 1 else { return nil }
        return value
    }

    /// Plain decimal digits, bounded so arithmetic on it never overflows.
    static func decimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 10, bytes.allSatisfy(isDigit) else { return nil }
        var value = 0
        for byte in bytes { value = value * 10 + Int(byte - 0x30) }
        return value <= maxNumber ? value : nil
    }

    static func isAlpha(_ byte: UInt8) -> Bool { (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A }
    static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
}
