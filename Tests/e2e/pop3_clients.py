#!/usr/bin/env python3
"""End-to-end POP3 checks against a running Facteur (RFC 1939, RFC 2449, RFC 2595, RFC 5034, RFC 8314).

Usage: pop3_clients.py CASE --smtp PORT --pop3 PORT --pop3s PORT --user ADDR --password PW --cafile PEM

Cases:
  poplib        every POP3 command through Python's poplib, over STLS and POP3S; messages sent by
                smtplib come back byte-identical (after the per-recipient trace prefix).
  fetchmail     fetchmail over STLS and POP3S, with and without `keep` (Debian package fetchmail).
  getmail       getmail6 over POP3S (and STLS when this getmail6 offers it), with and without delete.
  imap          a message deleted over POP3 (at QUIT) disappears from an IMAP session on INBOX,
                which is told with an untagged EXPUNGE (through the store's change feed).
  mda DIR       (used by fetchmail) stores standard input as a new file in DIR.

Prints one JSON object on its last stdout line. Exit status 0: passed; 77: a tool is missing
(skipped); anything else: failed.
"""

import argparse
import base64
import json
import os
import poplib
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import uuid

SKIP = 77


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def tls_context(cafile):
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = True
    return context


def send_mail(args, subject, body):
    """Sends a CRLF message through Facteur's SMTP; returns the exact bytes sent."""
    message = (
        f"From: Sender <sender@example.net>\r\n"
        f"To: <{args.user}>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4()}@example.net>\r\n"
        f"\r\n"
    ).encode() + body
    with smtplib.SMTP("127.0.0.1", args.smtp, timeout=30) as smtp:
        smtp.sendmail("sender@example.net", [args.user], message)
    return message


def pop3_stls(args):
    client = poplib.POP3("127.0.0.1", args.pop3, timeout=30)
    client.stls(context=tls_context(args.cafile))
    return client


def pop3s(args):
    return poplib.POP3_SSL("127.0.0.1", args.pop3s, timeout=30, context=tls_context(args.cafile))


def login(client, args):
    client.user(args.user)
    client.pass_(args.password)


def empty_maildrop(args):
    client = pop3s(args)
    login(client, args)
    count, _ = client.stat()
    for number in range(1, count + 1):
        client.dele(number)
    client.quit()


def maildrop_count(args):
    client = pop3s(args)
    login(client, args)
    count, _ = client.stat()
    client.quit()
    return count


def joined(lines):
    """poplib strips CRLF and un-stuffs; the message is the lines joined with CRLF."""
    return b"".join(line + b"\r\n" for line in lines)


