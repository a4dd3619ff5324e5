#!/usr/bin/env python3
"""Records Dovecot's `FETCH n (BODYSTRUCTURE ENVELOPE)` for the messages listed in SELECTION,
taken from the shared MIME corpus, into messages/ and responses/ next to this script.

Usage (reference stack running, see /work/shared/reference-stack/README.md):
    python3 record.py [--corpus /work/shared/testdata/mime] [--port 3143] [--user user97@anchor.test]

Each message is copied with its line endings made CRLF (what SMTP delivers and what IMAP
serves), APPENDed to a scratch mailbox of the reference Dovecot (emptied first), and fetched
over a raw socket so the response is kept byte for byte, literals included."""

import argparse
import os
import re
import socket
import sys

SELECTION = [
    # RFC 2822 Appendix A examples (addresses, groups, obsolete syntax)
    *[f"ruby-mail/rfc2822/example{n:02d}.eml" for n in range(1, 15)],
    # RFC 2046/2049/5322/8621 examples
    *[f"mail-parser/rfc/{n:03d}.eml" for n in range(0, 10)],
    # Dovecot's own test inputs
    *[f"mail-parser/thirdparty/{n:03d}.eml" for n in range(0, 10)],
    "mail-parser/malformed/000.eml",
    "mail-parser/malformed/001.eml",
    "mail-parser/malformed/005.eml",
    "mail-parser/malformed/013.eml",
    "mime4j/base64encoded-rfc822message.msg",
    "mime4j/base64encoded-rfc822message-nested.msg",
    "mime4j/multipartdigestnestedemptyparts.msg",
    "mime4j/multipartemptypart.msg",
    "mime4j/missing-inner-boundary.msg",
    "mime4j/simple-attachment.msg",
    "mime4j/russian-headers.msg",
    "mime4j/qp-body.msg",
    "python-email/msg_02.txt",
    "python-email/msg_04.txt",
    "python-email/msg_07.txt",
    "python-email/msg_10.txt",
    "python-email/msg_16.txt",
    "python-email/msg_22.txt",
    "python-email/msg_26.txt",
    "python-email/msg_36.txt",
    "ruby-mail/attachment_emails/attachment_message_rfc822.eml",
    "ruby-mail/attachment_emails/attachment_nonascii_filename.eml",
    "ruby-mail/attachment_emails/attachment_with_encoded_name.eml",
    "ruby-mail/mime_emails/raw_email_with_nested_attachment.eml",
    "ruby-mail/multi_charset/japanese_attachment_long_name.eml",
    "ruby-mail/multipart_report_emails/report_422.eml",
    "ruby-mail/plain_emails/raw_email_reply.eml",
    "ruby-mail/error_emails/empty_group_lists.eml",
    "ruby-mail/rfc6532/utf8_headers.eml",
]

MAILBOX = "FacteurFixtures"


def fixture_name(index, path):
    stem = re.sub(r"[^A-Za-z0-9]+", "-", os.path.splitext(path)[0]).strip("-")
    return f"{index:03d}-{stem}"


def crlf(data):
    """LF and CRLF line ends become CRLF; a bare CR is left alone."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.counter = 0
        self.readline()

    def readline(self):
        line = self.file.readline()
        if not line:
            raise RuntimeError("connection closed")
        return line

    def response(self):
        """One response line with its literals, exactly as received."""
        out = self.readline()
        while True:
            m = re.search(rb"\{(\d+)\}\r\n$", out)
            if not m:
                return out
            out += self.file.read(int(m.group(1)))
            out += self.readline()

    def command(self, text, literal=None):
        self.counter += 1
        tag = f"r{self.counter}".encode()
        if literal is None:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b" {%d}\r\n" % len(literal))
            line = self.readline()
            if not line.startswith(b"+"):
                raise RuntimeError(f"no continuation: {line!r}")
            self.sock.sendall(literal + b"\r\n")
        untagged = []
        while True:
            line = self.response()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text!r}: {line!r}")
                return untagged
            untagged.append(line)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", default="/work/shared/testdata/mime")
    parser.add_argument("--port", type=int, default=3143)
    parser.add_argument("--user", default="user97@anchor.test")
    parser.add_argument("--password", default="pass")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(os.path.join(here, "messages"), exist_ok=True)
    os.makedirs(os.path.join(here, "responses"), exist_ok=True)

    c = Client(args.port)
    c.command(b"LOGIN " + args.user.encode() + b" " + args.password.encode())
    try:
        c.command(b"DELETE " + MAILBOX.encode())
    except RuntimeError:
        pass
    c.command(b"CREATE " + MAILBOX.encode())
    manifest = []
    for index, path in enumerate(SELECTION, start=1):
        with open(os.path.join(args.corpus, path), "rb") as f:
            message = crlf(f.read())
        name = fixture_name(index, path)
        with open(os.path.join(here, "messages", name + ".eml"), "wb") as f:
            f.write(message)
        c.command(b"APPEND " + MAILBOX.encode(), literal=message)
        manifest.append(f"{name}\t{path}")
    c.command(b"SELECT " + MAILBOX.encode())
    for index, path in enumerate(SELECTION, start=1):
        name = fixture_name(index, path)
        untagged = c.command(b"FETCH %d (BODYSTRUCTURE ENVELOPE)" % index)
        fetches = [u for u in untagged if u.startswith(b"* %d FETCH " % index)]
        if len(fetches) != 1:
            raise RuntimeError(f"{name}: {untagged!r}")
        with open(os.path.join(here, "responses", name + ".txt"), "wb") as f:
            f.write(fetches[0])
    c.command(b"LOGOUT")
    with open(os.path.join(here, "manifest.tsv"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print(f"recorded {len(SELECTION)} messages")


if __name__ == "__main__":
    sys.exit(main())
