// SASLprep (RFC 4013): the stringprep profile (RFC 3454) applied to user names and
// passwords before they are hashed or compared, so that "I\u{AD}X" and "\u{2168}"
// are the same password as "IX".
//
// What is implemented, in RFC 4013's order:
// - §2.1 Mapping: non-ASCII spaces (RFC 3454 table C.1.2) become U+0020; the
//   "commonly mapped to nothing" characters (table B.1) are removed. U+200B is in
//   both tables; like most implementations we apply C.1.2 first.
// - §2.2 Normalization: Unicode NFKC, from Foundation. Foundation follows the current
//   Unicode version rather than 3.2; the two differ only for characters assigned later.
// - §2.3 Prohibited output: tables C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9.
// - §2.4 Bidirectional characters (RFC 3454 §6): table D.1 (RandALCat) exactly. Table
//   D.2 (LCat) is approximated as "a letter or spacing mark outside the right-to-left
//   blocks", which is right for the letters of every left-to-right script; symbols
//   with bidi class L are not counted.
// - §2.5 Unassigned code points: rejected for stored strings (`.stored`, used when a
//   password is set), allowed for queries (`.query`, used when one is checked), as
//   RFC 3454 §7 says. "Unassigned" means unassigned in the current Unicode version.

import Foundation

public enum SASLprep {
    public enum Profile: Sendable {
        /// Setting a password: unassigned code points are an error (RFC 3454 §7).
        case stored
        /// Checking a password or looking up a name: unassigned code points pass.
        case query
    }

    public enum Failure: Error, Sendable, Equatable {
        /// A character from one of RFC 3454's prohibited tables (RFC 4013 §2.3).
        case prohibited(Unicode.Scalar)
        /// Mixed or badly placed right-to-left text (RFC 3454 §6).
        case bidirectional
        /// An unassigned code point in a stored string (RFC 4013 §2.5).
        case unassigned(Unicode.Scalar)
    }

    /// Prepares `string` per RFC 4013. The result may be empty (a string made only of
    /// characters mapped to nothing); callers that need a non-empty value check it.
    public static func prepare(_ string: String, profile: Profile = .query) throws(Failure) -> String {
        // §2.1 Mapping.
        var mapped = String.UnicodeScalarView()
        for scalar in string.unicodeScalars {
            if isNonASCIISpace(scalar.value) {
                mapped.append(" ")
            } else if !isMappedToNothing(scalar.value) {
                mapped.append(scalar)
            }
        }
        // §2.2 Normalization form KC.
        let normalized = String(mapped).precomposedStringWithCompatibilityMapping

        // §2.3 Prohibited output and §2.5 unassigned code points.
        for scalar in normalized.unicodeScalars {
            if isProhibited(scalar.value) { throw .prohibited(scalar) }
            if profile == .stored, scalar.properties.generalCategory == .unassigned { throw .unassigned(scalar) }
        }

        // §2.4 Bidirectional characters (RFC 3454 §6).
        let scalars = Array(normalized.unicodeScalars)
        if scalars.contains(where: { isRandALCat($0.value) }) {
            if scalars.contains(where: isLCat) { throw .bidirectional }
            guard let first = scalars.first, let last = scalars.last,
                  isRandALCat(first.value), isRandALCat(last.value) else { throw .bidirectional }
        }
        return normalized
    }

    // MARK: - RFC 3454 tables

    /// Table C.1.2, non-ASCII space characters.
    static func isNonASCIISpace(_ v: UInt32) -> Bool {
        v == 0x00A0 || v == 0x1680 || (0x2000...0x200B).contains(v) || v == 0x202F || v == 0x205F || v == 0x3000
    }

    /// Table B.1, commonly mapped to nothing.
    static func isMappedToNothing(_ v: UInt32) -> Bool {
        switch v {
        case 0x00AD, 0x034F, 0x1806, 0x180B...0x180D, 0x200B...0x200D, 0x2060, 0xFE00...0xFE0F, 0xFEFF: return true
        default: return false
        }
    }

    /// Tables C.1.2 and C.2.1 through C.9, the ones RFC 4013 §2.3 prohibits.
    static func isProhibited(_ v: UInt32) -> Bool {
        if isNonASCIISpace(v) { return true }                                  // C.1.2
        switch v {
        case 0x0000...0x001F, 0x007F:                                          // C.2.1 ASCII control
            return true
        case 0x0080...0x009F, 0x06DD, 0x070F, 0x180E, 0x200C, 0x200D, 0x2028, 0x2029,
             0x2060...0x2063, 0x206A...0x206F, 0xFEFF, 0xFFF9...0xFFFC, 0x1D173...0x1D17A:
            return true                                                        // C.2.2 non-ASCII control
        case 0xE000...0xF8FF, 0xF0000...0xFFFFD, 0x100000...0x10FFFD:          // C.3 private use
            return true
        case 0xFDD0...0xFDEF:                                                  // C.4 non-characters
            return true
        case 0xD800...0xDFFF:                                                  // C.5 surrogates
            return true
        case 0xFFF9...0xFFFD:                                                  // C.6 not plain text
            return true
        case 0x2FF0...0x2FFB:                                                  // C.7 not canonical
            return true
        case 0x0340, 0x0341, 0x200E, 0x200F, 0x202A...0x202E:                  // C.8 display/deprecated
            return true
        case 0xE0001, 0xE0020...0xE007F:                                       // C.9 tagging
            return true
        default:
            return v & 0xFFFE == 0xFFFE                                        // C.4: U+xxFFFE, U+xxFFFF
        }
    }

    /// Table D.1, characters with bidirectional property R or AL (Unicode 3.2).
    static func isRandALCat(_ v: UInt32) -> Bool {
        switch v {
        case 0x05BE, 0x05C0, 0x05C3, 0x05D0...0x05EA, 0x05F0...0x05F4, 0x061B, 0x061F,
             0x0621...0x063A, 0x0640...0x064A, 0x066D...0x066F, 0x0671...0x06D5, 0x06DD,
             0x06E5...0x06E6, 0x06FA...0x06FE, 0x0700...0x070D, 0x0710, 0x0712...0x072C,
             0x0780...0x07A5, 0x07B1, 0x200F, 0xFB1D, 0xFB1F...0xFB28, 0xFB2A...0xFB36,
             0xFB38...0xFB3C, 0xFB3E, 0xFB40...0xFB41, 0xFB43...0xFB44, 0xFB46...0xFBB1,
             0xFBD3...0xFD3D, 0xFD50...0xFD8F, 0xFD92...0xFDC7, 0xFDF0...0xFDFC,
             0xFE70...0xFE74, 0xFE76...0xFEFC:
            return true
        default:
            return false
        }
    }

    /// Blocks reserved for right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, NKo, …
    /// and their presentation forms). Letters added there after Unicode 3.2 are R or AL,
    /// so they must not count as LCat even though table D.1 does not list them.
    static func isInRightToLeftBlock(_ v: UInt32) -> Bool {
        switch v {
        case 0x0590...0x08FF, 0xFB1D...0xFDFF, 0xFE70...0xFEFF, 0x10800...0x10FFF, 0x1E800...0x1EFFF: return true
        default: return false
        }
    }

    /// An approximation of table D.2 (bidirectional property L); see the file comment.
    static func isLCat(_ scalar: Unicode.Scalar) -> Bool {
        guard !isRandALCat(scalar.value), !isInRightToLeftBlock(scalar.value) else { return false }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter, .spacingMark:
            return true
        default:
            return false
        }
    }
}
