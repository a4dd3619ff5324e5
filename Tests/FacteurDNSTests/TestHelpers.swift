import XCTest
@testable import FacteurDNS

/// Runs a lookup that must fail and returns its DNSError (nil, with a test failure, if it succeeded).
func expectDNSError<T>(_ operation: () async throws(DNSError) -> T, file: StaticString = #filePath,
                       line: UInt = #line) async -> DNSError? {
    do {
        let value = try await operation()
        XCTFail("expected a DNSError, got \(value)", file: file, line: line)
        return nil
    } catch {
        return error
    }
}

/// Names as literals in tests. Only the tests have this: in the library it would turn `try DNSName("…")`
/// with a literal into a trapping conversion (SE-0213). Invalid names in tests go through a variable.
extension DNSName: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) {
        try! self.init(value)
    }
}
