import XCTest

final class PlaceholderFacteurStoreTests: XCTestCase {
    func testNothingYet() {}
}
