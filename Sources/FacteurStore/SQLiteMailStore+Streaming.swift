// Reading a message without holding it whole: the per-recipient prefix and the blob, where a
// large blob (a file, see BlobLayout) is read in chunks by the caller. POP3 RETR (RFC 1939 §7)
// and IMAP FETCH of big bodies stream through this, so a 50 MB message never sits in memory.

import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A message's bytes, ready to stream: `prefix`, then the body.
public struct MessageContent: Sendable {
    public enum Body: Sendable {
        /// Small blobs live in the database: they come whole (at most `StoreLimits.inlineBlobThreshold`).
        case inline([UInt8])
        /// Large blobs are files, already opened (so garbage collection cannot remove them under us).
        case file(BlobFileReader)
    }

    public var prefix: [UInt8]
    public var body: Body

    public init(prefix: [UInt8], body: Body) { self.prefix = prefix; self.body = body }

    public var size: Int {
        switch body {
        case .inline(let bytes): return prefix.count + bytes.count
        case .file(let reader): return prefix.count + reader.size
        }
    }
}

/// An open blob file read front to back in chunks. Blocking reads: call `read` off the event loop.
/// Used by one reader at a time (a RETR in progress); the descriptor closes when it is released.
public final class BlobFileReader: @unchecked Sendable {
    public let size: Int
    private let fd: Int32
    private var offset = 0

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw StoreError.notFound("blob file \(path)") }
            throw StoreError.invalid("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            throw StoreError.invalid("cannot stat \(path)")
        }
        self.fd = fd
        self.size = Int(info.st_size)
    }

    deinit { close(fd) }

    public var remaining: Int { size - offset }

    /// The next at most `maxLength` bytes; empty at the end of the file.
    public func read(maxLength: Int) throws -> [UInt8] {
        let count = min(maxLength, size - offset)
        guard count > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while filled < count {
                let n = pread(fd, buffer.baseAddress! + filled, count - filled, off_t(offset + filled))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.invalid("cannot read blob: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                filled += n
            }
        }
        offset += filled
        if filled < count { bytes.removeLast(count - filled) }
        return bytes
    }
}

extension SQLiteMailStore {
    /// The bytes served for a message (prefix, then blob) without loading a file blob.
    public func messageContent(messageID: Int64) async throws -> MessageContent {
        let found: (prefix: Data, data: Data?, blobID: String)? = try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: """
                SELECT message.prefix, blob.data, blob.id FROM message JOIN blob ON blob.id = message.blobID WHERE message.id = ?
                """), arguments: [messageID]).map { (prefix: $0[0] ?? Data(), data: $0[1], blobID: $0[2]) }
        }
        guard let found else { throw StoreError.notFound("message \(messageID)") }
        if let data = found.data {
            return MessageContent(prefix: [UInt8](found.prefix), body: .inline([UInt8](data)))
        }
        return MessageContent(prefix: [UInt8](found.prefix), body: .file(try BlobFileReader(path: blobs.path(for: found.blobID))))
    }
}
