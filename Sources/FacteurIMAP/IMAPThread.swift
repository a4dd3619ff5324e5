// IMAP THREAD (RFC 5256 §3 `THREAD`): the ORDEREDSUBJECT and REFERENCES algorithms, Message ID
// parsing for References/In-Reply-To (RFC 5322 §3.6.4), and the `* THREAD` response grammar
// (RFC 5256 §4 thread-list). Pure values. Hostile mailboxes (References chains of thousands of
// ids, loops, duplicate Message-IDs) are handled without recursion: trees live in flat arrays
// and every traversal uses an explicit stack.

import FacteurMIME
import Foundation

// MARK: - Command

/// thread-alg (RFC 5256 §4).
public enum ThreadAlgorithm: String, Sendable, Hashable, CaseIterable {
    case orderedSubject = "ORDEREDSUBJECT"
    case references = "REFERENCES"
}

/// `THREAD algorithm charset search-key…` (RFC 5256 §3).
public struct ThreadCommand: Sendable, Equatable {
    public var algorithm: ThreadAlgorithm
    public var charset: String
    public var key: SearchKey
    public init(algorithm: ThreadAlgorithm, charset: String, key: SearchKey) {
        self.algorithm = algorithm; self.charset = charset; self.key = key
    }
}

extension Cursor {
    /// thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
    mutating func threadCommand() throws -> ThreadCommand {
        try space()
        let name = try word()
        guard let algorithm = ThreadAlgorithm(rawValue: name) else { throw ParseFailure.bad("unknown thread algorithm \(name)") }
        let (charset, key) = try searchCriteria()
        return ThreadCommand(algorithm: algorithm, charset: charset, key: key)
    }
}

// MARK: - Message IDs (RFC 5256 §3 REFERENCES step 1, RFC 5322 §3.6.4)

enum MessageIDs {
    /// Every `<…>` of a field, normalised, in order. RFC 5256 §3 asks that a quoted local part
    /// and its unquoted form be the same Message ID: quotes and quoting backslashes go, and so
    /// does whitespace outside quotes (folded ids). Empty or over-long ids are not valid.
    static func parse(_ text: String) -> [String] {
        let b = Array(text.utf8)
        var ids: [String] = []
        var i = 0
        while i < b.count {
            guard b[i] == UInt8(ascii: "<") else { i += 1; continue }
            var j = i + 1
            while j < b.count, b[j] != UInt8(ascii: ">"), b[j] != UInt8(ascii: "<") { j += 1 }
            guard j < b.count, b[j] == UInt8(ascii: ">") else { i = j; continue }
            if let id = normalise(b[(i + 1) ..< j]) { ids.append(id) }
            i = j + 1
        }
        return ids
    }

    /// The first valid id, or nil (In-Reply-To, Message-ID).
    static func first(_ text: String?) -> String? {
        guard let text else { return nil }
        return parse(text).first
    }

    private static func normalise(_ bytes: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var quoted = false, escaped = false
        for c in bytes {
            if escaped { out.append(c); escaped = false; continue }
            if quoted, c == UInt8(ascii: "\\") { escaped = true; continue }
            if c == UInt8(ascii: "\"") { quoted.toggle(); continue }
            if !quoted, c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A { continue }
            out.append(c)
        }
        guard !out.isEmpty, out.count <= IMAPSortLimits.maxMessageIDLength else { return nil }
        return String(decoding: out, as: UTF8.self)
    }
}

// MARK: - Threads

/// What threading needs about one message.
struct ThreadMessage: Sendable {
    var sortable: SortableMessage
    /// Normalised Message-ID, or nil when missing or invalid.
    var messageID: String?
    /// RFC 5256 §3 REFERENCES step 1: the valid ids of References, else the first valid id of
    /// In-Reply-To, else none; at most `IMAPSortLimits.maxReferencesPerMessage` (the last ones).
    var references: [String]

