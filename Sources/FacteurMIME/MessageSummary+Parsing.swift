// Placeholder until the MIME parser lands: builds the summary from the raw bytes.
extension MessageSummary {
    /// Parses `bytes` (a whole RFC 5322 message, CRLF line endings) into its summary. Never fails.
    public init<Bytes: RandomAccessCollection>(parsing bytes: Bytes) where Bytes.Element == UInt8, Bytes.Index == Int {
        let count = bytes.count
        self.init(envelope: Envelope(), body: BodyPart(headerOffset: 0, headerLength: 0, bodyOffset: 0, bodyLength: count))
    }
}
