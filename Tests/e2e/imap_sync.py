#!/usr/bin/env python3
"""End-to-end: STARTTLS and IMAPS (with the server's self-signed certificate), CONDSTORE/QRESYNC
(RFC 7162) and AUTHENTICATE SCRAM-SHA-256 against the real
`facteur` binary, driven by Python's imaplib (SCRAM through the `scramp` package when it is
installed; that check is skipped otherwise).
Usage: FACTEUR=.build/debug/facteur python3 Tests/e2e/imap_sync.py"""

import imaplib
import os
import re
import shutil
import ssl
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
                             "--listen", "imaps=127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ports = {}
    deadline = time.time() + 30
    while len(ports) < 2 and time.time() < deadline:
        m = re.match(r"LISTENING (imaps?) \S+:(\d+)", proc.stdout.readline())
        if m:
            ports[m.group(1)] = int(m.group(2))
    assert len(ports) == 2, f"server did not listen: {ports}"
    return proc, ports


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", file=sys.stderr)
        raise AssertionError(what)
    print("ok -", what)


def untagged(conn, name):
    """Pops one kind of untagged response imaplib collected (list of bytes)."""
    return conn.untagged_responses.pop(name, [])


def scram_login(port):
    try:
        import scramp
    except ImportError:
        print("skip - SCRAM-SHA-256 (python3 scramp not installed)")
        return
    conn = imaplib.IMAP4("127.0.0.1", port)
    check("AUTH=SCRAM-SHA-256" in conn.capabilities, "SCRAM-SHA-256 is offered")
    client = scramp.ScramClient(["SCRAM-SHA-256"], ADDRESS, PASSWORD)
    steps = []

    def respond(challenge):
        steps.append(challenge)
        if len(steps) == 1:
            return client.get_client_first()
        if len(steps) == 2:
            client.set_server_first(challenge.decode())
            return client.get_client_final()
        client.set_server_final(challenge.decode())  # raises if the server's signature is wrong
        return b""

    typ, _ = conn.authenticate("SCRAM-SHA-256", respond)
    check(typ == "OK" and len(steps) == 3, "AUTHENTICATE SCRAM-SHA-256, server signature verified by scramp")
    conn.logout()


def unverified():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's certificate is self-signed
    return context


def tls_checks(ports):
    plain = imaplib.IMAP4("127.0.0.1", ports["imap"])
    check("STARTTLS" in plain.capabilities, "STARTTLS offered on the IMAP port")
    typ, _ = plain.starttls(ssl_context=unverified())
    check(typ == "OK", "STARTTLS completes the TLS handshake")
    check("STARTTLS" not in plain.capabilities, "STARTTLS no longer offered after it")
    check(plain.login(ADDRESS, PASSWORD)[0] == "OK", "LOGIN over STARTTLS")
    plain.logout()
    implicit = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=unverified())
    check("STARTTLS" not in implicit.capabilities and "AUTH=PLAIN" in implicit.capabilities,
          "IMAPS greets over TLS, no STARTTLS, PLAIN allowed")
    check(implicit.login(ADDRESS, PASSWORD)[0] == "OK", "LOGIN over IMAPS")
    implicit.logout()


def main():
    data = tempfile.mkdtemp(prefix="facteur-imap-sync-")
    proc, ports = start_server(data)
    port = ports["imap"]
    try:
        tls_checks(ports)
        scram_login(port)

        a = imaplib.IMAP4("127.0.0.1", port)
        check("CONDSTORE" in a.capabilities or "CONDSTORE" in a.capability()[1][0].decode(), "CONDSTORE advertised")
        a.login(ADDRESS, PASSWORD)
        check(b"QRESYNC" in a.capability()[1][0], "QRESYNC advertised")
        for i in range(3):
            msg = f"From: bob@example.net\r\nSubject: sync {i}\r\n\r\nbody {i}\r\n".encode()
            a.append("INBOX", None, None, msg)
        typ, _ = a.select("INBOX (CONDSTORE)")
        check(typ == "OK", "SELECT INBOX (CONDSTORE)")
        uidvalidity = int(untagged(a, "UIDVALIDITY")[-1])
        known = int(untagged(a, "HIGHESTMODSEQ")[-1])
        check(known > 0, f"HIGHESTMODSEQ {known} in SELECT")
        typ, rows = a.fetch("1:*", "(MODSEQ)")
        check(typ == "OK" and all(b"MODSEQ (" in r for r in rows), "FETCH MODSEQ")
        a.logout()

        # Another client changes the mailbox while the first is away.
        b = imaplib.IMAP4("127.0.0.1", port)
        b.login(ADDRESS, PASSWORD)
        b.select("INBOX")
        b.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
        b.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)")
        b.expunge()

        c = imaplib.IMAP4("127.0.0.1", port)
        c.login(ADDRESS, PASSWORD)
        typ, enabled = c._simple_command("ENABLE", "QRESYNC")
        check(typ == "OK" and b"QRESYNC" in b" ".join(untagged(c, "ENABLED")), "ENABLE QRESYNC")
        typ, _ = c.select(f"INBOX (QRESYNC ({uidvalidity} {known}))")
        check(typ == "OK", "SELECT INBOX (QRESYNC (...))")
        check(untagged(c, "VANISHED") == [b"(EARLIER) 3"], "SELECT reports VANISHED (EARLIER) 3")
        fetches = untagged(c, "FETCH")
        check(any(b"UID 2 " in f and b"\\Flagged" in f and b"MODSEQ" in f for f in fetches),
              "SELECT reports the flag change on UID 2 with its MODSEQ")
        check(not any(b"UID 1 " in f for f in fetches), "and nothing for the unchanged UID 1")

        typ, _ = c.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {known} VANISHED)")
        check(typ == "OK" and untagged(c, "VANISHED") == [b"(EARLIER) 3"], "UID FETCH (CHANGEDSINCE VANISHED)")

        typ, data = c.uid("STORE", "1", "(UNCHANGEDSINCE 1)", "+FLAGS", "(\\Seen)")
        # imaplib files the tagged OK's response code with the untagged responses.
        check(typ == "OK" and untagged(c, "MODIFIED") == [b"1"],
              "UID STORE (UNCHANGEDSINCE) on a newer message answers OK [MODIFIED]")
        c.untagged_responses.clear()
        c.uid("STORE", "1", "+FLAGS.SILENT", "(\\Deleted)")
        typ, expunged = c.expunge()
        check(untagged(c, "VANISHED") == [b"1"] and expunged == [None],
              "with QRESYNC, EXPUNGE answers VANISHED 1 and no EXPUNGE")
        c.logout()
        b.logout()
        print("all passed")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
