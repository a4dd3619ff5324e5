// FacteurMailAuth: the DKIM keys Facteur signs with, kept in the data folder
// (`<data>/dkim/<domain>/`), one file per key plus a manifest that says when each key starts
// signing and when it stops. Rotation publishes the next key before it is used and keeps the
// old one published after it stops signing (RFC 6376 §3.6.1; M3AAWG's DKIM key rotation
// practice), so mail in flight keeps verifying.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct DKIMKeyInfo: Codable, Sendable, Hashable {
    public var selector: String
    /// "ed25519" or "rsa".
    public var algorithm: String
    public var file: String
    public var created: Date
    /// Signing starts at this time (the DNS record must be published by then).
    public var activates: Date
    /// Signing stops at this time (set when a successor is scheduled).
    public var retires: Date?

    public enum State: String, Sendable { case pending, active, retired, expired }

    /// `expired`: retired for longer than `overlap`, its DNS record can be removed.
    public func state(at now: Date, overlap: TimeInterval) -> State {
        if activates > now { return .pending }
        guard let retires, retires <= now else { return .active }
        return now.timeIntervalSince(retires) > overlap ? .expired : .retired
    }
}

public enum DKIMKeyringError: Error, CustomStringConvertible {
    case invalidDomain(String)
    case invalidSelector(String)
    case selectorExists(String)
    case unreadable(String)

    public var description: String {
        switch self {
        case .invalidDomain(let d): "not a domain name: \(d)"
        case .invalidSelector(let s): "not a valid selector: \(s)"
        case .selectorExists(let s): "selector \(s) already exists for this domain"
        case .unreadable(let why): why
        }
    }
}

/// Reads and writes the key folder. Cheap to create; `signers(for:)` reads the files each time,
/// so callers cache (see `DKIMSignerCache`).
public struct DKIMKeyring: Sendable {
    public let directory: String
    /// How long a retired key stays published.
    public var overlap: TimeInterval = 7 * 86400

    public init(directory: String) { self.directory = directory }

    func domainDirectory(_ domain: String) -> String { "\(directory)/\(domain.lowercased())" }

