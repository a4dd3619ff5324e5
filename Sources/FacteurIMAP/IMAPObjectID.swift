// OBJECTID (RFC 8474): identifiers that survive renames and moves, so that clients recognise a
// mailbox or a message they already have instead of downloading it again.
//
// MAILBOXID: the mailbox row's id, which is never reused and does not change on RENAME.
// EMAILID: derived from the content-addressed blob, so a COPY or MOVE keeps it (§5.1 requires
// that), and two byte-identical messages share it (which §5.1 allows).
// THREADID: NIL — threads are computed on request (THREAD), not tracked per message.

import FacteurStore

enum IMAPObjectID {
    /// objectid = 1*255(ALPHA / DIGIT / "_" / "-")
    static func mailbox(_ mailbox: MailboxRecord) -> String { "M\(mailbox.id)" }

    static func email(_ record: MessageRecord) -> String {
        let safe = record.blobID.unicodeScalars.filter {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "-" || $0 == "_"
        }
        return "E" + String(String.UnicodeScalarView(safe.prefix(40)))
    }
}
