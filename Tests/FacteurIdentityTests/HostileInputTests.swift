// Random and adversarial bytes fed to every mechanism at every stage: the machines must
// answer with a step (never crash, never accept), whatever arrives.

import FacteurStore
import FacteurTestSupport
import XCTest
@testable import FacteurIdentity

typealias SeededGenerator = SeededRandom

final class HostileInputTests: XCTestCase {
    /// Bytes biased towards the characters the grammars care about.
    func hostileMessage(_ rng: inout SeededGenerator) -> [UInt8] {
        let alphabet: [UInt8] = Array("nyprcmaisv=,0123456789+/2C3D".utf8) + [0, 0xFF, 0xC3, 0x80, 0x7F]
        let length = Int.random(in: 0...64, using: &rng)
        return (0..<length).map { _ in
            Bool.random(using: &rng) ? alphabet.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
        }
    }

    func testRandomInputNeverSucceedsOrCrashes() throws {
        var rng = SeededGenerator(seed: 20261127)
        let stored = try SCRAMServerTests.rfcCredentials()
        for round in 0..<3000 {
            let name = SASLMechanism.Name.allCases[round % 3]
            var mechanism = SASLMechanism(name, options: SCRAMServerTests.options())
            var step = mechanism.step(Bool.random(using: &rng) ? nil : hostileMessage(&rng))
            for _ in 0..<4 {
                switch step {
                case .challenge:
                    step = mechanism.step(hostileMessage(&rng))
                case .needCredentials:
                    step = mechanism.provide(Bool.random(using: &rng) ? stored : nil)
                case .verifyPassword:
                    // A wrong password: nothing random may get through.
                    step = mechanism.passwordChecked(false)
                case .success:
                    XCTFail("random input authenticated with \(name): \(step)")
                case .failure:
                    break
                }
            }
        }
    }

    func testSCRAMStructuredGarbageAtClientFinal() throws {
        var rng = SeededGenerator(seed: 42)
        let stored = try SCRAMServerTests.rfcCredentials()
        for _ in 0..<2000 {
            var scram = SASLMechanism(.scramSHA256, options: SCRAMServerTests.options(nonce: "srv"))
            _ = scram.step(bytes("n,,n=user,r=abc"))
            _ = scram.provide(stored)
            // Plausible shapes with random pieces.
            let pieces = ["c=biws", "r=abcsrv", "p=" + Bytes.base64(Bytes.random(count: Int.random(in: 0...40, using: &rng))),
                          "x=1", "", "c=", "r=", "p=", "=", ","]
            let count = Int.random(in: 1...5, using: &rng)
            let message = (0..<count).map { _ in pieces.randomElement(using: &rng)! }.joined(separator: ",")
            let step = scram.step(bytes(message))
            guard case .failure = step else { return XCTFail("\(message) → \(step)") }
        }
    }
}
