// What must hold for any summary, whatever the input: used by the corpus and fuzz tests.

import FacteurMIME
import XCTest

enum Invariants {
    /// Every offset inside the input, every header directly before its body, every child inside its parent,
    /// the root covering the whole input; nesting within the limit. Returns the problems found.
    static func problems(_ s: MessageSummary, count: Int) -> [String] {
        var out: [String] = []
        let root = s.body
        if root.headerOffset != 0 { out.append("root does not start at 0") }
        if root.bodyOffset + root.bodyLength != count { out.append("root does not end at the end of the input") }
        var parts = 0
        func check(_ p: BodyPart, depth: Int, path: String) {
            parts += 1
            if depth > MIMELimits.maxNestingDepth { out.append("\(path): deeper than the limit") }
            if p.headerOffset < 0 || p.headerLength < 0 || p.headerOffset + p.headerLength != p.bodyOffset {
                out.append("\(path): header \(p.headerOffset)+\(p.headerLength) does not end at the body \(p.bodyOffset)")
            }
            if p.bodyLength < 0 || p.bodyOffset + p.bodyLength > count { out.append("\(path): body outside the input") }
            if p.lines < 0 || p.lines > p.bodyLength { out.append("\(path): \(p.lines) lines in \(p.bodyLength) bytes") }
            if p.isEncapsulatedMessage && p.children.count > 1 { out.append("\(path): message with \(p.children.count) roots") }
            var previousEnd = p.bodyOffset
            for (n, c) in p.children.enumerated() {
                if c.headerOffset < previousEnd || c.bodyOffset + c.bodyLength > p.bodyOffset + p.bodyLength {
                    out.append("\(path).\(n + 1): not inside its parent, after its sibling")
                }
                previousEnd = c.bodyOffset + c.bodyLength
                check(c, depth: depth + 1, path: "\(path).\(n + 1)")
            }
        }
        check(root, depth: 0, path: "root")
        if parts > MIMELimits.maxParts { out.append("\(parts) parts, more than the limit") }
        if s.defects.count > MIMELimits.maxDefects { out.append("\(s.defects.count) defects, more than the limit") }
        return out
    }
}