def case_poplib(args):
    empty_maildrop(args)
    bodies = [
        b"Plain body line.\r\n",
        b".starts with a dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n",
        b"".join(b"line %05d " % i + b"x" * (i % 70) + b"\r\n" for i in range(3000)),
    ]
    sent = [send_mail(args, f"poplib {i}", body) for i, body in enumerate(bodies)]
    time.sleep(0.2)

    # Capabilities before and after STLS (RFC 2449 §5, RFC 2595 §4).
    client = poplib.POP3("127.0.0.1", args.pop3, timeout=30)
    check(client.getwelcome().startswith(b"+OK"), "greeting")
    capa = client.capa()
    for name in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE", "LOGIN-DELAY", "IMPLEMENTATION", "STLS", "SASL"]:
        check(name in capa, f"CAPA before TLS lacks {name}: {capa}")
    client.stls(context=tls_context(args.cafile))
    capa = client.capa()
    check("STLS" not in capa and "USER" in capa and "PLAIN" in capa.get("SASL", []), f"CAPA after STLS: {capa}")
    login(client, args)

    count, octets = client.stat()
    check(count == 3, f"STAT count {count}")
    listing = client.list()[1]
    sizes = {int(n): int(s) for n, s in (entry.split() for entry in listing)}
    check(sum(sizes.values()) == octets, "LIST sizes add up to STAT")
    check(client.list(2).split()[2] == str(sizes[2]).encode(), "LIST 2")
    uidls = {int(n): u for n, u in (entry.split() for entry in client.uidl()[1])}
    check(client.uidl(3).split()[2] == uidls[3], "UIDL 3")

    for number in (1, 2, 3):
        response, lines, _ = client.retr(number)
        retrieved = joined(lines)
        check(response.startswith(b"+OK"), f"RETR {number}: {response!r}")
        check(len(retrieved) == sizes[number], f"RETR {number}: {len(retrieved)} octets, LIST said {sizes[number]}")
        check(retrieved.endswith(sent[number - 1]),
              f"RETR {number} is not the message as sent (after the trace prefix)")
        prefix = retrieved[: len(retrieved) - len(sent[number - 1])]
        check(prefix.startswith(b"Return-Path:") or b"\r\nReceived:" in prefix or prefix.startswith(b"Received:"),
              f"trace prefix: {prefix[:200]!r}")

    _, top_lines, _ = client.top(2, 2)
    top = joined(top_lines)
    check(top.endswith(b"Subject: poplib 1\r\nMessage-ID: " + sent[1].split(b"Message-ID: ")[1].split(b"\r\n")[0]
                       + b"\r\n\r\n.starts with a dot\r\n..two dots\r\n"), f"TOP 2 2: {top[-200:]!r}")
    check(client.noop().startswith(b"+OK"), "NOOP")

    # DELE then RSET undoes it; DELE 1 again and QUIT applies it (UPDATE).
    client.dele(1)
    check(client.stat()[0] == 2, "STAT after DELE")
    try:
        client.retr(1)
        raise Failure("RETR of a deleted message succeeded")
    except poplib.error_proto as error:
        check(str(error).startswith("b'-ERR"), f"RETR deleted: {error}")
    client.rset()
    check(client.stat()[0] == 3, "STAT after RSET")
    client.dele(1)

    # A second session on the same maildrop is refused with [IN-USE] (RFC 2449 §8.1.1).
    other = pop3s(args)
    other.user(args.user)
    try:
        other.pass_(args.password)
        raise Failure("second concurrent session was let in")
    except poplib.error_proto as error:
        check("[IN-USE]" in str(error), f"second session: {error}")
    other.quit()

    check(client.quit().startswith(b"+OK"), "QUIT")

    # Over POP3S: the deletion happened; UIDLs of the others are unchanged; SASL PLAIN works.
    client = pop3s(args)
    plain = base64.b64encode(b"\0" + args.user.encode() + b"\0" + args.password.encode()).decode()
    check(client._shortcmd("AUTH PLAIN " + plain).startswith(b"+OK"), "AUTH PLAIN with initial response")
    check(client.stat()[0] == 2, "one message left deleted")
    after = {int(n): u for n, u in (entry.split() for entry in client.uidl()[1])}
    check(after == {1: uidls[2], 2: uidls[3]}, f"UIDL stable across sessions: {after} vs {uidls}")
    # Bad input gets -ERR and the session goes on.
    for bad in ["BOGUS", "RETR 0", "RETR 99", "TOP 1", "LIST x"]:
        try:
            client._shortcmd(bad)
            raise Failure(f"{bad} accepted")
        except poplib.error_proto:
            pass
    check(client.noop().startswith(b"+OK"), "NOOP after errors")
    # A dropped connection deletes nothing.
    client.dele(1)
    # poplib's file object keeps the descriptor open after sock.close(): shut the TCP connection down.
    client.sock.shutdown(2)
    client.sock.close()
    time.sleep(0.3)
    check(maildrop_count(args) == 2, "dropped connection deleted a message")
    empty_maildrop(args)
    return {"ok": True, "messages": 3}


