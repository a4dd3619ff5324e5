// POP3 responses (RFC 1939 §3): "+OK"/"-ERR" status lines, RFC 2449 §8 response codes in
// brackets, multi-line responses ending in "." with lines beginning with "." stuffed, and the
// SASL continuation "+ base64" of RFC 5034 §4.

import NIOCore

/// RFC 2449 §8 and RFC 3206 response codes.
public enum POP3ResponseCode: String, Sendable {
    case inUse = "IN-USE"
    case loginDelay = "LOGIN-DELAY"
    case sysTemp = "SYS/TEMP"
    case sysPerm = "SYS/PERM"
    case auth = "AUTH"
}

public enum POP3Response: Equatable, Sendable {
    case ok(String)
    case err(POP3ResponseCode?, String)
    /// "+OK text", then each line (stuffed), then ".".
    case multiline(String, [String])
    /// RFC 5034 §4 server challenge: "+ " and base64 (may be empty).
    case continuation(String)

    public func write(into buffer: inout ByteBuffer) {
        switch self {
        case .ok(let text):
            buffer.writeStaticString("+OK")
            if !text.isEmpty { buffer.writeStaticString(" "); buffer.writeString(text) }
        case .err(let code, let text):
            buffer.writeStaticString("-ERR")
            if let code { buffer.writeStaticString(" ["); buffer.writeString(code.rawValue); buffer.writeStaticString("]") }
            if !text.isEmpty { buffer.writeStaticString(" "); buffer.writeString(text) }
        case .multiline(let text, let lines):
            buffer.writeStaticString("+OK")
            if !text.isEmpty { buffer.writeStaticString(" "); buffer.writeString(text) }
            for line in lines {
                buffer.writeStaticString("\r\n")
                if line.utf8.first == UInt8(ascii: ".") { buffer.writeStaticString(".") }
                buffer.writeString(line)
            }
            buffer.writeStaticString("\r\n.")
        case .continuation(let text):
            buffer.writeStaticString("+ ")
            buffer.writeString(text)
        }
        buffer.writeStaticString("\r\n")
    }

    public var encoded: String {
        var buffer = ByteBuffer()
        write(into: &buffer)
        return String(buffer: buffer)
    }

    public var isOK: Bool {
        switch self {
        case .ok, .multiline, .continuation: return true
        case .err: return false
        }
    }
}
