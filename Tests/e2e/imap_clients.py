#!/usr/bin/env python3
"""End-to-end IMAP interop with third-party client code, against a running `facteur serve`.

  imap_clients.py imapclient --smtp S --imap I --imaps J --user U --password P --cafile CERT
      The `imapclient` package (PyPI; not imaplib): STARTTLS and IMAPS with the server's
      certificate, LIST, SELECT, FETCH ENVELOPE/BODYSTRUCTURE parsed by imapclient's own
      response parser, SEARCH, STORE flags, MOVE (RFC 6851), IDLE (RFC 2177) pushed by SMTP.
  imap_clients.py deliver --smtp S --to U --subject X [--count N]
      N messages over SMTP (subjects X-1 … X-N).
  imap_clients.py state --imap I --user U --password P [--mailbox M]
      The mailbox as the server sees it: [{uid, flags, subject}] as JSON.
  imap_clients.py expunge --imap I --user U --password P --subject X
      Sets \\Deleted on the messages with that subject and EXPUNGEs them.

Prints one JSON object on its last stdout line ("ok": true when every check passed); exits 1
with a `FAIL: …` line on stderr on a wrong answer, 77 when the imapclient package is missing."""

import argparse
import email.utils
import imaplib
import json
import smtplib
import ssl
import sys
import time


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print("ok -", what)


def send(smtp_port, to, subject, body="hello\r\n", extra=b"", message_id=None):
    message_id = message_id or email.utils.make_msgid(domain="example.net")
    message = (b"From: Bob Example <bob@example.net>\r\nTo: " + to.encode() + b"\r\nSubject: " + subject.encode()
               + b"\r\nDate: " + email.utils.formatdate().encode() + b"\r\nMessage-ID: "
               + message_id.encode() + b"\r\n" + extra + b"\r\n" + body.encode())
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
        smtp.sendmail("bob@example.net", [to], message)


def imaplib_login(args):
    conn = imaplib.IMAP4("127.0.0.1", args.imap, timeout=30)
    conn.login(args.user, args.password)
    return conn


def subject_of(header_bytes):
    for line in header_bytes.decode("utf-8", "replace").split("\r\n"):
        if line.lower().startswith("subject:"):
            return line[8:].strip()
    return ""


def cmd_deliver(args):
    for n in range(1, args.count + 1):
        send(args.smtp, args.to, f"{args.subject}-{n}" if args.count > 1 else args.subject)
    print(json.dumps({"ok": True, "sent": args.count}))


def cmd_state(args):
    conn = imaplib_login(args)
    typ, _ = conn.select(args.mailbox, readonly=True)
    check(typ == "OK", f"SELECT {args.mailbox}")
    messages = []
    typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    for item in data:
        if not isinstance(item, tuple):
            continue
        meta = item[0].decode()
        uid = int(meta.split("UID ")[1].split()[0].rstrip(")"))
        flags = meta.split("FLAGS (")[1].split(")")[0].split() if "FLAGS (" in meta else []
        messages.append({"uid": uid, "flags": sorted(flags), "subject": subject_of(item[1])})
    conn.logout()
    print(json.dumps({"ok": True, "messages": messages}))


def cmd_expunge(args):
    conn = imaplib_login(args)
    conn.select("INBOX")
    typ, data = conn.uid("SEARCH", "SUBJECT", f'"{args.subject}"')
    uids = data[0].split()
    check(typ == "OK" and uids, f"the message {args.subject!r} is on the server")
    conn.uid("STORE", b",".join(uids).decode(), "+FLAGS.SILENT", r"(\Deleted)")
    typ, _ = conn.expunge()
    check(typ == "OK", "EXPUNGE")
    conn.logout()
    print(json.dumps({"ok": True, "expunged": len(uids)}))


