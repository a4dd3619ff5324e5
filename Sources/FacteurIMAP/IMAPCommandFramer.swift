// Splits the client's byte stream into whole IMAP commands (RFC 9051 §2.2.1, §4.3): a command is
// lines joined by literals, so a line ending in `{n}` (synchronising: the server sends a "+"
// continuation request first), `{n+}` (non-synchronising, RFC 7888 LITERAL+) or `~{n}` (literal8,
// RFC 3516) is followed by exactly n octets and then the rest of the command.
//
// A literal over the limit is refused from its announced size, before any of it is read
// (synchronising), or read and thrown away without being kept (non-synchronising). Every byte is
// scanned once. The output keeps literals inline and the final CRLF, ready for `IMAPParser`.

public struct IMAPCommandFramer: Sendable {
    public enum Event: Equatable, Sendable {
        /// A whole command: its lines and literals, ending in CRLF.
        case command([UInt8])
        /// A synchronising literal is announced and acceptable: send a continuation request
        /// (`+ …`), then call `next()` again.
        case continuationRequest
        /// A literal over the limit. A synchronising one was never sent; a non-synchronising
        /// one is being discarded. The command is dropped either way (tagged NO [TOOBIG]).
        case literalTooLarge(tag: String?, size: UInt64)
        /// A line over the limit; its bytes up to the next LF are thrown away (tagged BAD).
        case lineTooLong(tag: String?)
        /// Too many literals, or the whole command is too big (tagged BAD; command dropped).
        case commandTooLarge(tag: String?)
        /// The client must be disconnected (a huge non-synchronising literal).
        case fatal(String)
        case needMoreData
    }

    public enum Line: Equatable, Sendable {
        case line([UInt8])
        case tooLong
        case needMoreData
    }

    private enum State: Sendable {
        case line
        case literal(remaining: Int)
        /// Throwing away the rest of an over-long line; a command's remains after it are dropped too.
        case discardingLine
        case discardingLiteral(remaining: UInt64)
    }

    public let limits: IMAPLimits
    private var input: [UInt8] = []
    private var readIndex = 0
    /// Bytes after `readIndex` already known to hold no LF.
    private var scanned = 0
    private var state = State.line
    /// The command being assembled.
    private var command: [UInt8] = []
    private var literals = 0
    private var isAppend = false

    public init(limits: IMAPLimits = IMAPLimits()) {
        self.limits = limits
    }

    public var bufferedByteCount: Int { input.count - readIndex }