def case_imap(args):
    import imaplib
    import re
    check(args.imap, "--imap PORT is needed for this case")
    empty_maildrop(args)
    send_mail(args, "kept", b"stays\r\n")
    send_mail(args, "deleted over POP3", b"goes\r\n")
    imap = imaplib.IMAP4("127.0.0.1", args.imap, timeout=30)
    imap.login(args.user, args.password)
    typ, data = imap.select("INBOX")
    check(typ == "OK" and int(data[0]) == 2, f"IMAP SELECT sees 2 messages, got {typ} {data}")
    pop = pop3s(args)
    login(pop, args)
    check(pop.stat()[0] == 2, "POP3 sees the same 2 messages")
    pop.dele(2)
    # DELE takes effect only at QUIT (UPDATE state): IMAP still sees both.
    imap.noop()
    typ, data = imap.search(None, "ALL")
    check(data[0].split() == [b"1", b"2"], f"nothing expunged before QUIT, got {data}")
    pop.quit()
    seen = []
    deadline = time.time() + 5
    while time.time() < deadline:
        typ, _ = imap.noop()
        seen += imap.untagged_responses.pop("EXPUNGE", [])
        if seen:
            break
        time.sleep(0.1)
    check(seen == [b"2"], f"IMAP is told * 2 EXPUNGE, got {seen}")
    typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [part[1] for part in data if isinstance(part, tuple)]
    check(len(subjects) == 1 and b"kept" in subjects[0], f"only the kept message remains, got {subjects}")
    imap.logout()
    return {"ok": True, "case": "imap"}


def tool(name):
    path = shutil.which(name)
    if path is None:
        print(json.dumps({"skipped": f"{name} is not installed (Debian package {name if name != 'getmail' else 'getmail6'})"}))
        sys.exit(SKIP)
    return path


def stored_files(directory):
    found = []
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                found.append(handle.read())
    return found


def case_fetchmail(args):
    fetchmail = tool("fetchmail")
    results = {}
    for mode in ("stls", "pop3s"):
        for keep in (True, False):
            empty_maildrop(args)
            sent = [send_mail(args, f"fetchmail {mode} {keep} {i}", b"Body %d\r\n.dot line\r\n" % i) for i in range(3)]
            work = tempfile.mkdtemp(prefix="facteur-fetchmail-")
            try:
                inbox = os.path.join(work, "inbox")
                os.mkdir(inbox)
                port = args.pop3 if mode == "stls" else args.pop3s
                tls = "ssl" if mode == "pop3s" else "sslproto 'tls1.2+'"
                rc = os.path.join(work, "fetchmailrc")
                with open(rc, "w") as handle:
                    handle.write(
                        f"set no bouncemail\n"
                        f"poll 127.0.0.1 with proto POP3 port {port} uidl\n"
                        f"  user \"{args.user}\" there with password \"{args.password}\" is \"tester\" here\n"
                        f"  options {'keep' if keep else 'nokeep'} {tls} sslcertck sslcertfile \"{args.cafile}\" sslcommonname localhost\n"
                        f"  mda \"{sys.executable} {os.path.abspath(__file__)} mda {inbox}\"\n")
                os.chmod(rc, 0o600)
                command = [fetchmail, "-f", rc, "-i", os.path.join(work, "ids"), "--nodetach", "--nosyslog", "-v"]
                env = dict(os.environ, HOME=work)
                first = subprocess.run(command, capture_output=True, timeout=120, env=env)
                check(first.returncode == 0, f"fetchmail {mode} keep={keep} exit {first.returncode}: {first.stderr.decode()[-2000:]} {first.stdout.decode()[-2000:]}")
                got = stored_files(inbox)
                check(len(got) == 3, f"fetchmail {mode} keep={keep}: {len(got)} messages stored")
                for message in sent:
                    # fetchmail adds its own Received line at the top; the message as sent must follow intact.
                    check(any(m.replace(b"\r\n", b"\n").endswith(message.replace(b"\r\n", b"\n")) for m in got),
                          f"fetchmail {mode}: a message differs")
                left = maildrop_count(args)
                if keep:
                    check(left == 3, f"keep: {left} messages left on the server")
                    second = subprocess.run(command, capture_output=True, timeout=120, env=env)
                    # Exit 1: no new mail — UIDL told fetchmail it has seen them all.
                    check(second.returncode == 1, f"second fetchmail with keep: exit {second.returncode}: {second.stderr.decode()[-1500:]}")
                    check(len(stored_files(inbox)) == 3, "second run fetched again")
                else:
                    check(left == 0, f"nokeep: {left} messages left on the server")
                results[f"{mode}-{'keep' if keep else 'nokeep'}"] = len(got)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    empty_maildrop(args)
    return {"ok": True, "runs": results}


