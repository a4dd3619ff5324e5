// RFC 5322 §3.4 address lists (mailbox, name-addr, angle-addr, addr-spec, group), with the obsolete
// syntax of §4.4 tolerated (routes "@a,@b:", CFWS around dots, empty list elements), RFC 6532 UTF-8 in
// every part, and RFC 2047 words decoded in display names. The conversion to IMAP's ENVELOPE address
// (RFC 3501 §7.4.2) follows what Dovecot sends.

/// One mailbox: `"Joe Q. Public" <john.q.public@example.com>`.
public struct MailAddress: Sendable, Hashable, Codable {
    /// The display name with quotes removed and RFC 2047 words decoded; nil when there is none.
    public var displayName: String?
    /// The display name as written, quotes removed, encoded words kept: what IMAP's ENVELOPE carries.
    public var rawDisplayName: String?
    /// Obsolete source route (RFC 5322 §4.4 obs-route), as "@a.example,@b.example"; ENVELOPE's adl.
    public var route: String?
    /// The local part, quotes and quoted-pairs removed.
    public var localPart: String
    /// The domain (a domain literal keeps its brackets); nil when the address has none.
    public var domain: String?
    /// The last comment seen in the address (`john@example.com (John)` gives "John").
    public var comment: String?

    public init(displayName: String? = nil, rawDisplayName: String? = nil, route: String? = nil, localPart: String,
                domain: String?, comment: String? = nil) {
        self.displayName = displayName
        self.rawDisplayName = rawDisplayName ?? displayName
        self.route = route
        self.localPart = localPart
        self.domain = domain
        self.comment = comment
    }

    /// Parses one mailbox: the first mailbox of `value` read as an address list.
    public init?(parsing value: String) {
        guard let first = AddressList(parsing: value).mailboxes.first else { return nil }
        self = first
    }

    /// `local@domain`, the local part quoted when it is not a dot-atom (RFC 5322 §3.4.1).
    public var address: String {
        let local = MailAddress.isDotAtom(localPart) ? localPart : MailAddress.quote(localPart)
        guard let domain else { return local }
        return local + "@" + domain
    }

    /// The IMAP ENVELOPE form (RFC 3501 §7.4.2), as Dovecot writes it: the raw display name (or, when
    /// there is none, the trailing comment), and MISSING_MAILBOX / MISSING_DOMAIN for parts that are absent.
    public var envelopeAddress: EnvelopeAddress {
        var name = rawDisplayName
        if name == nil || name?.isEmpty == true { name = comment }
        if name?.isEmpty == true { name = nil }
        return EnvelopeAddress(name: name, adl: route, mailbox: localPart.isEmpty ? "MISSING_MAILBOX" : localPart,
                               host: (domain?.isEmpty ?? true) ? "MISSING_DOMAIN" : domain)
    }

    static func isDotAtom(_ s: String) -> Bool {
        var previousDot = true
        for b in s.utf8 {
            if b == ASCII.dot {
                if previousDot { return false }
                previousDot = true
            } else if ASCII.isAtext(b) {
                previousDot = false
            } else {
                return false
            }
        }
        return !previousDot
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.unicodeScalars.append(c)
        }
        return out + "\""
    }
}

/// A named group of mailboxes (RFC 5322 §3.4): `Team: a@example.com, b@example.com;`.
public struct MailGroup: Sendable, Hashable, Codable {
    /// The group name with RFC 2047 words decoded.
    public var name: String
    /// The group name as written (quotes removed, encoded words kept).
    public var rawName: String
    public var members: [MailAddress]

    public init(name: String, rawName: String? = nil, members: [MailAddress]) {
        self.name = name
        self.rawName = rawName ?? name
        self.members = members
    }
}

/// One element of an address list.
public enum AddressListElement: Sendable, Hashable, Codable {
    case mailbox(MailAddress)
    case group(MailGroup)
}

/// A parsed address field (From, To, Cc, Reply-To, …). Parsing never fails: what cannot be read is
/// skipped up to the next comma and noted in `defects`.
public struct AddressList: Sendable, Hashable {
    public var elements: [AddressListElement]
    public var defects: [String]

    public init(elements: [AddressListElement], defects: [String] = []) {
        self.elements = elements
        self.defects = defects
    }

    /// Parses an address field's value (unfolded or not).
    public init(parsing value: String) {
        self.init(parsingBytes: Array(value.utf8))
    }

