// Blob storage for SQLiteMailStore: content addressing (SHA-256, FIPS 180-4), the CRLF check
// (RFC 5322 §2.1: lines end in CRLF), and the durable file half of the layout.

import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a message's bytes live.
///
/// A message is stored once, under the SHA-256 of its bytes as received (without any
/// per-recipient header prefix), however many recipients and deliveries reference it:
///
/// - **Up to `StoreLimits.inlineBlobThreshold` (256 KiB)** the bytes are a row of the `blob`
///   table inside `facteur.sqlite`. They become durable with the same WAL commit as the message
///   rows that reference them, so a group commit of 200 deliveries costs one fsync of the WAL,
///   not 200 file fsyncs plus 200 directory fsyncs. Almost all mail is this size.
/// - **Larger** messages are files, `blobs/ab/cd/<sha256>` (`ab`, `cd`: the first two pairs of
///   hex digits, so no directory grows past 65,536 entries per level). A file is written to
///   `blobs/tmp/`, fsync'd, renamed into place, and its directory fsync'd *before* the
///   transaction that references it commits; a crash in between leaves an orphan file that
///   garbage collection removes, never a row pointing at missing bytes. The `blob` row of a
///   file has `data` NULL.
///
/// Garbage collection (`SQLiteMailStore.collectGarbage()`) removes blobs no message references
/// any more, except those a delivery in flight is about to reference, and orphan files younger
/// than `StoreLimits.orphanFileGracePeriod`.
public enum BlobLayout {
    public static let databaseFileName = "facteur.sqlite"
    public static let blobDirectoryName = "blobs"
    static let tempDirectoryName = "tmp"

