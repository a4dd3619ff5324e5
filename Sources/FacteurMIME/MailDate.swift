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
    private enum Token {
        case number(Int, digits: Int)
        case word(String)           // lowercase letters
        case time(Int, Int, Int?)
        case zone(Int)              // ±hhmm as seconds
    }

    static func parse(_ b: [UInt8]) -> MailDate? {
        guard b.count <= 256, let tokens = tokenize(b) else { return nil }
        var t = tokens[...]
        // [ day-of-week "," ]
        if case .word(let w)? = t.first, dayNames.contains(where: { w.hasPrefix($0) }) { t = t.dropFirst() }

        var day = 0, month = 0, year = 0, yearDigits = 0
        var time: (Int, Int, Int?)? = nil
        var zone: Int? = nil

        let list = Array(t)
        var k = 0
        // date = day month year (RFC 5322), or month day [time] year (asctime).
        guard k < list.count else { return nil }
        switch list[k] {
        case .number(let d, _):
            guard k + 2 < list.count, case .word(let m) = list[k + 1], let mo = monthNumber(m),
                  case .number(let y, let yd) = list[k + 2] else { return nil }
            day = d; month = mo; year = y; yearDigits = yd
            k += 3
            if k < list.count, case .time(let h, let mi, let s) = list[k] { time = (h, mi, s); k += 1 }
        case .word(let m):
            guard let mo = monthNumber(m), k + 1 < list.count, case .number(let d, _) = list[k + 1] else { return nil }
            month = mo; day = d
            k += 2
            if k < list.count, case .time(let h, let mi, let s) = list[k] { time = (h, mi, s); k += 1 }
            // asctime puts the zone (when any) before the year: "15:04:05 MST 2006"
            if k < list.count, let z = zoneValue(list[k]), k + 1 < list.count, case .number = list[k + 1] {
                zone = z; k += 1
            }
            guard k < list.count, case .number(let y, let yd) = list[k] else { return nil }
            year = y; yearDigits = yd
            k += 1
        default:
            return nil
        }
        if zone == nil, k < list.count, let z = zoneValue(list[k]) {
            zone = z
            k += 1
        }
        // Anything left over that we cannot read makes the whole value garbage.
        guard k == list.count else { return nil }
        guard let (hour, minute, second) = time else { return nil }

        // RFC 5322 §4.3: two-digit years below 50 are 20xx, others 19xx; three-digit years add 1900.
        switch yearDigits {
        case 1, 2: year += year < 50 ? 2000 : 1900
        case 3: year += 1900
        case 4: break
        default: return nil
        }
        guard (1...12).contains(month), year >= 1000, year <= 9999,
              day >= 1, day <= MailDate.daysInMonth(month, year: year),
              (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second ?? 0) else { return nil }
        return MailDate(year: year, month: month, day: day, hour: hour, minute: minute, second: second ?? 0,
                        zoneOffset: zone ?? 0)
    }

    private static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    private static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// "jan", "january", "sept": the first three letters decide.
    private static func monthNumber(_ w: String) -> Int? {
        guard w.utf8.count >= 3 else { return nil }
        let p = String(w.prefix(3))
        guard let i = monthNames.firstIndex(of: p) else { return nil }
        let full = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                    "november", "december"][i]
        guard full.hasPrefix(w) || (i == 8 && w == "sept") else { return nil }
        return i + 1
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

    /// Splits the value into numbers, words, times and numeric zones; comments, commas and dots are dropped.
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
                if j < n, b[j] == ASCII.colon {
                    // hour ":" minute [":" second]
                    guard j - i <= 2 else { return nil }
                    var parts = [v]
                    while j < n, b[j] == ASCII.colon, parts.count < 3 {
                        var k = j + 1
                        var w = 0
                        while k < n, ASCII.isDigit(b[k]), k - j <= 2 { w = w * 10 + Int(b[k] - 0x30); k += 1 }
                        guard k - j == 3 || k - j == 2 else { return nil }
                        parts.append(w)
                        j = k
                    }
                    guard j == n || !ASCII.isDigit(b[j]) else { return nil }
                    out.append(.time(parts[0], parts[1], parts.count > 2 ? parts[2] : nil))
                } else {
                    out.append(.number(v, digits: j - i))
                }
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
            guard out.count <= 12 else { return nil }
        }
        return out
    }
}
