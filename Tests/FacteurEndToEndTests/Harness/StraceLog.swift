// StraceLog: reads an `strace -f -tt -yy -o FILE` trace into an ordered list of system
// calls, so a test can prove the order of events inside the server: message bytes
// written to a file, that file fsynced, and only then the 250 written to the socket
// (RFC 5321 §4.1.1.4 / §6.1: a 250 after DATA means the server has taken responsibility).
//
// Line shapes handled (pid first because of -f, then -tt time):
//   1234  11:46:37.012408 write(4</tmp/xx.bin>, "MARKER", 6) = 6
//   1234  11:46:37.012408 fsync(4</tmp/xx.bin> <unfinished ...>
//   1234  11:46:37.013000 <... fsync resumed>) = 0
// -yy annotates every fd with its path (`4</path>`, `3<TCP:[a:p->b:q]>`), which maps fds
// to files even when numbers are reused; openat's result carries the path too.

import Foundation

struct Syscall {
    var pid: Int
    var name: String
    /// Everything after `name(`, through the result.
    var text: String
    /// Line index where the call started and where it completed.
    var start: Int
    var end: Int
    var time: String

    /// The path annotation of the first argument when it is an fd (`5</x/y>` -> `/x/y`).
    var fdPath: String? { Syscall.annotation(in: text, at: text.startIndex) }

    /// The path annotation of the result (`= 5</x/y>`).
    var resultPath: String? {
        guard let eq = text.range(of: ") = ", options: .backwards) else { return nil }
        return Syscall.annotation(in: text, at: eq.upperBound)
    }

    var succeeded: Bool {
        guard let eq = text.range(of: ") = ", options: .backwards) else { return false }
        return !text[eq.upperBound...].hasPrefix("-1")
    }

    var isSocket: Bool { fdPath.map { $0.hasPrefix("TCP") || $0.hasPrefix("UNIX") || $0.hasPrefix("socket:") || $0.hasPrefix("UDP") } ?? false }
    var isFile: Bool { fdPath.map { $0.hasPrefix("/") } ?? false }

    /// The quoted string arguments, in order (unescaped only for plain characters; paths are plain).
    var stringArguments: [String] {
        var out: [String] = []
        var i = text.startIndex
        while i < text.endIndex {
            if text[i] == "\"" {
                var j = text.index(after: i)
                var s = ""
                while j < text.endIndex && text[j] != "\"" {
                    if text[j] == "\\", text.index(after: j) < text.endIndex { j = text.index(after: j) }
                    s.append(text[j])
                    j = text.index(after: j)
                }
                out.append(s)
                i = j < text.endIndex ? text.index(after: j) : j
            } else {
                i = text.index(after: i)
            }
        }
        return out
    }

    /// The dirfd annotations of *at() calls (`AT_FDCWD</cwd>` or `5</dir>`), in order.
    var directoryAnnotations: [String] {
        var out: [String] = []
        var search = text.startIndex
        while let r = text.range(of: "<", range: search..<text.endIndex) {
            if let path = Syscall.annotation(in: text, at: r.lowerBound, openingAt: true) { out.append(path) }
            search = r.upperBound
        }
        return out
    }

    /// Parses `N<path>` at `index` (or `<path>` when `openingAt`), the annotation ending at
    /// the first `>` followed by `,` `)` or the end (TCP annotations contain `->`).
    static func annotation(in text: String, at index: String.Index, openingAt: Bool = false) -> String? {
        var i = index
        if !openingAt {
            while i < text.endIndex, text[i].isNumber { i = text.index(after: i) }
            guard i > index, i < text.endIndex, text[i] == "<" else { return nil }
        } else {
            guard i < text.endIndex, text[i] == "<" else { return nil }
            // Only fd-like annotations: preceded by a digit or by AT_FDCWD.
            guard i > text.startIndex else { return nil }
            let before = text[text.index(before: i)]
            guard before.isNumber || before == "D" else { return nil }
        }
        let open = text.index(after: i)
        var j = open
        while j < text.endIndex {
            if text[j] == ">" {
                let next = text.index(after: j)
                if next == text.endIndex || text[next] == "," || text[next] == ")" || text[next] == " " {
                    return String(text[open..<j])
                }
            }
            j = text.index(after: j)
        }
        return nil
    }
}

