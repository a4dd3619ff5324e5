// RFC 2047 encoded words: the examples of §8, charsets, and the tolerances real mail needs.

import FacteurMIME
import XCTest

final class EncodedWordTests: XCTestCase {
    /// RFC 2047 §8: the display of encoded words in comments and how whitespace between them goes.
    func testRFC2047Section8WhitespaceExamples() {
        let cases: [(String, String)] = [
            ("(=?ISO-8859-1?Q?a?=)", "(a)"),
            ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
            ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
            ("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"),
        ]
        for (encoded, shown) in cases {
            XCTAssertEqual(EncodedWords.decode(encoded), shown, encoded)
        }
    }

    /// RFC 2047 §8: the header examples.
    func testRFC2047Section8HeaderExamples() {
        XCTAssertEqual(EncodedWords.decode("=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>"), "Keith Moore <moore@cs.utk.edu>")
        XCTAssertEqual(EncodedWords.decode("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>"),
                       "Keld Jørn Simonsen <keld@dkuug.dk>")
        XCTAssertEqual(EncodedWords.decode("=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>"),
                       "André Pirard <PIRARD@vm1.ulg.ac.be>")
        XCTAssertEqual(EncodedWords.decode("=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n    =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?="),
                       "If you can read this you understand the example.")
        XCTAssertEqual(EncodedWords.decode("=?ISO-8859-1?Q?Olle_J=E4rnefors?= <ojarnef@admin.kth.se>"),
                       "Olle Järnefors <ojarnef@admin.kth.se>")
        XCTAssertEqual(EncodedWords.decode("Nathaniel Borenstein <nsb@thumper.bellcore.com> (=?iso-8859-8?b?7eXs+SDv4SDp7Oj08A==?=)"),
                       "Nathaniel Borenstein <nsb@thumper.bellcore.com> (םולש ןב ילטפנ)")
    }

    /// RFC 2231 §5: a language after the charset.
    func testLanguageSuffix() {
        XCTAssertEqual(EncodedWords.decode("=?US-ASCII*EN?Q?Keith_Moore?="), "Keith Moore")
        XCTAssertEqual(EncodedWords.decodeWord("=?utf-8*fr?B?w6l0w6k=?="), "été")
    }

    func testUTF8SplitAcrossWordsIsJoinedBeforeDecoding() {
        // "€" is E2 82 AC; the first word carries E2 82, the second AC.
        XCTAssertEqual(EncodedWords.decode("=?UTF-8?Q?=E2=82?= =?UTF-8?Q?=AC_rates?="), "€ rates")
        XCTAssertEqual(EncodedWords.decode("=?utf-8?B?4oI=?= =?utf-8?B?rA==?="), "€")
    }

    func testCharsets() {
        XCTAssertEqual(EncodedWords.decode("=?windows-1252?Q?=80_and_=93quotes=94?="), "€ and \u{201C}quotes\u{201D}")
        XCTAssertEqual(EncodedWords.decode("=?koi8-r?B?8NLJ18XU?="), "Привет")
        XCTAssertEqual(EncodedWords.decode("=?ISO-2022-JP?B?GyRCJEgkRiRiGyhC?="), "とても")
        XCTAssertEqual(EncodedWords.decode("=?shift_jis?B?gqCCog==?="), "あい")
        XCTAssertEqual(EncodedWords.decode("=?euc-jp?B?pKKkpA==?="), "あい")
        XCTAssertEqual(EncodedWords.decode("=?iso-8859-15?Q?=A4?="), "€")
        XCTAssertEqual(EncodedWords.decode("=?ks_c_5601-1987?B?sKE=?="), "가")
        XCTAssertEqual(EncodedWords.decode("=?gb2312?B?sKE=?="), "啊")
        XCTAssertEqual(EncodedWords.decode("=?big5?B?pEA=?="), "一")
    }

    func testWhatIsNotAnEncodedWordIsLeftAlone() {
        XCTAssertEqual(EncodedWords.decode("=?x-klingon?Q?abc?= tail"), "=?x-klingon?Q?abc?= tail")
        XCTAssertEqual(EncodedWords.decode("=?utf-8?X?abc?="), "=?utf-8?X?abc?=")
        XCTAssertEqual(EncodedWords.decode("=?utf-8?Q?no end"), "=?utf-8?Q?no end")
        XCTAssertEqual(EncodedWords.decode("a = b ?= c"), "a = b ?= c")
        XCTAssertEqual(EncodedWords.decode("plain"), "plain")
        XCTAssertNil(EncodedWords.decodeWord("=?x-klingon?Q?abc?="))
        XCTAssertNil(EncodedWords.decodeWord("=?utf-8?Q?abc?= more"))
        // Text next to a word keeps its spaces; only whitespace between two words goes.
        XCTAssertEqual(EncodedWords.decode("Re: =?utf-8?Q?caf=C3=A9?= ok"), "Re: café ok")
    }

    func testRawUTF8AroundWords() {
        XCTAssertEqual(EncodedWords.decode("Grüße =?utf-8?Q?und?= Küsse"), "Grüße und Küsse")
    }

    func testRejectedBytesKeepTheWordAsWritten() {
        // 0x82 alone is not Shift_JIS: the word stays.
        XCTAssertEqual(EncodedWords.decode("=?shift_jis?Q?=82?="), "=?shift_jis?Q?=82?=")
    }
}