    /// True between the lines of a command (a literal is expected or being read).
    public var isInsideCommand: Bool { !command.isEmpty }

    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        input.append(contentsOf: bytes)
    }

    /// Gives back the input buffer's capacity when nothing is buffered (an idle connection
    /// need not keep what a big command grew).
    public mutating func releaseMemory() {
        guard readIndex == input.count, command.isEmpty else { return }
        input = []
        readIndex = 0
        scanned = 0
    }

    /// Drops everything buffered (STARTTLS: bytes sent in the clear after it are never executed).
    public mutating func discardBuffered() {
        input.removeAll(keepingCapacity: false)
        readIndex = 0
        scanned = 0
        state = .line
        command = []
        literals = 0
    }

    public mutating func next() -> Event {
        defer { compact() }
        while true {
            switch state {
            case .literal(let remaining):
                let available = input.count - readIndex
                guard available > 0 else { return .needMoreData }
                let take = min(available, remaining)
                command.append(contentsOf: input[readIndex ..< readIndex + take])
                readIndex += take
                if take == remaining {
                    state = .line
                } else {
                    state = .literal(remaining: remaining - take)
                    return .needMoreData
                }
            case .discardingLiteral(let remaining):
                let available = UInt64(input.count - readIndex)
                guard available > 0 else { return .needMoreData }
                let take = min(available, remaining)
                readIndex += Int(take)
                if take == remaining {
                    state = .discardingLine
                } else {
                    state = .discardingLiteral(remaining: remaining - take)
                    return .needMoreData
                }
            case .discardingLine:
                guard let lf = findLF() else {
                    readIndex = input.count
                    scanned = 0
                    return .needMoreData
                }
                readIndex = lf + 1
                scanned = 0
                state = .line
                command = []
                literals = 0
            case .line:
                guard let lf = findLF() else {
                    if input.count - readIndex > limits.maxLineLength + 2 {
                        let tag = currentTag(lineStart: readIndex)
                        state = .discardingLine
                        return .lineTooLong(tag: tag)
                    }
                    return .needMoreData
                }
                var end = lf
                if end > readIndex, input[end - 1] == 0x0D { end -= 1 }
                if end - readIndex > limits.maxLineLength {
                    let tag = currentTag(lineStart: readIndex)
                    readIndex = lf + 1
                    scanned = 0
                    command = []
                    literals = 0
                    return .lineTooLong(tag: tag)
                }
                let firstSegment = command.isEmpty
                command.append(contentsOf: input[readIndex ..< end])
                command.append(contentsOf: [0x0D, 0x0A])
                readIndex = lf + 1
                scanned = 0
                if firstSegment { isAppend = Self.isAppendCommand(command) }

                guard let marker = Self.literalMarker(command, end: command.count - 2) else {
                    let whole = command
                    command = []
                    literals = 0
                    return .command(whole)
                }
                literals += 1
                let tag = Self.tag(of: command)
                let limit = isAppend ? limits.maxMessageSize : limits.maxLiteralSize
                if marker.size > UInt64(limit) {
                    command = []
                    literals = 0
                    if marker.synchronizing { return .literalTooLarge(tag: tag, size: marker.size) }
                    if marker.size > UInt64(limits.maxDiscardedLiteral) {
                        return .fatal("literal of \(marker.size) octets is too large")
                    }
                    state = .discardingLiteral(remaining: marker.size)
                    return .literalTooLarge(tag: tag, size: marker.size)
                }
                if literals > limits.maxLiteralsPerCommand || command.count + Int(marker.size) > limits.maxCommandSize {
                    command = []
                    literals = 0
                    if marker.synchronizing { return .commandTooLarge(tag: tag) }
                    state = .discardingLiteral(remaining: marker.size)
                    return .commandTooLarge(tag: tag)
                }
                state = .literal(remaining: Int(marker.size))
                if marker.synchronizing { return .continuationRequest }
            }
        }
    }

    /// One raw line, for the exchanges that are not commands: AUTHENTICATE's responses
    /// (RFC 9051 §6.2.2) and IDLE's DONE (RFC 2177). The final CRLF is stripped.
    public mutating func nextLine() -> Line {
        defer { compact() }
        if case .discardingLine = state {
            guard let lf = findLF() else { readIndex = input.count; scanned = 0; return .needMoreData }
            readIndex = lf + 1
            scanned = 0
            state = .line
        }
        guard let lf = findLF() else {
            if input.count - readIndex > limits.maxLineLength + 2 {
                state = .discardingLine
                return .tooLong
            }
            return .needMoreData
        }
        var end = lf
        if end > readIndex, input[end - 1] == 0x0D { end -= 1 }
        let line = Array(input[readIndex ..< end])
        readIndex = lf + 1
        scanned = 0
        return line.count > limits.maxLineLength ? .tooLong : .line(line)
    }

    // MARK: Helpers

    private mutating func findLF() -> Int? {
        var i = readIndex + scanned
        while i < input.count {
            if input[i] == 0x0A { return i }
            i += 1
        }
        scanned = input.count - readIndex
        return nil
    }

    private mutating func compact() {
        if readIndex > 0, readIndex == input.count {
            input.removeAll(keepingCapacity: input.count <= 64 * 1024)
            readIndex = 0
        } else if readIndex > 64 * 1024, readIndex * 2 > input.count {
            input.removeFirst(readIndex)
            readIndex = 0
        }
    }

    private func currentTag(lineStart: Int) -> String? {
        if !command.isEmpty { return Self.tag(of: command) }
        let end = min(input.count, lineStart + 128)
        return Self.tag(of: Array(input[lineStart ..< end]))
    }

    /// The tag of a command's first line, if it looks like one (RFC 9051 §9 `tag`).
    static func tag(of bytes: [UInt8]) -> String? {
        var end = 0
        while end < bytes.count, end < 64, IMAPGrammar.isAStringChar(bytes[end]), bytes[end] != UInt8(ascii: "+") { end += 1 }
        guard end > 0, end < bytes.count, bytes[end] == 0x20 else { return nil }
        return String(decoding: bytes[0 ..< end], as: UTF8.self)
    }

    /// Whether the first line is `tag APPEND …`: its literals may be as large as a message.
    static func isAppendCommand(_ bytes: [UInt8]) -> Bool {
        guard let space = bytes.firstIndex(of: 0x20) else { return false }
        let word = bytes[(space + 1)...].prefix(7)
        return word.count == 7 && String(decoding: word, as: UTF8.self).uppercased() == "APPEND "
    }

    /// `{n}`, `{n+}`, `~{n}`, `~{n+}` at the end of a line (before `end`).
    static func literalMarker(_ bytes: [UInt8], end: Int) -> (size: UInt64, synchronizing: Bool)? {
        var i = end - 1
        guard i >= 0, bytes[i] == UInt8(ascii: "}") else { return nil }
        i -= 1
        var synchronizing = true
        if i >= 0, bytes[i] == UInt8(ascii: "+") { synchronizing = false; i -= 1 }
        let digitsEnd = i + 1
        while i >= 0, bytes[i] >= 0x30, bytes[i] <= 0x39 { i -= 1 }
        let digitsStart = i + 1
        guard digitsEnd > digitsStart, i >= 0, bytes[i] == UInt8(ascii: "{") else { return nil }
        // RFC 9051 §9: number is at most 2^32-1 (number64 for literal8 sizes); more digits than
        // that are simply "too large".
        if digitsEnd - digitsStart > 19 { return (UInt64.max, synchronizing) }
        var size: UInt64 = 0
        for d in bytes[digitsStart ..< digitsEnd] { size = size * 10 + UInt64(d - 0x30) }
        return (size, synchronizing)
    }
}