struct StraceLog {
    var calls: [Syscall] = []

    init(contentsOf url: URL) throws {
        let text = try String(contentsOf: url, encoding: .utf8)
        var pending: [Int: (name: String, text: String, start: Int, time: String)] = [:]
        var index = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: true) {
            index += 1
            let line = Substring(rawLine)
            // pid
            guard let space = line.firstIndex(of: " "), let pid = Int(line[..<space]) else { continue }
            var rest = line[space...].drop(while: { $0 == " " })
            guard let timeEnd = rest.firstIndex(of: " ") else { continue }
            let time = String(rest[..<timeEnd])
            rest = rest[timeEnd...].dropFirst()
            if rest.hasPrefix("+++") || rest.hasPrefix("---") { continue }
            if rest.hasPrefix("<... ") {
                guard let resumed = rest.range(of: " resumed>") else { continue }
                let name = String(rest[rest.index(rest.startIndex, offsetBy: 5)..<resumed.lowerBound])
                guard let started = pending.removeValue(forKey: pid), started.name == name else { continue }
                calls.append(Syscall(pid: pid, name: name, text: started.text + rest[resumed.upperBound...],
                                     start: started.start, end: index, time: time))
                continue
            }
            guard let paren = rest.firstIndex(of: "(") else { continue }
            let name = String(rest[..<paren])
            let body = String(rest[rest.index(after: paren)...])
            if body.hasSuffix(" <unfinished ...>") {
                pending[pid] = (name, String(body.dropLast(" <unfinished ...>".count)), index, time)
            } else {
                calls.append(Syscall(pid: pid, name: name, text: body, start: index, end: index, time: time))
            }
        }
        calls.sort { $0.start < $1.start }
    }

    static let writeCalls: Set<String> = ["write", "writev", "pwrite64", "pwritev", "pwritev2"]
    static let socketWriteCalls: Set<String> = ["write", "writev", "sendmsg", "sendto", "sendmmsg"]
    static let syncCalls: Set<String> = ["fsync", "fdatasync"]
}

/// What the trace shows about one SMTP delivery.
struct DurabilityVerdict {
    var ok: Bool
    var explanation: String
}