    init(sortable: SortableMessage, messageID: String?, inReplyTo: String?, references: String?) {
        self.sortable = sortable
        self.messageID = MessageIDs.first(messageID)
        var refs = references.map(MessageIDs.parse) ?? []
        if refs.isEmpty, let parent = MessageIDs.first(inReplyTo) { refs = [parent] }
        if refs.count > IMAPSortLimits.maxReferencesPerMessage {
            refs = Array(refs.suffix(IMAPSortLimits.maxReferencesPerMessage))
        }
        self.references = refs
    }
}

/// The result of THREAD: a forest whose nodes are messages (an index into the input) or dummies.
struct ThreadForest: Sendable, Equatable {
    /// Per node: the message's index in the input, or nil for a dummy (a message not in the set).
    var message: [Int?]
    var children: [[Int]]
    var roots: [Int]

    /// RFC 5256 §4: thread-list = "(" (thread-members / thread-nested) ")";
    /// thread-members = nz-number *(SP nz-number) [SP thread-nested]; thread-nested = 2*thread-list.
    /// A single child continues the chain; several children each get parentheses.
    func render(_ number: (Int) -> UInt32) -> String {
        enum Step { case node(Int), text(String) }
        var out = ""
        for root in roots {
            var stack: [Step] = [.text(")"), .node(root)]
            out += "("
            while let step = stack.popLast() {
                switch step {
                case .text(let t):
                    out += t
                case .node(let n):
                    let kids = children[n]
                    if let m = message[n] {
                        out += String(number(m))
                        if !kids.isEmpty { out += " " }
                    }
                    if kids.count == 1 {
                        stack.append(.node(kids[0]))
                    } else {
                        for k in kids.reversed() { stack.append(contentsOf: [.text(")"), .node(k), .text("(")]) }
                    }
                }
            }
        }
        return out
    }
}

enum IMAPThreader {
    static func thread(_ messages: [ThreadMessage], algorithm: ThreadAlgorithm) -> ThreadForest {
        switch algorithm {
        case .orderedSubject: return orderedSubject(messages)
        case .references:
            var tree = ReferenceTree(messages)
            return tree.run()
        }
    }

    /// RFC 5256 §3 ORDEREDSUBJECT: sort by base subject then sent date; each run of one base
    /// subject is a thread whose first message is the parent of all the others; threads are
    /// ordered by their first message's sent date.
    static func orderedSubject(_ messages: [ThreadMessage]) -> ThreadForest {
        let order = messages.indices.sorted { a, b in
            let c = Collation.compare(messages[a].sortable.subject, messages[b].sortable.subject)
            if c != 0 { return c < 0 }
            return SortableMessage.sentOrder(messages[a].sortable, messages[b].sortable)
        }
        var forest = ThreadForest(message: [], children: [], roots: [])
        var current: Int?
        var currentSubject: [UInt8] = []
        for i in order {
            let node = forest.message.count
            forest.message.append(i)
            forest.children.append([])
            if let parent = current, messages[i].sortable.subject == currentSubject {
                forest.children[parent].append(node)
            } else {
                forest.roots.append(node)
                current = node
                currentSubject = messages[i].sortable.subject
            }
        }
        forest.roots.sort { a, b in
            SortableMessage.sentOrder(messages[forest.message[a] ?? 0].sortable, messages[forest.message[b] ?? 0].sortable)
        }
        return forest
    }
}

/// RFC 5256 §3 REFERENCES, on an arena of containers linked as doubly linked sibling lists
/// (parent, first and last child, previous and next sibling; -1 for none), so that relinking
/// is O(1) and nothing recurses.
struct ReferenceTree {
    let messages: [ThreadMessage]
    /// The message index of each container; -1 for a dummy.
    var msg: [Int] = []
    var parent: [Int] = []
    var firstChild: [Int] = []
    var lastChild: [Int] = []
    var next: [Int] = []
    var prev: [Int] = []

