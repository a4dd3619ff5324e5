import XCTest

final class PlaceholderFacteurEndToEndTests: XCTestCase {
    func testNothingYet() {}
}
