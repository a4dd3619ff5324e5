// RFC 5322 §3.3 date-time, with the obsolete forms of §4.3 (two- and three-digit years, zone names,
// military zones, CFWS anywhere) and the asctime() layout some old software writes
// ("Mon Jan  2 15:04:05 2006"). Garbage gives nil, never a guess.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A date-time read from a Date header (or a Received field's date).
public struct MailDate: Sendable, Hashable {
    public var year: Int
    public var month: Int   // 1...12
    public var day: Int     // 1...31
    public var hour: Int
    public var minute: Int
    public var second: Int
    /// Offset of the written zone from UTC, in seconds (east positive). -0000 and unknown zones give 0.
    public var zoneOffset: Int

    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, zoneOffset: Int) {
        self.year = year; self.month = month; self.day = day
        self.hour = hour; self.minute = minute; self.second = second
        self.zoneOffset = zoneOffset
    }

    /// Parses a date-time; nil when the value is not one.
    public init?(parsing value: String) {
        guard let d = MailDateParser.parse(Array(value.utf8)) else { return nil }
        self = d
    }

    /// Parses a date-time into the instant it names; nil when the value is not a date-time.
    public static func parse(_ value: String) -> Date? { MailDate(parsing: value)?.date }

    /// The instant: the written wall-clock time minus the zone offset.
    public var date: Date {
        let days = MailDate.daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - zoneOffset
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (the era-based algorithm: exact, no tables).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func daysInMonth(_ month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

enum MailDateParser {
    private enum Token: Equatable {
        case number(Int, digits: Int)
        case word(String)           // lowercase letters
        case colon
        case zone(Int)              // ±hhmm as seconds
    }

    static func parse(_ b: [UInt8]) -> MailDate? {
        guard b.count <= 256, let tokens = tokenize(b) else { return nil }
        var k = 0
        let n = tokens.count
        // [ day-of-week "," ]
        if k < n, case .word(let w) = tokens[k], w.utf8.count >= 3, dayNames.contains(where: { w.hasPrefix($0) }) { k += 1 }

        // hour ":" minute [ ":" second ], each possibly surrounded by CFWS (obs-hour etc., §4.3).
        func time(_ k: inout Int) -> (Int, Int, Int)? {
            guard k + 2 < n, case .number(let h, let hd) = tokens[k], hd <= 2, tokens[k + 1] == .colon,
                  case .number(let m, let md) = tokens[k + 2], md <= 2 else { return nil }
            k += 3
            var s = 0
            if k + 1 < n, tokens[k] == .colon, case .number(let v, let sd) = tokens[k + 1], sd <= 2 {
                s = v
                k += 2
            }
            return (h, m, s)
        }

        var day = 0, month = 0, year = 0, yearDigits = 0
        var clock: (Int, Int, Int)? = nil
        var zone: Int? = nil
        guard k < n else { return nil }
        switch tokens[k] {
        case .number(let d, let dd):
            // date = day month year (RFC 5322 §3.3)
            guard dd <= 2, k + 2 < n, case .word(let m) = tokens[k + 1], let mo = monthNumber(m),
                  case .number(let y, let yd) = tokens[k + 2] else { return nil }
            day = d; month = mo; year = y; yearDigits = yd
            k += 3
            clock = time(&k)
        case .word(let m):
            // asctime(): month day time [zone] year
            guard let mo = monthNumber(m), k + 1 < n, case .number(let d, let dd) = tokens[k + 1], dd <= 2 else { return nil }
            month = mo; day = d
            k += 2
            clock = time(&k)
            if k + 1 < n, let z = zoneValue(tokens[k]), case .number = tokens[k + 1] {
                zone = z
                k += 1
            }
            guard k < n, case .number(let y, let yd) = tokens[k] else { return nil }
            year = y; yearDigits = yd
            k += 1
        default:
            return nil
        }
        if zone == nil, k < n, let z = zoneValue(tokens[k]) {
            zone = z
            k += 1
        }
        // Anything left over that we cannot read makes the whole value garbage.
        guard k == n, let (hour, minute, second) = clock else { return nil }

        // RFC 5322 §4.3: two-digit years below 50 are 20xx, others 19xx; three-digit years add 1900.
        switch yearDigits {
        case 1, 2: year += year < 50 ? 2000 : 1900
        case 3: year += 1900
        case 4: break
        default: return nil
        }
        guard (1...12).contains(month), year >= 1000, year <= 9999,
              day >= 1, day <= MailDate.daysInMonth(month, year: year),
              (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second) else { return nil }
        return MailDate(year: year, month: month, day: day, hour: hour, minute: minute, second: second,
                        zoneOffset: zone ?? 0)
    }

    private static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    private static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let fullMonthNames = ["january", "february", "march", "april", "may", "june", "july", "august",
                                         "september", "october", "november", "december"]

    /// "jan", "january", "sept": an abbreviation of the full name, at least three letters long.
    private static func monthNumber(_ w: String) -> Int? {
        guard w.utf8.count >= 3, let i = monthNames.firstIndex(of: String(w.prefix(3))) else { return nil }
        return fullMonthNames[i].hasPrefix(w) ? i + 1 : nil
    }

    /// RFC 5322 §4.3 obs-zone names, the usual abbreviations seen in the wild, and military letters
    /// (which §4.3 says to read as -0000, since RFC 822 got their sign wrong).
    private static let zoneNames: [String: Int] = [
        "ut": 0, "utc": 0, "gmt": 0, "z": 0, "est": -5, "edt": -4, "cst": -6, "cdt": -5, "mst": -7, "mdt": -6,
        "pst": -8, "pdt": -7, "wet": 0, "west": 1, "bst": 1, "cet": 1, "cest": 2, "met": 1, "mest": 2, "eet": 2,
        "eest": 3, "msk": 3, "hkt": 8, "sgt": 8, "jst": 9, "kst": 9, "aest": 10, "aedt": 11, "nzst": 12,
        "nzdt": 13, "akst": -9, "akdt": -8, "hst": -10,
    ]

    private static func zoneValue(_ t: Token) -> Int? {
        switch t {
        case .zone(let z): return z
        case .word(let w):
            if let h = zoneNames[w] { return h * 3_600 }
            // Military letters, and §4.3: "any such time zone whose meaning is not known SHOULD be
            // considered equivalent to -0000".
            return w.utf8.count <= 5 ? 0 : nil
        default: return nil
        }
    }

    /// Splits the value into numbers, words, colons and numeric zones; comments, commas and dots are dropped.
    private static func tokenize(_ b: [UInt8]) -> [Token]? {
        var out: [Token] = []
        var i = 0
        let n = b.count
        while i < n {
            let c = b[i]
            if ASCII.isWhitespace(c) || c == ASCII.comma || c == ASCII.dot {
                i += 1
            } else if c == ASCII.openParen {
                MIMEValueParser.skipComment(b, &i)
            } else if c == ASCII.colon {
                out.append(.colon)
                i += 1
            } else if c == 0x2B || c == ASCII.hyphen {
                // ±hhmm (also ±hh:mm and ±hh, which some software writes)
                let sign = c == ASCII.hyphen ? -1 : 1
                var j = i + 1
                var digits: [Int] = []
                while j < n, digits.count < 5, ASCII.isDigit(b[j]) || (b[j] == ASCII.colon && digits.count == 2) {
                    if b[j] != ASCII.colon { digits.append(Int(b[j] - 0x30)) }
                    j += 1
                }
                guard j == n || !ASCII.isDigit(b[j]) else { return nil }
                let hh: Int, mm: Int
                switch digits.count {
                case 4: hh = digits[0] * 10 + digits[1]; mm = digits[2] * 10 + digits[3]
                case 2: hh = digits[0] * 10 + digits[1]; mm = 0
                default: return nil
                }
                guard mm < 60 else { return nil }
                out.append(.zone(sign * (hh * 3_600 + mm * 60)))
                i = j
            } else if ASCII.isDigit(c) {
                var j = i
                var v = 0
                while j < n, ASCII.isDigit(b[j]), j - i < 5 { v = v * 10 + Int(b[j] - 0x30); j += 1 }
                guard j == n || !ASCII.isDigit(b[j]) else { return nil }
                out.append(.number(v, digits: j - i))
                i = j
            } else if ASCII.isAlpha(c) {
                var j = i
                while j < n, ASCII.isAlpha(b[j]), j - i < 12 { j += 1 }
                guard j == n || !ASCII.isAlpha(b[j]) else { return nil }
                out.append(.word(String(decoding: b[i..<j].map(ASCII.lower), as: UTF8.self)))
                i = j
            } else {
                return nil
            }
            guard out.count <= 16 else { return nil }
        }
        return out
    }
}
