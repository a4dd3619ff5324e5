#!/usr/bin/env python3
"""End-to-end: the real `facteur` binary on ephemeral loopback ports, driven by Python's imaplib
(and smtplib for the IDLE push). Usage: FACTEUR=.build/debug/facteur python3 Tests/e2e/imap_imaplib.py

Needs the IMAP listener wired into FacteurServer (`--listen imap=127.0.0.1:0`)."""

import imaplib
import os
import re
import select
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

FACTEUR = os.environ.get("FACTEUR", ".build/debug/facteur")
ADDRESS, PASSWORD = "alice@example.org", "correct horse battery"


def run(*args, stdin=None):
    subprocess.run([FACTEUR, *args], input=stdin, check=True, capture_output=True, text=True)


def start_server(data):
    run("domain", "add", "example.org", "--data", data)
    run("account", "add", ADDRESS, "--password-stdin", "--data", data, stdin=PASSWORD + "\n")
    proc = subprocess.Popen([FACTEUR, "serve", "--data", data, "--listen", "imap=127.0.0.1:0",
                             "--listen", "smtp=127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    ports = {}
    deadline = time.time() + 30
    while len(ports) < 2 and time.time() < deadline:
        line = proc.stdout.readline()
        m = re.match(r"LISTENING (\w+) \S+:(\d+)", line)
        if m:
            ports[m.group(1)] = int(m.group(2))
    assert len(ports) == 2, f"server did not listen: {ports}"
    return proc, ports


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok -", what)


def main():
    data = tempfile.mkdtemp(prefix="facteur-imap-e2e-")
    proc, ports = start_server(data)
    try:
        a = imaplib.IMAP4("127.0.0.1", ports["imap"])
        check("IMAP4REV2" in a.capabilities, "greeting advertises IMAP4rev2")
        typ, _ = a.login(ADDRESS, PASSWORD)
        check(typ == "OK", "LOGIN on loopback")
        check(a.create("Projects")[0] == "OK", "CREATE")
        typ, listing = a.list()
        check(any(b'"Projects"' in l or b" Projects" in l for l in listing), "LIST shows the new mailbox")
        message = b"From: bob@example.net\r\nTo: alice@example.org\r\nSubject: e2e\r\n\r\nhello imaplib\r\n"
        typ, resp = a.append("INBOX", r"(\Seen)", imaplib.Time2Internaldate(time.time()), message)
        check(typ == "OK" and b"APPENDUID" in resp[0], "APPEND answers APPENDUID")
        typ, resp = a.select("INBOX")
        check(typ == "OK" and int(resp[0]) == 1, "SELECT INBOX sees one message")
        typ, resp = a.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)")
        check(b"Subject: e2e" in resp[0][1] and b"\\Seen" in resp[0][0], "FETCH header fields and flags")
        typ, resp = a.fetch("1", "(BODY[TEXT])")
        check(resp[0][1] == b"hello imaplib\r\n", "FETCH BODY[TEXT]")
        typ, resp = a.search(None, "SUBJECT", "e2e")
        check(resp[0] == b"1", "SEARCH SUBJECT")
        # imaplib's uid() drops the tagged text; COPYUID is in it (RFC 4315 §3).
        typ, resp = a._simple_command("UID", "COPY", "1", "Projects")
        check(typ == "OK" and b"COPYUID" in resp[0], "UID COPY answers COPYUID")
        check(a.status("Projects", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)"), "STATUS of the copy's mailbox")

        # A second connection sees the first's changes; IDLE is pushed an SMTP delivery.
        b = imaplib.IMAP4("127.0.0.1", ports["imap"])
        b.login(ADDRESS, PASSWORD)
        b.select("INBOX")
        tag = b._new_tag().decode()
        b.send(f"{tag} IDLE\r\n".encode())
        check(b.readline().startswith(b"+"), "IDLE continuation")
        sent = time.time()
        with smtplib.SMTP("127.0.0.1", ports["smtp"]) as smtp:
            smtp.sendmail("bob@example.net", [ADDRESS], b"Subject: pushed\r\n\r\nnew mail\r\n")
        ready, _, _ = select.select([b.sock], [], [], 5)
        line = b.readline() if ready else b""
        check(line.strip() == b"* 2 EXISTS" and time.time() - sent < 1.0 + 0.5, "IDLE pushes a delivery within a second")
        b.send(b"DONE\r\n")
        check(b.readline().startswith(tag.encode() + b" OK"), "DONE ends IDLE")

        a.store("1", "+FLAGS", r"(\Deleted)")
        typ, resp = a.expunge()
        check(typ == "OK" and resp[0] == b"1", "EXPUNGE reports the message")
        typ, resp = b.noop()
        check(any(r == b"1" for r in (b.untagged_responses.get("EXPUNGE") or [])), "the other connection sees the EXPUNGE")
        a.logout()
        b.logout()
        print("all passed")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