extension StraceLog {
    /// Proves from the trace that, for the connection from 127.0.0.1:`clientPort`, the
    /// message carrying `marker` was written to a file and fsynced (and, for a new file,
    /// its directory entry fsynced) before the 250 that ended DATA went to the socket,
    /// and that the SQLite WAL was fsynced in between DATA and that 250.
    func verifyDurableBeforeReply(clientPort: Int, marker: String) -> DurabilityVerdict {
        var notes: [String] = []
        let socketWrites = calls.filter {
            StraceLog.socketWriteCalls.contains($0.name) && ($0.fdPath?.hasSuffix(":\(clientPort)]") ?? false)
        }
        guard !socketWrites.isEmpty else {
            return .init(ok: false, explanation: "no write to the socket of client port \(clientPort) in the trace (strace -yy annotations missing?)")
        }
        guard let dataGo = socketWrites.first(where: { $0.text.contains("\"354") }) else {
            return .init(ok: false, explanation: "no 354 written to client port \(clientPort)")
        }
        let afterData = socketWrites.filter { $0.start > dataGo.end }
        guard let ack = afterData.first(where: { $0.text.contains("\"250") }) else {
            return .init(ok: false, explanation: "no 250 after the 354 on client port \(clientPort)")
        }
        notes.append("354 at line \(dataGo.start) (\(dataGo.time)); 250 at line \(ack.start) (\(ack.time))")

        // Renames before the ack: old path -> new path.
        var renames: [(from: String, to: String, end: Int)] = []
        for call in calls where ["rename", "renameat", "renameat2"].contains(call.name) && call.succeeded && call.end < ack.start {
            let strings = call.stringArguments
            guard strings.count >= 2 else { continue }
            let dirs = call.directoryAnnotations
            func resolve(_ path: String, _ dir: String?) -> String {
                if path.hasPrefix("/") { return path }
                return ((dir ?? "") as NSString).appendingPathComponent(path)
            }
            let from = resolve(strings[0], call.name == "rename" ? nil : dirs.first)
            let to = resolve(strings[1], call.name == "rename" ? nil : (dirs.count > 1 ? dirs[1] : dirs.first))
            renames.append((from, to, call.end))
        }
        let syncs = calls.filter { StraceLog.syncCalls.contains($0.name) && $0.succeeded }
        let syncfs = calls.filter { $0.name == "syncfs" && $0.succeeded }

        let markerWrites = calls.filter {
            StraceLog.writeCalls.contains($0.name) && $0.isFile && $0.end < ack.start && $0.text.contains(marker)
        }
        guard !markerWrites.isEmpty else {
            return .init(ok: false, explanation: "the message bytes (marker \(marker)) were never written to a file before the 250. " + notes.joined(separator: "; "))
        }
        var byFile: [String: [Syscall]] = [:]
        for w in markerWrites { byFile[w.fdPath ?? "", default: []].append(w) }

        var satisfied = false
        for (path, writes) in byFile.sorted(by: { $0.key < $1.key }) {
            let lastWrite = writes.map(\.end).max() ?? 0
            // Follow renames after the writes: every name this file had until the ack.
            var names = [path]
            var finalPath = path
            var lastRename: Int?
            for r in renames where r.from == finalPath && r.end > (writes.map(\.start).min() ?? 0) {
                finalPath = r.to; names.append(r.to); lastRename = r.end
            }
            let fileSynced = syncs.contains { names.contains($0.fdPath ?? "") && $0.start > lastWrite && $0.end < ack.start }
                || syncfs.contains { $0.start > lastWrite && $0.end < ack.start }
            let isSQLite = finalPath.hasSuffix("-wal") || finalPath.hasSuffix("-journal")
                || calls.contains { $0.fdPath == finalPath + "-wal" }
            var line = "\(writes.count) write(s) of the message to \(path)"
            if finalPath != path { line += " (renamed to \(finalPath))" }
            line += fileSynced ? ", fsynced after the last write" : ", NOT fsynced between the last write (line \(lastWrite)) and the 250"
            if isSQLite {
                notes.append(line + " [SQLite]")
                if fileSynced { satisfied = true }
                continue
            }
            // A new file: its directory entry must be durable too (fsync of the directory
            // after the rename into it, or after the file's creation).
            let directory = (finalPath as NSString).deletingLastPathComponent
            let creation = lastRename ?? calls.first {
                ["openat", "open", "creat"].contains($0.name) && $0.resultPath.map(names.contains) == true
                    && ($0.text.contains("O_CREAT") || $0.name == "creat") && $0.end < ack.start
            }?.end
            let directorySynced = syncs.contains { $0.fdPath == directory && $0.start > (creation ?? 0) && $0.end < ack.start }
                || syncfs.contains { $0.start > (creation ?? 0) && $0.end < ack.start }
            line += directorySynced ? "; directory \(directory) fsynced after the file appeared"
                : "; directory \(directory) NOT fsynced between the file's creation/rename (line \(creation ?? -1)) and the 250"
            notes.append(line)
            if fileSynced && directorySynced { satisfied = true }
        }
        // The rows that point at the message (or hold it) are committed: a WAL fsync after the 354, before the 250.
        let walSynced = syncs.contains { ($0.fdPath?.hasSuffix("-wal") ?? false) && $0.start > dataGo.end && $0.end < ack.start }
            || syncfs.contains { $0.start > dataGo.end && $0.end < ack.start }
        notes.append(walSynced ? "SQLite WAL fsynced between the 354 and the 250" : "NO fsync of a SQLite -wal file between the 354 and the 250")
        return .init(ok: satisfied && walSynced, explanation: notes.joined(separator: "\n"))
    }
}
