// Names the store accepts: domains and addresses (RFC 5321 §4.1.2, §4.5.3.1), mailbox names
// (RFC 9051 §5.1, hierarchy delimiter `/`), keywords (RFC 9051 §2.3.2, flag-keyword = atom).

import Foundation

enum StoreNames {
    /// Sub-addressing separator (RFC 5233): `user+tag@domain` reaches `user@domain`.
    static let subaddressSeparator: Character = "+"
    static let hierarchyDelimiter: Character = "/"
    static let inbox = "INBOX"

    // MARK: Addresses

    /// Address comparison is case-insensitive, local part included. RFC 5321 §2.4 lets the
    /// receiving host decide how it treats a local part's case; treating `Alice@` and `alice@` as
    /// two mailboxes only ever loses mail, so every address is lowercased before it is stored or
    /// looked up. Surrounding whitespace and one pair of angle brackets are dropped.
    static func normalizeAddress(_ raw: String) -> String {
        var s = Substring(raw.trimmingCharacters(in: .whitespaces))
        if s.hasPrefix("<"), s.hasSuffix(">"), s.count >= 2 { s = s.dropFirst().dropLast() }
        return s.lowercased()
    }

    /// Splits at the last `@` (a quoted local part may contain `@`).
    static func split(_ address: String) -> (local: String, domain: String)? {
        guard let at = address.lastIndex(of: "@") else { return nil }
        return (String(address[..<at]), String(address[address.index(after: at)...]))
    }

    static func normalizeDomain(_ raw: String) throws -> String {
        let name = raw.trimmingCharacters(in: .whitespaces).lowercased()
        guard !name.isEmpty, name.utf8.count <= StoreLimits.maxDomainLength else {
            throw StoreError.invalid("domain name must be 1 to \(StoreLimits.maxDomainLength) octets")
        }
        guard !name.hasPrefix("."), !name.hasSuffix("."), !name.contains("..") else {
            throw StoreError.invalid("domain \(name): empty label")
        }
        guard !name.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "@") }) else {
            throw StoreError.invalid("domain \(name): forbidden character")
        }
        return name
    }

    /// `local@domain`, lowercased and checked; returns the parts.
    static func accountAddress(_ raw: String) throws -> (address: String, local: String, domain: String) {
        let address = normalizeAddress(raw)
        guard let (local, domainPart) = split(address), !local.isEmpty else {
            throw StoreError.invalid("address \(raw): expected local@domain")
        }
        let domain = try normalizeDomain(domainPart)
        guard local.utf8.count <= StoreLimits.maxLocalPartLength else {
            throw StoreError.invalid("address \(raw): local part longer than \(StoreLimits.maxLocalPartLength) octets")
        }
        guard !local.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
            throw StoreError.invalid("address \(raw): space or control character in local part")
        }
        return ("\(local)@\(domain)", local, domain)
    }

    /// An alias source: `local@domain`, or `@domain` for the domain's catch-all.
    static func aliasSource(_ raw: String) throws -> (source: String, domain: String) {
        let source = normalizeAddress(raw)
        if source.hasPrefix("@") {
            let domain = try normalizeDomain(String(source.dropFirst()))
            return ("@" + domain, domain)
        }
        let parts = try accountAddress(source)
        return (parts.address, parts.domain)
    }

    // MARK: Mailboxes

    /// Checks a mailbox name and puts INBOX in its canonical case (RFC 9051 §5.1: `INBOX` is
    /// case-insensitive; we extend that to the first component of its children, as most
    /// servers do). Names use `/` as hierarchy delimiter and must not contain empty components,
    /// control characters, or the LIST wildcards `*` and `%`.
    static func mailboxName(_ raw: String) throws -> String {
        var name = raw
        if name.uppercased() == inbox {
            name = inbox
        } else if name.utf8.count > 6, name.prefix(6).uppercased() == inbox + "/" {
            name = inbox + "/" + name.dropFirst(6)
        }
        guard !name.isEmpty, name.utf8.count <= StoreLimits.maxMailboxNameLength else {
            throw StoreError.invalid("mailbox name must be 1 to \(StoreLimits.maxMailboxNameLength) octets")
        }
        let components = name.split(separator: hierarchyDelimiter, omittingEmptySubsequences: false)
        guard !components.contains(where: \.isEmpty) else {
            throw StoreError.invalid("mailbox name \(name): empty hierarchy level")
        }
        guard components.count <= StoreLimits.maxMailboxDepth else {
            throw StoreError.invalid("mailbox name \(name): deeper than \(StoreLimits.maxMailboxDepth) levels")
        }
        guard !name.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "%") }) else {
            throw StoreError.invalid("mailbox name \(name): control character or wildcard")
        }
        return name
    }

    /// The names of `name`'s ancestors, outermost first (`a/b/c` → `a`, `a/b`).
    static func ancestors(of name: String) -> [String] {
        let components = name.split(separator: hierarchyDelimiter)
        guard components.count > 1 else { return [] }
        return (1 ..< components.count).map { components[0 ..< $0].joined(separator: String(hierarchyDelimiter)) }
    }

    // MARK: Keywords

    /// Checks keywords (IMAP atoms, no backslash: system flags travel in `MessageFlags`) and
    /// removes duplicates, compared case-insensitively as IMAP does; the first spelling wins.
    static func keywords(_ raw: [String]) throws -> [String] {
        guard !raw.isEmpty else { return [] }
        guard raw.count <= StoreLimits.maxKeywordsPerMessage else {
            throw StoreError.invalid("more than \(StoreLimits.maxKeywordsPerMessage) keywords")
        }
        var seen = Set<String>()
        var result: [String] = []
        for keyword in raw {
            guard !keyword.isEmpty, keyword.utf8.count <= StoreLimits.maxKeywordLength,
                  keyword.utf8.allSatisfy(isAtomChar) else {
                throw StoreError.invalid("keyword \(keyword.debugDescription) is not an IMAP atom")
            }
            if seen.insert(keyword.lowercased()).inserted { result.append(keyword) }
        }
        return result
    }

    /// RFC 9051 §9 ATOM-CHAR: any CHAR except atom-specials `( ) { SP CTL % * " \ ]`.
    private static func isAtomChar(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x00 ... 0x20, 0x7F ... 0xFF: return false
        case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "{"), UInt8(ascii: "%"), UInt8(ascii: "*"),
             UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "]"):
            return false
        default: return true
        }
    }

    /// Keywords are stored space-separated (an atom never contains a space).
    static func joinKeywords(_ keywords: [String]) -> String { keywords.joined(separator: " ") }

    static func splitKeywords(_ stored: String) -> [String] {
        stored.isEmpty ? [] : stored.split(separator: " ").map(String.init)
    }
}
