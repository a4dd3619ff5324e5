// FacteurMailAuth: DKIM canonicalization (RFC 6376 §3.4) — header fields (simple, relaxed) and a
// streaming body hasher that canonicalizes and hashes chunks as they arrive, honouring l= (§3.4.5),
// so the SMTP layer can hash while DATA streams in without keeping the body.

import Crypto
import FacteurMIME

/// Canonicalizes a body incrementally and hashes it with SHA-256. Memory use is constant: only
/// the count of held-back empty lines and two flags are kept between chunks.
public struct DKIMBodyHasher: Sendable {
    public let canonicalization: DKIMCanonicalization
    /// l=: stop hashing after this many canonical octets.
    public let limit: Int?
    private var hasher = SHA256()
    /// Canonical octets produced so far (hashed or not, when past the limit).
    public private(set) var canonicalLength = 0
    private var hashedLength = 0
    private var pendingCR = false
    private var pendingSpace = false
    private var lineHasContent = false
    private var emptyLines = 0
    private var output: [UInt8] = []

    public init(canonicalization: DKIMCanonicalization, limit: Int? = nil) {
        self.canonicalization = canonicalization
        self.limit = limit
        output.reserveCapacity(4096)
    }

    /// Feeds body bytes (CRLF line endings, as on the wire after dot-unstuffing).
    public mutating func update<Bytes: Sequence>(_ chunk: Bytes) where Bytes.Element == UInt8 {
        // Callers in other modules get this generic unspecialized: each byte then goes through
        // witness tables, which costs far more than the hashing. Contiguous chunks (arrays,
        // slices, Data) take the non-generic loop instead.
        let done: Void? = chunk.withContiguousStorageIfAvailable { update(buffer: $0) }
        guard done == nil else { return }
        for byte in chunk { consume(byte) }
        flush()
    }

    /// The same for a buffer of bytes: the loop every contiguous chunk runs.
    public mutating func update(buffer: UnsafeBufferPointer<UInt8>) {
        for byte in buffer { consume(byte) }
        flush()
    }

    @inline(__always)
    private mutating func consume(_ byte: UInt8) {
        let relaxed = canonicalization == .relaxed
        if pendingCR {
            pendingCR = false
            if byte == 0x0A {
                endLine()
                return
            }
            content(0x0D)
        }
        switch byte {
        case 0x0D:
            pendingCR = true
        case 0x20 where relaxed, 0x09 where relaxed:
            // §3.4.4: runs of WSP become one SP; WSP at the end of a line is dropped.
            pendingSpace = true
        default:
            content(byte)
        }
        if output.count >= 4096 { flush() }
    }

    private mutating func content(_ byte: UInt8) {
        // Held-back empty lines were not trailing after all.
        while emptyLines > 0 {
            output += [0x0D, 0x0A]
            emptyLines -= 1
            if output.count >= 4096 { flush() }
        }
        if pendingSpace {
            output.append(0x20)
            pendingSpace = false
        }
        output.append(byte)
        lineHasContent = true
    }

    private mutating func endLine() {
        pendingSpace = false
        if lineHasContent {
            output += [0x0D, 0x0A]
            lineHasContent = false
        } else {
            // §3.4.3, §3.4.4: empty lines at the end of the body are ignored, so hold them back.
            emptyLines += 1
        }
    }

    private mutating func flush() {
        guard !output.isEmpty else { return }
        canonicalLength += output.count
        if let limit {
            let room = max(0, limit - hashedLength)
            if room > 0 {
                let part = output.prefix(room)
                hasher.update(data: part)
                hashedLength += part.count
            }
        } else {
            hasher.update(data: output)
            hashedLength += output.count
        }
        output.removeAll(keepingCapacity: true)
    }

    /// Ends the body and returns its hash (bh=).
    public mutating func finalize() -> [UInt8] {
        if pendingCR {
            pendingCR = false
            content(0x0D)
        }
        pendingSpace = false
        // A body that does not end with CRLF gets one (§3.4.3, §3.4.4).
        if lineHasContent {
            output += [0x0D, 0x0A]
            lineHasContent = false
        }
        // §3.4.3: an empty body is canonicalized as a single CRLF under "simple".
        if canonicalization == .simple && canonicalLength == 0 && output.isEmpty {
            output += [0x0D, 0x0A]
        }
        flush()
        return Array(hasher.finalize())
    }

    /// True when the body was shorter than l= claims (the signature cannot be valid).
    public var isShorterThanLimit: Bool {
        guard let limit else { return false }
        return hashedLength < limit
    }
}

enum DKIMHeaderCanonicalizer {
    /// One header field, canonicalized, with its final CRLF (§3.4.1, §3.4.2). `field` is the whole
    /// field's bytes (name, colon, value, line break).
    static func canonicalize(name: String, value: [UInt8], raw: ArraySlice<UInt8>, _ c: DKIMCanonicalization,
                             includeCRLF: Bool = true) -> [UInt8] {
        switch c {
        case .simple:
            var out = Array(raw)
            // Drop the field's own line break, then add exactly CRLF.
            if out.last == 0x0A { out.removeLast() }
            if out.last == 0x0D { out.removeLast() }
            if includeCRLF { out += [0x0D, 0x0A] }
            return out
        case .relaxed:
            var out = Array(name.lowercased().utf8)
            while let last = out.last, last == 0x20 || last == 0x09 { out.removeLast() }
            out.append(UInt8(ascii: ":"))
            out += relaxedValue(value)
            if includeCRLF { out += [0x0D, 0x0A] }
            return out
        }
    }

    /// §3.4.2: unfold, collapse WSP runs to one SP, trim both ends.
    static func relaxedValue(_ value: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(value.count)
        var space = false
        for byte in value {
            switch byte {
            case 0x0D, 0x0A:
                continue
            case 0x20, 0x09:
                space = true
            default:
                if space && !out.isEmpty { out.append(0x20) }
                space = false
                out.append(byte)
            }
        }
        return out
    }

    /// §5.4.2: the fields h= names, each name taking the last not-yet-used instance, bottom up.
    /// Names with no instance left contribute nothing.
    static func selectFields(_ names: [String], from header: MessageHeader) -> [HeaderField] {
        var used: [String: Int] = [:]
        var selected: [HeaderField] = []
        for name in names {
            let instances = header.fields(named: name)
            let count = used[name, default: 0]
            guard count < instances.count else { continue }
            selected.append(instances[instances.count - 1 - count])
            used[name] = count + 1
        }
        return selected
    }
}

public enum DKIMMessage {
    /// Converts bare LF (and bare CR before LF is absent) line endings to CRLF, for messages read
    /// from files; SMTP delivers CRLF already.
    public static func withCRLF(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + bytes.count / 40)
        var previous: UInt8 = 0
        for byte in bytes {
            if byte == 0x0A && previous != 0x0D { out.append(0x0D) }
            out.append(byte)
            previous = byte
        }
        return out
    }
}