    /// Lowercase hex SHA-256 of `bytes`.
    static func blobID<Bytes: DataProtocol>(of bytes: Bytes) -> String {
        hex(SHA256.hash(data: bytes))
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func isBlobID(_ name: String) -> Bool {
        name.utf8.count == 64 && name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

/// The store holds CRLF only. The SMTP layer normalises line endings; the store re-checks with
/// two `memchr` passes (cheap next to hashing) and refuses a bare LF or a bare CR with
/// `StoreError.invalid`, so a bug upstream can never put a message on disk that IMAP would
/// serve with inconsistent sizes and offsets.
enum LineEndings {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A

    /// The offset of the first bare CR or LF, if any.
    static func firstBareLineEnding(in buffer: UnsafeRawBufferPointer) -> Int? {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return nil }
        let count = buffer.count
        var bad: Int?
        // Every LF must follow a CR.
        var offset = 0
        while offset < count, let hit = memchr(base + offset, Int32(lf), count - offset) {
            let index = base.distance(to: UnsafeRawPointer(hit))
            if index == 0 || buffer[index - 1] != cr { bad = index; break }
            offset = index + 1
        }
        // Every CR must precede an LF.
        offset = 0
        while offset < count, let hit = memchr(base + offset, Int32(cr), count - offset) {
            let index = base.distance(to: UnsafeRawPointer(hit))
            if index + 1 >= count || buffer[index + 1] != lf {
                if bad.map({ index < $0 }) ?? true { bad = index }
                break
            }
            offset = index + 2
        }
        return bad
    }

    static func check(_ bytes: [UInt8], what: String) throws {
        if let offset = bytes.withUnsafeBytes({ firstBareLineEnding(in: $0) }) {
            throw StoreError.invalid("\(what): bare CR or LF at offset \(offset); the store holds CRLF line endings only")
        }
    }

    static func check(_ data: Data, what: String) throws {
        if let offset = data.withUnsafeBytes({ firstBareLineEnding(in: $0) }) {
            throw StoreError.invalid("\(what): bare CR or LF at offset \(offset); the store holds CRLF line endings only")
        }
    }
}

/// The `blobs/` directory: durable writes, reads, removal, and the orphan scan.
struct BlobFiles: Sendable {
    let root: String
    let tempDirectory: String

    init(root: String) {
        self.root = root
        self.tempDirectory = root + "/" + BlobLayout.tempDirectoryName
    }

    func createDirectories() throws {
        for dir in [root, tempDirectory] {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            } catch {
                throw StoreError.writeFailed("cannot create \(dir): \(error)")
            }
        }
    }

    func path(for id: String) -> String {
        let utf8 = Array(id.utf8)
        let first = String(decoding: utf8[0 ..< 2], as: UTF8.self)
        let second = String(decoding: utf8[2 ..< 4], as: UTF8.self)
        return "\(root)/\(first)/\(second)/\(id)"
    }

    func exists(_ id: String) -> Bool {
        var info = stat()
        return stat(path(for: id), &info) == 0
    }

    /// Writes `bytes` as blob `id`: temp file, fsync, rename, directory fsync. False when the
    /// blob file was already there.
    @discardableResult
    func writeDurably(_ bytes: UnsafeRawBufferPointer, id: String) throws -> Bool {
        if try alreadyDurable(id) { return false }
        let temp = tempPath(for: id)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw Self.failure("create \(temp)") }
        var placed = false
        defer { if !placed { unlink(temp) } }
        do {
            defer { close(fd) }
            var offset = 0
            while offset < bytes.count {
                let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Self.failure("write \(temp)")
                }
                offset += n
            }
            guard fsync(fd) == 0 else { throw Self.failure("fsync \(temp)") }
        }
        guard try place(temp, id: id) else { throw Self.failure("rename \(temp)") }
        placed = true
        return true
    }

    /// Takes over a spool file that holds blob `id`: fsync it, rename it into place (copy when
    /// the spool is on another file system), fsync the directory. The spool path is gone after.
    /// False when the blob file was already there.
    @discardableResult
    func adoptDurably(spool: String, id: String) throws -> Bool {
        if try alreadyDurable(id) {
            unlink(spool)
            return false
        }
        try Self.fsyncFile(spool)
        if try place(spool, id: id) { return true }
        // Another file system: copy into blobs/tmp, then the same steps.
        let temp = tempPath(for: id)
        var placed = false
        defer { if !placed { unlink(temp) } }
        do {
            try FileManager.default.copyItem(atPath: spool, toPath: temp)
        } catch {
            throw StoreError.writeFailed("copy \(spool) to \(temp): \(error)")
        }
        try Self.fsyncFile(temp)
        guard try place(temp, id: id) else { throw Self.failure("rename \(temp)") }
        placed = true
        unlink(spool)
        return true
    }

    /// A blob file is only ever created complete (by rename after fsync). When it is already
    /// there, another delivery of the same bytes may have renamed it a moment ago without having
    /// fsync'd the directory yet: do it here too before relying on it.
    private func alreadyDurable(_ id: String) throws -> Bool {
        guard exists(id) else { return false }
        try Self.fsyncDirectory((path(for: id) as NSString).deletingLastPathComponent)
        return true
    }

    private func tempPath(for id: String) -> String {
        "\(tempDirectory)/\(id).\(UInt64.random(in: 0 ... .max))"
    }

    /// Renames `source` to the blob's final path and makes the new directory entry durable.
    /// False when `source` is on another file system (EXDEV).
    private func place(_ source: String, id: String) throws -> Bool {
        let final = path(for: id)
        let leaf = (final as NSString).deletingLastPathComponent
        try ensureDirectory(leaf)
        if rename(source, final) != 0 {
            if errno == EXDEV { return false }
            throw Self.failure("rename \(source)")
        }
        try Self.fsyncDirectory(leaf)
        return true
    }

    static func fsyncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("fsync \(path)") }
    }

    /// Creates `blobs/ab/cd` as needed; a new directory's own entry is fsync'd in its parent.
    private func ensureDirectory(_ leaf: String) throws {
        let middle = (leaf as NSString).deletingLastPathComponent
        for (dir, parent) in [(middle, root), (leaf, middle)] {
            if mkdir(dir, 0o750) == 0 {
                try Self.fsyncDirectory(parent)
            } else if errno != EEXIST {
                throw Self.failure("mkdir \(dir)")
            }
        }
    }

    static func fsyncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("fsync \(path)") }
    }

    func read(_ id: String, maxLength: Int? = nil) throws -> [UInt8] {
        try Self.read(path: path(for: id), maxLength: maxLength)
    }

    /// The file's bytes, or its first `maxLength` bytes.
    static func read(path: String, maxLength: Int? = nil) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw StoreError.notFound("blob file \(path)") }
            throw StoreError.invalid("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StoreError.invalid("cannot stat \(path)") }
        let size = min(Int(info.st_size), maxLength ?? Int.max)
        var bytes = [UInt8](repeating: 0, count: size)
        var offset = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while offset < size {
                let n = systemRead(fd, buffer.baseAddress! + offset, size - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.invalid("cannot read \(path): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                offset += n
            }
        }
        if offset < size { bytes.removeLast(size - offset) }
        return bytes
    }

    func remove(_ id: String) {
        unlink(path(for: id))
    }

    /// Every blob file and temp file with its modification time, for the orphan scan.
    func listFiles() -> [(path: String, id: String?, modified: Date)] {
        var found: [(String, String?, Date)] = []
        let fm = FileManager.default
        func modified(_ path: String) -> Date? {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            #if canImport(Darwin)
            return Date(timeIntervalSince1970: TimeInterval(info.st_mtimespec.tv_sec))
            #else
            return Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec))
            #endif
        }
        for first in (try? fm.contentsOfDirectory(atPath: root)) ?? [] where first.utf8.count == 2 {
            let firstPath = root + "/" + first
            for second in (try? fm.contentsOfDirectory(atPath: firstPath)) ?? [] where second.utf8.count == 2 {
                let secondPath = firstPath + "/" + second
                for name in (try? fm.contentsOfDirectory(atPath: secondPath)) ?? [] {
                    let path = secondPath + "/" + name
                    if let date = modified(path) { found.append((path, BlobLayout.isBlobID(name) ? name : nil, date)) }
                }
            }
        }
        for name in (try? fm.contentsOfDirectory(atPath: tempDirectory)) ?? [] {
            let path = tempDirectory + "/" + name
            if let date = modified(path) { found.append((path, nil, date)) }
        }
        return found
    }

    static func failure(_ what: String) -> StoreError {
        .writeFailed("\(what): \(String(cString: strerror(errno)))")
    }
}

/// `read(2)`, named apart from `BlobFiles.read`.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.read(fd, buffer, count)
    #else
    return Darwin.read(fd, buffer, count)
    #endif
}
