// Where message data goes while it arrives: memory for ordinary messages, a file in the spool
// folder once it grows past `memoryLimit`, nothing at all past `maxSize` (only counted).
// A spool that is never finished (client gone mid-DATA) deletes its file: nothing is left behind.

import FacteurStore
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class MessageSpool {
    let maxSize: Int
    let memoryLimit: Int
    let directory: String
    private(set) var size = 0
    private(set) var exceededMaximumSize = false
    private(set) var failed = false
    private var memory: [UInt8] = []
    private var fd: Int32 = -1
    private var path: String?
    /// Sees every byte kept (sender authentication hashes the body as it streams in).
    var digest: (any MessageDigest)?

    init(maxSize: Int, memoryLimit: Int, directory: String) {
        self.maxSize = maxSize
        self.memoryLimit = memoryLimit
        self.directory = directory
        memory.reserveCapacity(Swift.min(16 * 1024, memoryLimit))
    }

    deinit { discard() }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        size += bytes.count
        if size > maxSize { exceededMaximumSize = true; dropKept(); return }
        if exceededMaximumSize || failed { return }
        digest?.consume(bytes)
        if fd < 0, memory.count + bytes.count > memoryLimit { spill() }
        if fd >= 0 {
            writeAll(bytes)
        } else {
            memory.append(contentsOf: bytes)
        }
    }

    func appendCRLF() {
        withUnsafeBytes(of: (UInt8(13), UInt8(10))) { append($0) }
    }

    /// Hands the message over to the store (which takes the file, if any). nil if it failed.
    func finish() -> MessageData? {
        guard !failed, !exceededMaximumSize else { discard(); return nil }
        if fd >= 0, let path {
            close(fd)
            fd = -1
            self.path = nil
            return .file(path: path, size: size)
        }
        defer { memory = [] }
        return .memory(memory)
    }

    /// What the digest made of the message; nil when the message was not kept whole.
    func finishDigest() -> (any Sendable)? {
        defer { digest = nil }
        guard !failed, !exceededMaximumSize else { return nil }
        return digest?.finish()
    }

    func discard() {
        digest = nil
        dropKept()
    }

    private func dropKept() {
        memory = []
        if fd >= 0 { close(fd); fd = -1 }
        if let path { unlink(path); self.path = nil }
    }

    private func spill() {
        let name = "\(directory)/spool-\(UInt64.random(in: 0...UInt64.max))"
        let descriptor = open(name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { failed = true; memory = []; return }
        fd = descriptor
        path = name
        let kept = memory
        memory = []
        kept.withUnsafeBytes { writeAll($0) }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                failed = true
                dropKept()
                return
            }
            offset += written
        }
    }
}
