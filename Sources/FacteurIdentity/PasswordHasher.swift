// Password hashing with scrypt (RFC 7914), stored as a PHC string
// (https://github.com/P-H-C/phc-string-format):
//
//     $scrypt$ln=14,r=8,p=2$<salt, base64 without padding>$<hash, base64 without padding>
//
// `ln` is log2 of scrypt's cost N, `r` the block size, `p` the parallelism; the same
// layout passlib and others write. Hashing and verifying are plain synchronous CPU work
// (tens of milliseconds, tens of MiB): callers run them off the event loop, for example
// through `BlockingWorkPool`.

import Crypto
import _CryptoExtras

/// scrypt's cost parameters (RFC 7914 §2).
public struct ScryptParameters: Sendable, Hashable, CustomStringConvertible {
    /// log2 of N, the CPU/memory cost.
    public var logN: Int
    /// Block size r.
    public var r: Int
    /// Parallelism p.
    public var p: Int

    public init(logN: Int, r: Int, p: Int) { self.logN = logN; self.r = r; self.p = p }

    /// ln=14, r=8, p=2: N=16384, 16 MiB of memory, and twice the work of p=1.
    /// Measured with a release build of swift-crypto 4.5.2's BoringSSL scrypt on the
    /// development machine (2 shared x86_64 cores), CPU time per hash, median of 9:
    ///   ln=14 p=1: 28–37 ms · ln=14 p=2: 55–69 ms · ln=14 p=3: 84–89 ms · ln=15 p=1: 81–86 ms
    /// (ln=15 costs more than twice ln=14: its 32 MiB no longer fit the caches). We keep
    /// 16 MiB and take the second block for the work, inside the 30–80 ms we aim for.
    /// Debug builds compile BoringSSL without optimisation and are about 4 times slower.
    /// Raise the parameters when hardware allows: `needsRehash` then upgrades each account
    /// at its next successful password login.
    public static let `default` = ScryptParameters(logN: 14, r: 8, p: 2)

    /// Hard limits on parameters read from a stored hash, so that a corrupt or hostile
    /// value cannot make one verification take gigabytes or minutes.
    public static let maximumLogN = 22
    public static let maximumR = 32
    public static let maximumP = 16
    /// 256 MiB: the largest scrypt working set (128·r·N bytes) we agree to allocate
    /// (16 times the default; OWASP's heaviest suggestion is 128 MiB).
    public static let maximumMemoryBytes = 1 << 28
    /// Upper bound on N·r·p, the amount of work: 16 times the default's 2^18.
    public static let maximumWork = 1 << 22

    /// Whether these parameters are within the hard limits above.
    public var isWithinLimits: Bool {
        guard (1...Self.maximumLogN).contains(logN), (1...Self.maximumR).contains(r), (1...Self.maximumP).contains(p) else {
            return false
        }
        return memoryBytes <= Self.maximumMemoryBytes && work <= Self.maximumWork
    }

    /// Work (N·r·p, proportional to time) and memory (128·r·N bytes), the two costs an
    /// attacker pays per guess. Only meaningful within limits (no overflow there).
    public var work: Int { (1 << logN) * r * p }
    public var memoryBytes: Int { 128 * r * (1 << logN) }

    /// True when `self` costs less than `other` in time or in memory.
    public func isWeaker(than other: ScryptParameters) -> Bool {
        work < other.work || memoryBytes < other.memoryBytes
    }

    public var description: String { "ln=\(logN),r=\(r),p=\(p)" }
}

/// A parsed `$scrypt$…` PHC string.
public struct PasswordHash: Sendable, Equatable {
    public static let algorithm = "scrypt"
    /// Salts and hashes outside these sizes are refused when parsing.
    public static let saltLengthRange = 8...64
    public static let hashLengthRange = 16...64
    /// Longest PHC string we parse (ours are about 90 characters).
    public static let maximumEncodedLength = 512

    public var parameters: ScryptParameters
    public var salt: [UInt8]
    public var hash: [UInt8]

    public init(parameters: ScryptParameters, salt: [UInt8], hash: [UInt8]) {
        self.parameters = parameters; self.salt = salt; self.hash = hash
    }

    /// Parses `$scrypt$ln=<int>,r=<int>,p=<int>$<salt>$<hash>`.
    public init(phc: String) throws(PasswordHashError) {
        guard phc.utf8.count <= Self.maximumEncodedLength else { throw .malformed("too long") }
        let fields = phc.split(separator: "$", omittingEmptySubsequences: false)
        // "" before the first "$", then id, params, salt, hash.
        guard fields.count >= 2, fields[0].isEmpty else { throw .malformed("does not start with $") }
        guard fields[1] == Self.algorithm else { throw .unsupportedAlgorithm(String(fields[1])) }
        guard fields.count == 5 else { throw .malformed("expected $scrypt$<params>$<salt>$<hash>") }

        var logN: Int?, r: Int?, p: Int?
        for pair in fields[2].split(separator: ",", omittingEmptySubsequences: false) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let value = Self.parseDecimal(parts[1]) else {
                throw .malformed("bad parameter \(pair.prefix(20))")
            }
            switch parts[0] {
            case "ln" where logN == nil: logN = value
            case "r" where r == nil: r = value
            case "p" where p == nil: p = value
            default: throw .malformed("unknown or repeated parameter \(parts[0].prefix(20))")
            }
        }
        guard let logN, let r, let p else { throw .malformed("missing ln, r or p") }
        let parameters = ScryptParameters(logN: logN, r: r, p: p)
        guard parameters.isWithinLimits else { throw .parametersOutOfRange(parameters.description) }

