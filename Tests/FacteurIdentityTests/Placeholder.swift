import XCTest

final class PlaceholderFacteurIdentityTests: XCTestCase {
    func testNothingYet() {}
}
