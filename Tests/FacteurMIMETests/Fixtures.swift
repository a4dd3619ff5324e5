// Access to the test fixtures (copied byte-exact from shared/testdata; see Fixtures/README.md).

import Foundation
import XCTest

enum Fixtures {
    /// Tests/FacteurMIMETests/Fixtures, as copied into the test bundle (`.copy("Fixtures")`).
    static var root: URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("Fixtures folder missing from the test bundle")
        }
        return url
    }

    static var mimeCorpus: URL { root.appendingPathComponent("mime") }

    /// Bytes of a corpus file, by its path inside the corpus (`ruby-mail/rfc2822/example01.eml`).
    static func corpusFile(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: mimeCorpus.appendingPathComponent(path)))
    }

    /// Every message of the corpus, by path, sorted: .eml, .msg and python-email's msg_*.txt.
    static func corpusMessages() throws -> [(path: String, bytes: [UInt8])] {
        let base = mimeCorpus.standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(atPath: base) else { return [] }
        var paths: [String] = []
        while let p = walker.nextObject() as? String {
            if p.hasSuffix(".eml") || p.hasSuffix(".msg") || (p.hasPrefix("python-email/msg_") && p.hasSuffix(".txt")) {
                paths.append(p)
            }
        }
        return try paths.sorted().map { ($0, try corpusFile($0)) }
    }

    /// One node of index.yaml's `structure` tree (converted once to mime-index.json; see Fixtures/README.md).
    struct IndexNode: Decodable {
        var type: String
        var cte: String?
        var charset: String?
        var filename: String?
        var parts: [IndexNode]?
        var defects: [String]?
    }

    struct IndexEntry: Decodable {
        var bytes: Int
        var crlf: Bool
        var structure: IndexNode
    }

    static func index() throws -> [String: IndexEntry] {
        let data = try Data(contentsOf: root.appendingPathComponent("mime-index.json"))
        return try JSONDecoder().decode([String: IndexEntry].self, from: data)
    }
}