def getmail_supports_stls(getmail):
    """getmail6 (6.18) has no STLS for POP3; look in its own sources in case a later one does."""
    with open(getmail) as handle:
        interpreter = handle.readline()[2:].strip() or sys.executable
    probe = subprocess.run([interpreter, "-c", "import getmailcore, os; print(os.path.dirname(getmailcore.__file__))"],
                           capture_output=True, text=True)
    directory = probe.stdout.strip()
    try:
        source = open(os.path.join(directory, "_retrieverbases.py")).read()
    except OSError:
        return False
    return "stls" in source.lower()


def case_getmail(args):
    getmail = tool("getmail")
    results = {}
    modes = ["pop3s"] + (["stls"] if getmail_supports_stls(getmail) else [])
    for mode in modes:
        for delete in (False, True):
            empty_maildrop(args)
            sent = [send_mail(args, f"getmail {mode} {delete} {i}", b"Body %d\r\n.dot\r\n" % i) for i in range(3)]
            work = tempfile.mkdtemp(prefix="facteur-getmail-")
            try:
                maildir = os.path.join(work, "Maildir")
                for sub in ("cur", "new", "tmp"):
                    os.makedirs(os.path.join(maildir, sub))
                # getmail refuses to deliver as root: deliver as nobody into a folder nobody can write.
                user = ""
                if os.geteuid() == 0:
                    user = "user = nobody\n"
                    os.chmod(work, 0o755)
                    for root, dirs, _ in os.walk(maildir):
                        os.chmod(root, 0o777)
                retriever = "SimplePOP3SSLRetriever" if mode == "pop3s" else "SimplePOP3Retriever"
                extra = "use_starttls = true\n" if mode == "stls" else ""
                port = args.pop3s if mode == "pop3s" else args.pop3
                rc = os.path.join(work, "getmailrc")
                with open(rc, "w") as handle:
                    handle.write(
                        f"[retriever]\ntype = {retriever}\nserver = localhost\nport = {port}\n"
                        f"username = {args.user}\npassword = {args.password}\nca_certs = {args.cafile}\n{extra}"
                        f"[destination]\ntype = Maildir\npath = {maildir}/\n{user}"
                        f"[options]\nread_all = false\ndelete = {'true' if delete else 'false'}\nverbose = 1\n")
                command = [getmail, "--getmaildir", work, "--rcfile", rc]
                run = subprocess.run(command, capture_output=True, timeout=120)
                check(run.returncode == 0, f"getmail {mode} delete={delete} exit {run.returncode}: {run.stderr.decode()[-2000:]} {run.stdout.decode()[-1000:]}")
                got = stored_files(maildir)
                check(len(got) == 3, f"getmail {mode}: {len(got)} messages stored: {run.stdout.decode()[-1000:]}")
                for message in sent:
                    check(any(m.replace(b"\r\n", b"\n").endswith(message.replace(b"\r\n", b"\n")) for m in got),
                          f"getmail {mode}: a message differs")
                left = maildrop_count(args)
                check(left == (0 if delete else 3), f"getmail delete={delete}: {left} left on the server")
                if not delete:
                    again = subprocess.run(command, capture_output=True, timeout=120)
                    check(again.returncode == 0 and len(stored_files(maildir)) == 3,
                          "second getmail run without delete fetched old mail again (UIDL not honoured)")
                results[f"{mode}-{'delete' if delete else 'keep'}"] = len(got)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    empty_maildrop(args)
    return {"ok": True, "runs": results, "stls": "stls" in modes}


def case_mda(directory):
    data = sys.stdin.buffer.read()
    path = os.path.join(directory, f"{time.time_ns()}-{os.getpid()}")
    with open(path, "wb") as handle:
        handle.write(data)
    return 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "mda":
        return case_mda(sys.argv[2])
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["poplib", "fetchmail", "getmail", "imap"])
    parser.add_argument("--imap", type=int)
    parser.add_argument("--smtp", type=int, required=True)
    parser.add_argument("--pop3", type=int, required=True)
    parser.add_argument("--pop3s", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--cafile", required=True)
    args = parser.parse_args()
    cases = {"poplib": case_poplib, "fetchmail": case_fetchmail, "getmail": case_getmail, "imap": case_imap}
    try:
        result = cases[args.case](args)
    except Failure as failure:
        print(json.dumps({"ok": False, "error": str(failure)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