    init(_ messages: [ThreadMessage]) {
        self.messages = messages
        let capacity = messages.count * 2
        for array in [\ReferenceTree.msg, \.parent, \.firstChild, \.lastChild, \.next, \.prev] {
            self[keyPath: array].reserveCapacity(capacity)
        }
    }

    mutating func make(_ message: Int) -> Int {
        msg.append(message)
        parent.append(-1); firstChild.append(-1); lastChild.append(-1); next.append(-1); prev.append(-1)
        return msg.count - 1
    }

    mutating func unlink(_ c: Int) {
        let p = parent[c]
        guard p >= 0 else { return }
        if prev[c] >= 0 { next[prev[c]] = next[c] } else { firstChild[p] = next[c] }
        if next[c] >= 0 { prev[next[c]] = prev[c] } else { lastChild[p] = prev[c] }
        parent[c] = -1; prev[c] = -1; next[c] = -1
    }

    /// Appends unlinked `c` as the last child of `p`.
    mutating func append(_ c: Int, to p: Int) {
        parent[c] = p
        prev[c] = lastChild[p]
        next[c] = -1
        if lastChild[p] >= 0 { next[lastChild[p]] = c } else { firstChild[p] = c }
        lastChild[p] = c
    }

    /// Inserts unlinked `c` just before `sibling`, under the same parent.
    mutating func insert(_ c: Int, before sibling: Int) {
        let p = parent[sibling]
        parent[c] = p
        prev[c] = prev[sibling]
        next[c] = sibling
        if prev[sibling] >= 0 { next[prev[sibling]] = c } else { firstChild[p] = c }
        prev[sibling] = c
    }

    func kids(_ p: Int) -> [Int] {
        var out: [Int] = []
        var c = firstChild[p]
        while c >= 0 { out.append(c); c = next[c] }
        return out
    }

    /// Whether making `c` a child of `p` would close a loop: `c` is `p` or one of its ancestors.
    /// A childless `c` cannot be an ancestor, which spares the walk for most links.
    func wouldLoop(parent p: Int, child c: Int) -> Bool {
        if p == c { return true }
        if firstChild[c] < 0 { return false }
        var a = parent[p]
        var steps = 0
        while a >= 0 {
            if a == c { return true }
            a = parent[a]
            steps += 1
            if steps > msg.count { return true }  // cannot happen in a forest; refuse rather than spin
        }
        return false
    }

    /// The message that stands for a node when sorting: itself, or a dummy's first child.
    func representative(_ n: Int) -> Int {
        var x = n
        while msg[x] < 0, firstChild[x] >= 0 { x = firstChild[x] }
        return msg[x]
    }

    func before(_ a: Int, _ b: Int) -> Bool {
        let ma = representative(a), mb = representative(b)
        if ma < 0 || mb < 0 { return ma >= 0 && mb < 0 }
        return SortableMessage.sentOrder(messages[ma].sortable, messages[mb].sortable)
    }

    mutating func sortChildren(_ p: Int) {
        guard firstChild[p] >= 0, next[firstChild[p]] >= 0 else { return }
        let sorted = kids(p).sorted { before($0, $1) }
        for c in sorted { unlink(c) }
        for c in sorted { append(c, to: p) }
    }

    /// Every node under `root`, parents before children (pre-order), without recursion.
    func preorder(from root: Int) -> [Int] {
        var out: [Int] = []
        var stack = [root]
        while let n = stack.popLast() {
            out.append(n)
            var c = lastChild[n]
            while c >= 0 { stack.append(c); c = prev[c] }
        }
        return out
    }