    public init<C: Collection>(parsingBytes value: C) where C.Element == UInt8 {
        var parser = AddressParser(tokens: AddressTokenizer.tokenize(Array(value)))
        let elements = parser.parseList()
        self.init(elements: elements, defects: parser.log.all)
    }

    /// Every mailbox, group members included, in order.
    public var mailboxes: [MailAddress] {
        elements.flatMap { e -> [MailAddress] in
            switch e {
            case .mailbox(let m): return [m]
            case .group(let g): return g.members
            }
        }
    }

    /// The list in ENVELOPE form (RFC 3501 §7.4.2): a group is a start marker (mailbox = group name,
    /// host = nil), its members, and an end marker (all nil).
    public var envelopeAddresses: [EnvelopeAddress] {
        var out: [EnvelopeAddress] = []
        for e in elements {
            switch e {
            case .mailbox(let m):
                out.append(m.envelopeAddress)
            case .group(let g):
                out.append(EnvelopeAddress(name: nil, adl: nil, mailbox: g.rawName, host: nil))
                out += g.members.map(\.envelopeAddress)
                out.append(EnvelopeAddress())
            }
        }
        return out
    }
}

// MARK: - Tokens

/// A lexical token of a structured field (RFC 5322 §3.2).
struct AddressToken {
    enum Kind: Equatable {
        case atom           // atext run; dots included, so dot-atoms and obs-phrase "Q." stay one token
        case quoted         // quoted-string, content unescaped
        case domainLiteral  // "[...]" including the brackets
        case comment        // content without the outer parentheses
        case special        // one of < > : ; @ , and stray ] ) \
    }
    var kind: Kind
    var bytes: [UInt8]
    /// Whether whitespace or a comment separates this token from the previous one.
    var spaceBefore: Bool

    func isSpecial(_ c: UInt8) -> Bool { kind == .special && bytes.first == c }
}

enum AddressTokenizer {
    static func tokenize(_ b: [UInt8]) -> [AddressToken] {
        var out: [AddressToken] = []
        var i = 0
        let n = b.count
        var space = false
        while i < n {
            let c = b[i]
            if ASCII.isWhitespace(c) {
                space = true
                i += 1
                continue
            }
            switch c {
            case ASCII.openParen:
                let text = MIMEValueParser.skipComment(b, &i)
                out.append(AddressToken(kind: .comment, bytes: Array(text), spaceBefore: space))
                space = true
                continue
            case ASCII.dquote:
                let text = MIMEValueParser.quotedString(b, &i)
                out.append(AddressToken(kind: .quoted, bytes: text, spaceBefore: space))
            case ASCII.openBracket:
                let s = i
                i += 1
                while i < n, b[i] != ASCII.closeBracket {
                    i += b[i] == ASCII.backslash ? 2 : 1
                }
                i = min(i + 1, n)
                out.append(AddressToken(kind: .domainLiteral, bytes: b[s..<i].filter { $0 != ASCII.cr && $0 != ASCII.lf },
                                        spaceBefore: space))
            case ASCII.lessThan, ASCII.greaterThan, ASCII.colon, ASCII.semicolon, ASCII.at, ASCII.comma,
                 ASCII.closeBracket, ASCII.closeParen, ASCII.backslash:
                out.append(AddressToken(kind: .special, bytes: [c], spaceBefore: space))
                i += 1
            default:
                // An encoded word is one atom even when its text holds specials (RFC 2047 §5 forbids that in
                // phrases, but mailers write "=?utf-8?Q?Doe,_John?=").
                if c == ASCII.equals, i + 1 < n, b[i + 1] == ASCII.question, let w = EncodedWords.parseWord(b, at: i),
                   !b[i..<w.end].contains(where: ASCII.isWhitespace) {
                    out.append(AddressToken(kind: .atom, bytes: Array(b[i..<w.end]), spaceBefore: space))
                    i = w.end
                    break
                }
                let s = i
                while i < n, ASCII.isAtext(b[i]) || b[i] == ASCII.dot { i += 1 }
                if i == s { i += 1 }  // a control character: take it alone so we always move on
                out.append(AddressToken(kind: .atom, bytes: Array(b[s..<i]), spaceBefore: space))
            }
            space = false
        }
        return out
    }
}

// MARK: - Parser

struct AddressParser {
    let tokens: [AddressToken]
    var i = 0
    var log = DefectLog()
    var count = 0
    private var lastComment: [UInt8]? = nil

    init(tokens: [AddressToken]) { self.tokens = tokens }

    private var atEnd: Bool { i >= tokens.count }

