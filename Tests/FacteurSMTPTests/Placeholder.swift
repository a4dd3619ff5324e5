import XCTest

final class PlaceholderFacteurSMTPTests: XCTestCase {
    func testNothingYet() {}
}
