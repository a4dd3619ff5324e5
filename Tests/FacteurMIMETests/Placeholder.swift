import XCTest

final class PlaceholderFacteurMIMETests: XCTestCase {
    func testNothingYet() {}
}