        guard let salt = Bytes.decodeBase64Unpadded(fields[3]), Self.saltLengthRange.contains(salt.count) else {
            throw .malformed("bad salt")
        }
        guard let hash = Bytes.decodeBase64Unpadded(fields[4]), Self.hashLengthRange.contains(hash.count) else {
            throw .malformed("bad hash")
        }
        self.init(parameters: parameters, salt: salt, hash: hash)
    }

    public var phcString: String {
        "$\(Self.algorithm)$\(parameters)$\(Bytes.base64Unpadded(salt))$\(Bytes.base64Unpadded(hash))"
    }

    /// PHC decimal: digits only, no sign, no leading zero, small enough not to overflow.
    private static func parseDecimal(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.count <= 9, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              text == "0" || !text.hasPrefix("0") else { return nil }
        return Int(text)
    }
}

public enum PasswordHashError: Error, Sendable, Equatable {
    case emptyPassword
    case unsupportedAlgorithm(String)
    case malformed(String)
    case parametersOutOfRange(String)
    /// The KDF itself failed (BoringSSL refused the parameters or ran out of memory).
    case derivationFailed
}

/// Hashes and verifies passwords with scrypt. Works on the password's bytes: callers
/// apply SASLprep first (`Credentials` does).
public struct PasswordHasher: Sendable {
    public var parameters: ScryptParameters
    public var saltLength: Int
    public var hashLength: Int

    public init(parameters: ScryptParameters = .default, saltLength: Int = 16, hashLength: Int = 32) {
        self.parameters = parameters
        self.saltLength = min(max(saltLength, PasswordHash.saltLengthRange.lowerBound), PasswordHash.saltLengthRange.upperBound)
        self.hashLength = min(max(hashLength, PasswordHash.hashLengthRange.lowerBound), PasswordHash.hashLengthRange.upperBound)
    }

    /// A new PHC string for `password`, with a fresh random salt.
    public func hash(_ password: [UInt8]) throws(PasswordHashError) -> String {
        guard !password.isEmpty else { throw .emptyPassword }
        guard parameters.isWithinLimits else { throw .parametersOutOfRange(parameters.description) }
        let salt = Bytes.random(count: saltLength)
        let derived = try Self.derive(password, salt: salt, parameters: parameters, count: hashLength)
        return PasswordHash(parameters: parameters, salt: salt, hash: derived).phcString
    }

    /// Whether `password` matches the stored PHC string. A malformed string or an empty
    /// password never matches, and still costs one scrypt run, so failures all take
    /// about the same time.
    public func verify(_ password: [UInt8], against phc: String) -> Bool {
        guard !password.isEmpty, let stored = try? PasswordHash(phc: phc) else {
            spendEquivalentTime()
            return false
        }
        guard let derived = try? Self.derive(password, salt: stored.salt, parameters: stored.parameters,
                                             count: stored.hash.count) else { return false }
        return Bytes.constantTimeEquals(derived, stored.hash)
    }

    /// True when the stored hash should be replaced at the next successful login: it
    /// is unreadable, uses another algorithm, or is weaker than our current settings.
    public func needsRehash(_ phc: String) -> Bool {
        guard let stored = try? PasswordHash(phc: phc) else { return true }
        return stored.parameters.isWeaker(than: parameters)
            || stored.salt.count < saltLength || stored.hash.count < hashLength
    }

    /// Runs scrypt once with the current parameters on a throwaway input: what an
    /// unknown user's login costs, so that timing does not reveal which accounts exist.
    public func spendEquivalentTime() {
        _ = try? Self.derive(Array("facteur-dummy-password".utf8), salt: Array(repeating: 0x5A, count: saltLength),
                             parameters: parameters, count: hashLength)
    }

    static func derive(_ password: [UInt8], salt: [UInt8], parameters: ScryptParameters,
                       count: Int) throws(PasswordHashError) -> [UInt8] {
        // BoringSSL's wrapper force-unwraps the buffers' base addresses: never pass empty ones.
        guard !password.isEmpty, !salt.isEmpty, count > 0 else { throw .emptyPassword }
        guard parameters.isWithinLimits else { throw .parametersOutOfRange(parameters.description) }
        do {
            let key = try KDF.Scrypt.deriveKey(from: password, salt: salt, outputByteCount: count,
                                               rounds: 1 << parameters.logN, blockSize: parameters.r,
                                               parallelism: parameters.p)
            return key.withUnsafeBytes { Array($0) }
        } catch {
            throw .derivationFailed
        }
    }
}