    mutating func run() -> ThreadForest {
        // (1) The ID table; parent/child links from each message's references.
        var table: [String: Int] = [:]
        table.reserveCapacity(messages.count)
        for (i, m) in messages.enumerated() {
            let own: Int
            if let id = m.messageID, let existing = table[id] {
                if msg[existing] < 0 {
                    msg[existing] = i
                    own = existing
                } else {
                    // A duplicate Message-ID: the first message keeps it, this one gets a unique (unnamed) one.
                    own = make(i)
                }
            } else {
                own = make(i)
                if let id = m.messageID { table[id] = own }
            }
            // (1.A) Link the references in order; an existing parent link stays; no loops.
            var previous = -1
            for ref in m.references {
                let c: Int
                if let found = table[ref] {
                    c = found
                } else {
                    c = make(-1)
                    table[ref] = c
                }
                if previous >= 0, parent[c] < 0, !wouldLoop(parent: previous, child: c) { append(c, to: previous) }
                previous = c
            }
            // (1.B) The last reference becomes the parent, replacing any parent a truncated
            // References elsewhere gave; no references, no parent.
            if parent[own] >= 0 { unlink(own) }
            if previous >= 0, !wouldLoop(parent: previous, child: own) { append(own, to: previous) }
        }

        // (2) Every parentless container under one root.
        let count = msg.count
        let root = make(-1)
        for c in 0 ..< count where parent[c] < 0 { append(c, to: root) }

        // (3) Prune dummies, children first: a childless dummy goes; a dummy with children gives
        // them to its parent, except at the top where that happens only for a single child.
        for n in preorder(from: root).reversed() where n != root && msg[n] < 0 {
            let p = parent[n]
            if firstChild[n] < 0 {
                unlink(n)
            } else if p != root || next[firstChild[n]] < 0 {
                for c in kids(n) {
                    unlink(c)
                    insert(c, before: n)
                }
                unlink(n)
            }
        }

        // (4) Sort the top level by sent date (a dummy by its earliest child).
        for n in kids(root) where msg[n] < 0 { sortChildren(n) }
        sortChildren(root)

        // (5) Gather threads whose base subjects are the same.
        func subject(_ n: Int) -> [UInt8]? {
            let m = msg[n] >= 0 ? msg[n] : (firstChild[n] >= 0 ? msg[firstChild[n]] : -1)
            guard m >= 0 else { return nil }
            let s = messages[m].sortable.subject
            return s.isEmpty ? nil : s
        }
        func isReply(_ n: Int) -> Bool { msg[n] >= 0 && messages[msg[n]].sortable.isReplyOrForward }
        let top = kids(root)
        var subjects: [[UInt8]: Int] = [:]
        for n in top {
            guard let s = subject(n) else { continue }
            if let t = subjects[s] {
                if msg[t] >= 0, msg[n] < 0 || (isReply(t) && !isReply(n)) { subjects[s] = n }
            } else {
                subjects[s] = n
            }
        }
        for n in top where parent[n] == root {
            guard let s = subject(n), let t = subjects[s], t != n else { continue }
            if msg[t] < 0, msg[n] < 0 {
                for c in kids(n) {
                    unlink(c)
                    append(c, to: t)
                }
                unlink(n)
            } else if msg[t] < 0 || (isReply(n) && !isReply(t)) {
                unlink(n)
                append(n, to: t)
            } else {
                let dummy = make(-1)
                insert(dummy, before: t)
                unlink(t)
                append(t, to: dummy)
                unlink(n)
                append(n, to: dummy)
                subjects[s] = dummy
            }
        }

        // (6) Sort every set of siblings by sent date, the deepest first.
        for n in preorder(from: root).reversed() { sortChildren(n) }

        // The forest, in output order.
        var forest = ThreadForest(message: [], children: [], roots: [])
        var index = [Int](repeating: -1, count: msg.count)
        let order = preorder(from: root)
        for n in order where n != root {
            index[n] = forest.message.count
            forest.message.append(msg[n] >= 0 ? msg[n] : nil)
            forest.children.append([])
        }
        for n in order where n != root {
            if parent[n] == root {
                forest.roots.append(index[n])
            } else if parent[n] >= 0 {
                forest.children[index[parent[n]]].append(index[n])
            }
        }
        return forest
    }
}