    public func domains() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            FileManager.default.fileExists(atPath: "\(directory)/\($0)/keys.json")
        }.sorted()
    }

    public func keys(for domain: String) throws -> [DKIMKeyInfo] {
        let path = "\(domainDirectory(domain))/keys.json"
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else { throw DKIMKeyringError.unreadable("cannot read \(path)") }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode([DKIMKeyInfo].self, from: data)
        } catch {
            throw DKIMKeyringError.unreadable("\(path): \(error)")
        }
    }

    func save(_ keys: [DKIMKeyInfo], for domain: String) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Self.writeAtomically(try encoder.encode(keys), to: "\(domainDirectory(domain))/keys.json", mode: 0o644)
    }

    public func loadKey(_ info: DKIMKeyInfo, domain: String) throws -> DKIMSigningKey {
        let path = "\(domainDirectory(domain))/\(info.file)"
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DKIMKeyringError.unreadable("cannot read \(path)")
        }
        return info.algorithm == "rsa" ? try DKIMSigningKey(rsaPEM: text) : try DKIMSigningKey(ed25519SeedBase64: text)
    }

    /// Creates a key. With no active key of that algorithm it signs at once; otherwise it is
    /// scheduled to take over after `activateAfter` (time to publish its record), and the key it
    /// replaces retires at that moment.
    @discardableResult
    public func generate(domain: String, algorithm: String, selector: String? = nil, activateAfter: TimeInterval = 3 * 86400,
                         now: Date = Date()) throws -> DKIMKeyInfo {
        let domain = domain.lowercased()
        guard DKIMSignature.isDomainName(domain, allowSingleLabel: false), !domain.contains("/") else { throw DKIMKeyringError.invalidDomain(domain) }
        guard algorithm == "rsa" || algorithm == "ed25519" else { throw DKIMKeyringError.unreadable("algorithm must be rsa or ed25519") }
        var keys = try self.keys(for: domain)
        let name = (selector ?? Self.defaultSelector(algorithm: algorithm, now: now)).lowercased()
        guard DKIMSignature.isDomainName(name), !name.contains("/"), !name.contains(".") || selector != nil else {
            throw DKIMKeyringError.invalidSelector(name)
        }
        guard !keys.contains(where: { $0.selector == name }) else { throw DKIMKeyringError.selectorExists(name) }

        let key = algorithm == "rsa" ? try DKIMSigningKey.generateRSA() : DKIMSigningKey.generateEd25519()
        let file = "\(name).\(algorithm == "rsa" ? "rsa.pem" : "ed25519")"
        try FileManager.default.createDirectory(atPath: domainDirectory(domain), withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try Self.writeAtomically(Data(Self.privateText(key).utf8), to: "\(domainDirectory(domain))/\(file)", mode: 0o600)

        let current = keys.indices.filter { keys[$0].algorithm == algorithm && keys[$0].state(at: now, overlap: overlap) != .expired
            && keys[$0].state(at: now, overlap: overlap) != .retired }
        let activates = current.isEmpty ? now : now.addingTimeInterval(activateAfter)
        for index in current where keys[index].retires == nil || keys[index].retires! > activates {
            keys[index].retires = activates
        }
        let info = DKIMKeyInfo(selector: name, algorithm: algorithm, file: file, created: now, activates: activates, retires: nil)
        keys.append(info)
        try save(keys, for: domain)
        return info
    }

    /// "f20261127e" style: dated, so a rotation never reuses a selector.
    static func defaultSelector(algorithm: String, now: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: now)
        let date = String(format: "%04d%02d%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
        return "f\(date)\(algorithm == "rsa" ? "r" : "e")"
    }

    static func privateText(_ key: DKIMSigningKey) -> String {
        switch key {
        case .rsa(let rsa): rsa.pemRepresentation + "\n"
        case .ed25519(let ed): ed.rawRepresentation.base64EncodedString() + "\n"
        }
    }

    /// The keys that sign now: the newest active key of each algorithm, ed25519 first
    /// (RFC 8463 §1 expects receivers that cannot check Ed25519 to use the RSA one).
    public func signers(for domain: String, now: Date = Date()) throws -> [DKIMSigner] {
        let keys = try self.keys(for: domain).filter { $0.state(at: now, overlap: overlap) == .active }
        var signers: [DKIMSigner] = []
        for algorithm in ["ed25519", "rsa"] {
            guard let info = keys.filter({ $0.algorithm == algorithm }).max(by: { $0.activates < $1.activates }) else { continue }
            signers.append(DKIMSigner(domain: domain, selector: info.selector, key: try loadKey(info, domain: domain)))
        }
        return signers
    }

    /// TXT records to publish: every key that is pending, active or recently retired.
    public func records(for domain: String, now: Date = Date()) throws -> [(info: DKIMKeyInfo, state: DKIMKeyInfo.State, name: String, value: String)] {
        try keys(for: domain).compactMap { info in
            let state = info.state(at: now, overlap: overlap)
            let key = try loadKey(info, domain: domain)
            return (info, state, "\(info.selector)._domainkey.\(domain.lowercased())", key.dnsRecord)
        }
    }

    /// A TXT value split into quoted character-strings of at most 255 bytes (RFC 1035 §3.3.14),
    /// as zone files and most DNS panels take them.
    public static func zoneText(_ value: String) -> String {
        var parts: [String] = []
        var rest = Substring(value)
        while !rest.isEmpty {
            parts.append("\"\(rest.prefix(255))\"")
            rest = rest.dropFirst(255)
        }
        return parts.joined(separator: " ")
    }

    static func writeAtomically(_ data: Data, to path: String, mode: Int) throws {
        let temporary = path + ".tmp-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: mode]) else {
            throw DKIMKeyringError.unreadable("cannot write \(temporary)")
        }
        // rename(2) replaces atomically: a reader sees the old file or the new one, never half.
        guard rename(temporary, path) == 0 else {
            try? FileManager.default.removeItem(atPath: temporary)
            throw DKIMKeyringError.unreadable("cannot write \(path) (errno \(errno))")
        }
    }
}

/// Signing keys per domain, read once and refreshed every `refresh` seconds so that a
/// rotation (or `facteur dkim generate` while the server runs) takes effect without a restart.
public final class DKIMSignerCache: Sendable {
    let keyring: DKIMKeyring
    let refresh: TimeInterval
    private let state = LockedState()

    private final class LockedState: @unchecked Sendable {
        let lock = NSLock()
        var entries: [String: (loaded: Date, signers: [DKIMSigner])] = [:]
    }

    public init(keyring: DKIMKeyring, refresh: TimeInterval = 60) {
        self.keyring = keyring
        self.refresh = refresh
    }

    /// The signers for `domain` or, failing that, for the nearest parent domain with keys
    /// (relaxed DMARC alignment: d=example.com aligns with From: user@mail.example.com).
    public func signers(forFromDomain domain: String, now: Date = Date()) -> [DKIMSigner] {
        var labels = domain.lowercased().split(separator: ".")
        while labels.count >= 2 {
            let candidate = labels.joined(separator: ".")
            let signers = cached(candidate, now: now)
            if !signers.isEmpty { return signers }
            labels.removeFirst()
        }
        return []
    }

    func cached(_ domain: String, now: Date) -> [DKIMSigner] {
        state.lock.lock()
        if let entry = state.entries[domain], now.timeIntervalSince(entry.loaded) < refresh {
            state.lock.unlock()
            return entry.signers
        }
        state.lock.unlock()
        let signers = (try? keyring.signers(for: domain, now: now)) ?? []
        state.lock.lock()
        if state.entries.count > 10_000 { state.entries.removeAll() }
        state.entries[domain] = (now, signers)
        state.lock.unlock()
        return signers
    }
}