    /// Skips comment tokens, remembering the last one.
    private mutating func skipComments() {
        while i < tokens.count, tokens[i].kind == .comment {
            lastComment = tokens[i].bytes
            i += 1
        }
    }

    private mutating func peekSpecial(_ c: UInt8) -> Bool {
        skipComments()
        return i < tokens.count && tokens[i].isSpecial(c)
    }

    /// address-list = (address *("," address)) / obs-addr-list
    mutating func parseList() -> [AddressListElement] {
        var out: [AddressListElement] = []
        while true {
            skipComments()
            guard !atEnd else { break }
            if tokens[i].isSpecial(ASCII.comma) {
                i += 1
                continue
            }
            guard count < MIMELimits.maxAddresses else {
                log.add("more than \(MIMELimits.maxAddresses) addresses; the rest are ignored")
                break
            }
            let before = i
            if let e = parseAddress(inGroup: false) {
                out.append(e)
                count += 1
            }
            if i == before { i += 1 }  // never loop on the same token
            skipComments()
            if !atEnd && !tokens[i].isSpecial(ASCII.comma) {
                log.add("unexpected \"\(String(decoding: tokens[i].bytes, as: UTF8.self))\" in address list")
                skipToComma(stopAtSemicolon: false)
            }
        }
        return out
    }

    private mutating func skipToComma(stopAtSemicolon: Bool) {
        while i < tokens.count, !tokens[i].isSpecial(ASCII.comma), !(stopAtSemicolon && tokens[i].isSpecial(ASCII.semicolon)) {
            i += 1
        }
    }

    /// Reads words (atoms, quoted strings) up to the next special; comments in between are skipped.
    private mutating func words() -> [AddressToken] {
        var out: [AddressToken] = []
        while i < tokens.count {
            let t = tokens[i]
            if t.kind == .comment {
                lastComment = t.bytes
                i += 1
            } else if t.kind == .atom || t.kind == .quoted {
                out.append(t)
                i += 1
            } else {
                break
            }
        }
        return out
    }

    /// address = mailbox / group
    private mutating func parseAddress(inGroup: Bool) -> AddressListElement? {
        lastComment = nil
        let phrase = words()
        skipComments()
        let next = atEnd ? nil : tokens[i]
        if let next, next.isSpecial(ASCII.colon), !inGroup {
            // group = display-name ":" [group-list] ";" [CFWS]
            i += 1
            let raw = AddressParser.joinPhrase(phrase)
            var members: [MailAddress] = []
            while true {
                skipComments()
                if atEnd {
                    log.add("group \"\(raw)\" has no closing \";\"")
                    break
                }
                if tokens[i].isSpecial(ASCII.semicolon) {
                    i += 1
                    break
                }
                if tokens[i].isSpecial(ASCII.comma) {
                    i += 1
                    continue
                }
                guard count + members.count < MIMELimits.maxAddresses else {
                    skipToComma(stopAtSemicolon: true)
                    continue
                }
                let before = i
                if case .mailbox(let m)? = parseAddress(inGroup: true) { members.append(m) }
                if i == before { i += 1 }
                skipComments()
                if !atEnd, !tokens[i].isSpecial(ASCII.comma), !tokens[i].isSpecial(ASCII.semicolon) {
                    log.add("unexpected \"\(String(decoding: tokens[i].bytes, as: UTF8.self))\" in group \"\(raw)\"")
                    skipToComma(stopAtSemicolon: true)
                }
            }
            count += members.count
            return .group(MailGroup(name: EncodedWords.decode(raw), rawName: raw, members: members))
        }
        if let next, next.isSpecial(ASCII.lessThan) {
            // name-addr = [display-name] angle-addr
            i += 1
            var m = parseAngleAddress()
            if !phrase.isEmpty {
                let raw = AddressParser.joinPhrase(phrase)
                m.rawDisplayName = raw
                m.displayName = EncodedWords.decode(raw)
            }
            return .mailbox(m)
        }
        if let next, next.isSpecial(ASCII.at), !phrase.isEmpty {
            // addr-spec = local-part "@" domain
            i += 1
            let local = AddressParser.joinLocalPart(phrase)
            let domain = parseDomain()
            skipComments()
            return .mailbox(MailAddress(localPart: local, domain: domain, comment: commentString()))
        }
        if phrase.isEmpty {
            if let next, next.isSpecial(ASCII.at) {
                // "@domain" with no local part.
                i += 1
                let domain = parseDomain()
                log.add("address without a local part")
                return .mailbox(MailAddress(localPart: "", domain: domain, comment: commentString()))
            }
            return nil
        }
        // One atom alone (`To: root`): the UW-IMAP convention, which Dovecot keeps, reads it as a local
        // mailbox name without a domain, so clients find it where they look for the address.
        if phrase.count == 1, phrase[0].kind == .atom {
            log.add("address without \"@\": \"\(AddressParser.joinLocalPart(phrase))\"")
            return .mailbox(MailAddress(localPart: AddressParser.joinLocalPart(phrase), domain: nil, comment: commentString()))
        }
        // Several words ("John Doe"): no address at all. Dovecot keeps the words as the name and fills in
        // MISSING_MAILBOX / MISSING_DOMAIN; we do the same.
        log.add("address without \"@\": \"\(AddressParser.joinPhrase(phrase))\"")
        let raw = AddressParser.joinPhrase(phrase)
        return .mailbox(MailAddress(displayName: EncodedWords.decode(raw), rawDisplayName: raw, localPart: "", domain: nil,
                                    comment: commentString()))
    }