def cmd_imapclient(args):
    try:
        from imapclient import IMAPClient
    except ImportError:
        print("skip - the imapclient package is not installed (pip install imapclient)")
        sys.exit(77)
    context = ssl.create_default_context(cafile=args.cafile)

    # A multipart message with an attachment and an RFC 2047 subject, for ENVELOPE and BODYSTRUCTURE.
    multipart = ("Content-Type: multipart/mixed; boundary=\"b1\"\r\nMIME-Version: 1.0\r\n"
                 "Cc: Carol <carol@example.com>, dave@example.com\r\nIn-Reply-To: <parent@example.net>\r\n")
    body = ("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
            "--b1\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n")
    send(args.smtp, args.user, "=?utf-8?q?R=C3=A9port?=", body, multipart.encode(), message_id="<report.1@example.net>")
    send(args.smtp, args.user, "plain one")

    # STARTTLS on the plain port.
    c = IMAPClient("127.0.0.1", port=args.imap, ssl=False, timeout=30)
    c.starttls(context)
    check(b"IMAP4REV2" in c.capabilities() or b"IMAP4rev1".upper() in c.capabilities(), "capabilities after STARTTLS")
    c.login(args.user, args.password)
    c.create_folder("Interop")
    names = [name for _flags, _delim, name in c.list_folders()]
    check("INBOX" in names and "Interop" in names, f"LIST shows INBOX and Interop: {names}")
    selected = c.select_folder("INBOX")
    check(selected[b"EXISTS"] == 2, f"SELECT INBOX: 2 messages ({selected.get(b'EXISTS')})")
    uids = c.search(["ALL"])
    check(len(uids) == 2, "SEARCH ALL")
    report_uid, plain_uid = uids

    fetched = c.fetch([report_uid], ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "RFC822.SIZE"])[report_uid]
    envelope = fetched[b"ENVELOPE"]
    check(envelope.subject == b"=?utf-8?q?R=C3=A9port?=", f"ENVELOPE subject kept encoded: {envelope.subject!r}")
    check(envelope.from_[0].name == b"Bob Example" and envelope.from_[0].mailbox == b"bob"
          and envelope.from_[0].host == b"example.net", f"ENVELOPE from: {envelope.from_}")
    check(envelope.sender == envelope.from_ and envelope.reply_to == envelope.from_,
          "ENVELOPE sender and reply-to default to From (RFC 9051 §7.5.2)")
    check([a.mailbox for a in envelope.cc] == [b"carol", b"dave"], f"ENVELOPE cc: {envelope.cc}")
    check(envelope.in_reply_to == b"<parent@example.net>", "ENVELOPE in-reply-to")
    check(envelope.message_id == b"<report.1@example.net>", f"ENVELOPE message-id: {envelope.message_id!r}")
    check(envelope.date is not None, "ENVELOPE date parsed by imapclient")
    structure = fetched[b"BODYSTRUCTURE"]
    check(structure.is_multipart, "BODYSTRUCTURE is multipart")
    parts, subtype = structure[0], structure[1]
    check(subtype.lower() == b"mixed" and len(parts) == 2, f"multipart/mixed with two parts: {structure!r}")
    check(parts[0][0].lower() == b"text" and parts[0][1].lower() == b"plain", "part 1 text/plain")
    check(parts[1][0].lower() == b"application" and parts[1][1].lower() == b"pdf"
          and parts[1][5].lower() == b"base64", "part 2 application/pdf base64")
    check(fetched[b"RFC822.SIZE"] > 0, "RFC822.SIZE")

    check(c.search(["SUBJECT", "plain one"]) == [plain_uid], "SEARCH SUBJECT")
    check(c.search(["UNSEEN"]) == [report_uid, plain_uid], "SEARCH UNSEEN")
    c.add_flags([report_uid], [b"\\Flagged", b"$Important"])
    c.set_flags([plain_uid], [b"\\Seen"])
    flags = c.get_flags([report_uid, plain_uid])
    check(set(flags[report_uid]) == {b"\\Flagged", b"$Important"}, f"STORE +FLAGS: {flags[report_uid]}")
    check(set(flags[plain_uid]) == {b"\\Seen"}, f"STORE FLAGS: {flags[plain_uid]}")
    check(c.search(["FLAGGED"]) == [report_uid], "SEARCH FLAGGED")
    c.remove_flags([report_uid], [b"$Important"])
    check(set(c.get_flags([report_uid])[report_uid]) == {b"\\Flagged"}, "STORE -FLAGS")

    check(c.has_capability("MOVE"), "MOVE is advertised")
    c.move([plain_uid], "Interop")
    check(c.search(["ALL"]) == [report_uid], "MOVE removes the message from INBOX")
    status = c.folder_status("Interop", [b"MESSAGES"])
    check(status[b"MESSAGES"] == 1, "MOVE puts it in Interop")

    # IDLE over IMAPS: an SMTP delivery is pushed as EXISTS within a second.
    idler = IMAPClient("127.0.0.1", port=args.imaps, ssl=True, ssl_context=context, timeout=30)
    idler.login(args.user, args.password)
    idler.select_folder("INBOX")
    idler.idle()
    started = time.time()
    send(args.smtp, args.user, "pushed")
    delivered = time.time()
    responses = idler.idle_check(timeout=5)
    seen = time.time()
    idler.idle_done()
    check((2, b"EXISTS") in responses, f"IDLE pushes EXISTS: {responses}")
    check(seen - delivered < 1.0, f"EXISTS within 1 s of the SMTP 250 ({seen - delivered:.3f} s; SMTP took {delivered - started:.3f} s)")
    idler.logout()
    c.logout()
    print(json.dumps({"ok": True, "idle_push_seconds": round(seen - delivered, 3)}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["imapclient", "deliver", "state", "expunge"])
    parser.add_argument("--smtp", type=int)
    parser.add_argument("--imap", type=int)
    parser.add_argument("--imaps", type=int)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--cafile")
    parser.add_argument("--to")
    parser.add_argument("--subject")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--mailbox", default="INBOX")
    args = parser.parse_args()
    {"imapclient": cmd_imapclient, "deliver": cmd_deliver, "state": cmd_state, "expunge": cmd_expunge}[args.command](args)


if __name__ == "__main__":
    main()