    /// angle-addr = "<" [obs-route] addr-spec ">", the "<" already consumed.
    private mutating func parseAngleAddress() -> MailAddress {
        var route: String? = nil
        skipComments()
        if peekSpecial(ASCII.at) {
            // obs-route = obs-domain-list ":" ; obs-domain-list = *(CFWS / ",") "@" domain *("," [CFWS] ["@" domain])
            var domains: [String] = []
            while i < tokens.count {
                skipComments()
                if peekSpecial(ASCII.at) {
                    i += 1
                    domains.append("@" + (parseDomain() ?? ""))
                } else if peekSpecial(ASCII.comma) {
                    i += 1
                } else {
                    break
                }
            }
            if peekSpecial(ASCII.colon) {
                i += 1
                route = domains.joined(separator: ",")
            } else {
                log.add("source route without \":\"")
            }
        }
        let local = words()
        var domain: String? = nil
        if peekSpecial(ASCII.at) {
            i += 1
            domain = parseDomain()
        }
        skipComments()
        if peekSpecial(ASCII.greaterThan) {
            i += 1
        } else {
            log.add("angle address without \">\"")
            // Resynchronise on ">" if it comes before the next ",".
            var j = i
            while j < tokens.count, !tokens[j].isSpecial(ASCII.comma), !tokens[j].isSpecial(ASCII.greaterThan) { j += 1 }
            if j < tokens.count, tokens[j].isSpecial(ASCII.greaterThan) { i = j + 1 }
        }
        let comment = lastCommentAfterAddress()
        if local.isEmpty && domain == nil && route == nil {
            log.add("empty angle address \"<>\"")
        }
        return MailAddress(route: route, localPart: AddressParser.joinLocalPart(local), domain: domain, comment: comment)
    }

    /// Comments right after the address (`<a@b> (John)`) belong to it.
    private mutating func lastCommentAfterAddress() -> String? {
        skipComments()
        return commentString()
    }

    private func commentString() -> String? {
        guard let c = lastComment else { return nil }
        let s = Charset.decodeUTF8OrWindows1252(c).trimmingWhitespace()
        return s.isEmpty ? nil : s
    }

    /// domain = dot-atom / domain-literal / obs-domain (atoms with CFWS around the dots).
    private mutating func parseDomain() -> String? {
        var out: [UInt8] = []
        while i < tokens.count {
            let t = tokens[i]
            if t.kind == .comment {
                lastComment = t.bytes
                i += 1
            } else if t.kind == .atom || t.kind == .domainLiteral {
                out += t.bytes
                i += 1
            } else {
                break
            }
        }
        return out.isEmpty ? nil : Charset.decodeUTF8OrWindows1252(out)
    }

    /// The display name as IMAP servers send it: words joined, one space where the message had whitespace.
    static func joinPhrase(_ words: [AddressToken]) -> String {
        var out: [UInt8] = []
        for (n, w) in words.enumerated() {
            if n > 0 && w.spaceBefore { out.append(ASCII.space) }
            out += w.bytes
        }
        return Charset.decodeUTF8OrWindows1252(out)
    }

    /// local-part = dot-atom / quoted-string / obs-local-part: the words glued together, quotes removed.
    static func joinLocalPart(_ words: [AddressToken]) -> String {
        var out: [UInt8] = []
        for w in words { out += w.bytes }
        return Charset.decodeUTF8OrWindows1252(out)
    }
}
