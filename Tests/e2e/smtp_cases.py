#!/usr/bin/env python3
"""SMTP end-to-end cases against a running Facteur (RFC 5321 and its extensions).

Usage: smtp_cases.py CASE --port PORT [options]

Each case checks the protocol side itself (exit status 1 and a "FAIL: ..." line on
stderr when the server answers wrongly) and prints one JSON object on stdout with
what the caller needs to check the store: the exact message bytes sent (base64,
after dot-unstuffing, i.e. what must be stored after the per-recipient prefix),
the subject to find the message by, and the outcome.
"""

import argparse
import base64
import json
import smtplib
import socket
import ssl
import sys
import time

from smtpwire import (CRLF, ProtocolError, SMTPWire, check, dot_stuff, expect, extensions,
                      filler_lines, make_message, nonce, unverified_context)

CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


def b64(data):
    return base64.b64encode(data).decode("ascii")


def smtp(args):
    s = smtplib.SMTP(args.host, args.port, local_hostname="e2e.test", timeout=30)
    return s


# ---------------------------------------------------------------- EHLO


@case
def ehlo(args):
    """RFC 5321 §4.1.1.1: the extensions Facteur promises on a plaintext loopback session."""
    w = SMTPWire(args.host, args.port)
    w.greeting()
    _, ext = w.ehlo()
    for kw in ("PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES", "CHUNKING", "STARTTLS", "DSN"):
        check(kw in ext, "EHLO does not advertise %s; got %s" % (kw, sorted(ext)))
    size = ext["SIZE"].strip()
    check(size.isdigit() and int(size) > 0, "SIZE needs a positive maximum (RFC 1870 §4), got %r" % size)
    expect(w.cmd("QUIT"), 221, what="QUIT")
    return {"extensions": ext, "size": int(size)}


# ---------------------------------------------------------------- plain delivery


@case
def plain(args):
    """smtplib delivery to one or more recipients; the message must be stored byte for byte."""
    subject = args.subject or "plain-" + nonce()
    msg = make_message(subject, sender=args.sender, to=", ".join(args.to))
    with smtp(args) as s:
        code, _ = s.ehlo()
        check(code == 250, "EHLO failed: %d" % code)
        refused = s.sendmail(args.sender, args.to, msg)
        check(not refused, "recipients refused: %r" % refused)
        reply = s.noop()
        check(reply[0] == 250, "NOOP after delivery: %r" % (reply,))
    return {"subject": subject, "message": b64(msg), "sender": args.sender, "to": args.to}


@case
def reject(args):
    """One RCPT that must be refused with --code/--enhanced; the session goes on afterwards."""
    with smtp(args) as s:
        s.ehlo()
        options = ["SIZE=%d" % args.mail_size] if args.mail_size else []
        code, text = s.mail(args.sender, options)
        check(code == 250, "MAIL FROM:<%s> %s: %d %r" % (args.sender, " ".join(options), code, text))
        code, raw = s.rcpt(args.rcpt)
        refusal = raw.decode("utf-8", "replace")
        check(code == args.code, "RCPT TO:<%s>: expected %d, got %d %s" % (args.rcpt, args.code, code, refusal))
        if args.enhanced:
            check(refusal.startswith(args.enhanced),
                  "RCPT TO:<%s>: expected enhanced code %s, got %d %s" % (args.rcpt, args.enhanced, code, refusal))
        # The refusal is for that recipient only (RFC 5321 §3.3): the transaction is still open.
        subject = "after-reject-" + nonce()
        code, text = s.rcpt("admin@localhost")
        check(code == 250, "RCPT admin@localhost after a refused RCPT: %d %r" % (code, text))
        msg = make_message(subject)
        code, text = s.data(msg)
        check(code == 250, "DATA after a refused RCPT: %d %r" % (code, text))
    return {"code": args.code, "text": refusal, "subject": subject, "message": b64(msg)}


# ---------------------------------------------------------------- STARTTLS (RFC 3207)


@case
def starttls(args):
    subject = "starttls-" + nonce()
    msg = make_message(subject, sender=args.sender, to=", ".join(args.to))
    with smtp(args) as s:
        s.ehlo()
        check(s.has_extn("starttls"), "STARTTLS not advertised")
        code, _ = s.starttls(context=unverified_context())
        check(code == 220, "STARTTLS: %d" % code)
        check(isinstance(s.sock, ssl.SSLSocket), "socket not wrapped in TLS")
        version = s.sock.version()
        s.ehlo()
        # RFC 3207 §4.2: STARTTLS must not be offered again once TLS is on.
        check(not s.has_extn("starttls"), "STARTTLS still advertised inside TLS")
        refused = s.sendmail(args.sender, args.to, msg)
        check(not refused, "recipients refused: %r" % refused)
    return {"subject": subject, "message": b64(msg), "sender": args.sender, "to": args.to, "tls": version}


@case
def starttls_verify(args):
    """The generated certificate verifies against itself for the name `localhost` (RFC 3207, RFC 6125)."""
    ctx = ssl.create_default_context(cafile=args.cafile)
    ctx.check_hostname = True
    with smtp(args) as s:
        s.ehlo()
        code, _ = s.starttls(context=ctx)
        check(code == 220, "STARTTLS: %d" % code)
        peer = s.sock.getpeercert()
        version = s.sock.version()
        check(s.noop()[0] == 250, "NOOP inside TLS")
    names = [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]
    check("localhost" in names, "certificate names %r lack localhost" % names)
    return {"tls": version, "names": names}


@case
def starttls_injection(args):
    """RFC 3207 §5 / CVE-2011-0411: a command sent in the same packet as STARTTLS must not run.

    We write "STARTTLS\\r\\nMAIL FROM:<...>\\r\\n" at once. Acceptable: the server drops
    the connection, or it performs the handshake and the injected MAIL never gets a reply
    (neither in plaintext, which would break the handshake, nor inside TLS)."""
    w = SMTPWire(args.host, args.port)
    w.greeting()
    w.ehlo()
    w.send(b"STARTTLS\r\nMAIL FROM:<injected@e2e.test>\r\n")
    try:
        r = w.read_reply()
    except (EOFError, ConnectionResetError):
        return {"outcome": "dropped-before-220"}
    expect(r, 220, what="STARTTLS")
    if w.buf:
        raise AssertionError("the injected command was answered in plaintext: %r" % bytes(w.buf))
    try:
        w.sock = unverified_context().wrap_socket(w.sock, server_hostname="localhost")
    except ssl.SSLError as e:
        # Garbage before the ServerHello means the injected MAIL was answered in clear.
        if "WRONG_VERSION_NUMBER" in str(e) or "record layer" in str(e) or "packet length" in str(e):
            raise AssertionError("TLS handshake broken by plaintext bytes (injected command answered?): %s" % e)
        return {"outcome": "dropped-during-handshake", "error": str(e)}
    except (EOFError, ConnectionResetError, BrokenPipeError, OSError) as e:
        return {"outcome": "dropped-during-handshake", "error": str(e)}
    try:
        w.send(b"NOOP\r\n")
        data = w.drain(1.5)
    except (OSError, ssl.SSLError):
        return {"outcome": "dropped-after-handshake"}
    if not data:
        return {"outcome": "dropped-after-handshake"}
    lines = [l for l in data.split(CRLF) if l]
    check(len(lines) == 1 and lines[0].startswith(b"250"),
          "after the handshake, NOOP must get exactly one 250; got %r (the injected MAIL ran?)" % data)
    # And the injected MAIL left no transaction behind: RCPT must be out of sequence.
    w.ehlo()
    r = w.cmd("RCPT TO:<admin@localhost>")
    expect(r, 503, what="RCPT without MAIL after STARTTLS (injected MAIL must not count)")
    return {"outcome": "ignored"}


# ---------------------------------------------------------------- PIPELINING (RFC 2920)


@case
def pipelining(args):
    subject = "pipelining-" + nonce()
    msg = make_message(subject, sender=args.sender)
    w = SMTPWire(args.host, args.port)
    w.greeting()
    _, ext = w.ehlo()
    check("PIPELINING" in ext, "PIPELINING not advertised")
    # One write: MAIL, three RCPTs (one unknown), DATA (RFC 2920 §3.1: DATA ends the group).
    w.send(("MAIL FROM:<%s>\r\nRCPT TO:<admin@localhost>\r\nRCPT TO:<nobody-%s@localhost>\r\n"
            "RCPT TO:<someone@example.com>\r\nDATA\r\n" % (args.sender, nonce())).encode())
    expect(w.read_reply(), 250, what="pipelined MAIL")
    expect(w.read_reply(), 250, what="pipelined RCPT admin")
    expect(w.read_reply(), 550, "5.1.1", what="pipelined RCPT unknown user")
    expect(w.read_reply(), 550, "5.7.1", what="pipelined RCPT relay")
    expect(w.read_reply(), 354, what="pipelined DATA")
    w.send(dot_stuff(msg))
    expect(w.read_reply(), 250, what="end of data")
    # A second group: a whole transaction whose DATA fails for lack of valid recipients,
    # then RSET, NOOP, QUIT, all in one write.
    w.send(b"MAIL FROM:<x@e2e.test>\r\nRCPT TO:<nobody@localhost>\r\nDATA\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    expect(w.read_reply(), 250, what="MAIL (2nd group)")
    expect(w.read_reply(), 550, what="RCPT nobody (2nd group)")
    expect(w.read_reply(), (503, 554), what="DATA without valid recipients (2nd group)")
    expect(w.read_reply(), 250, what="RSET (2nd group)")
    expect(w.read_reply(), 250, what="NOOP (2nd group)")
    expect(w.read_reply(), 221, what="QUIT (2nd group)")
    return {"subject": subject, "message": b64(msg), "sender": args.sender}


# ---------------------------------------------------------------- SMTPUTF8 (RFC 6531) / 8BITMIME


@case
def smtputf8(args):
    subject = "utf8-" + nonce() + " Grüße, 你好"
    msg = make_message(subject, sender=args.sender, to=args.to[0],
                       body_lines=["Ça va? 8-bit body, no transfer encoding: ÄÖÜ ß €", "", "日本語"],
                       extra_headers=["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                                      "Content-Transfer-Encoding: 8bit"])
    # RFC 6531 §3.5: a non-ASCII address without the SMTPUTF8 parameter is refused (5.6.7).
    w = SMTPWire(args.host, args.port)
    w.greeting()
    w.ehlo()
    expect(w.cmd("MAIL FROM:<%s>" % args.sender), (550, 553), "5.6.7", what="UTF-8 MAIL FROM without SMTPUTF8")
    expect(w.cmd("MAIL FROM:<ascii@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<%s>" % args.to[0]), (550, 553), "5.6.7", what="UTF-8 RCPT TO without SMTPUTF8")
    w.cmd("QUIT")
    w.close()
    with smtp(args) as s:
        s.ehlo()
        check(s.has_extn("smtputf8"), "SMTPUTF8 not advertised")
        refused = s.sendmail(args.sender, args.to, msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        check(not refused, "recipients refused: %r" % refused)
    return {"subject": subject, "message": b64(msg), "sender": args.sender, "to": args.to}


# ---------------------------------------------------------------- CHUNKING (RFC 3030)


@case
def bdat(args):
    w = SMTPWire(args.host, args.port)
    w.greeting()
    _, ext = w.ehlo()
    check("CHUNKING" in ext, "CHUNKING not advertised")
    # Message 1: lines that DATA would have to stuff, a lone "." line, and a CRLF split
    # across two chunks. BDAT carries octets verbatim: no stuffing, no end marker.
    s1 = "bdat-" + nonce()
    m1 = make_message(s1, body_lines=["first line", ".", "..two dots", ".leading dot", "", "last"])
    cut1 = m1.index(b"\r\n.\r\n") + 1  # between CR and LF
    cut2 = cut1 + 7
    chunks = [m1[:cut1], m1[cut1:cut2], m1[cut2:]]
    w.send(b"MAIL FROM:<bdat@e2e.test>\r\nRCPT TO:<admin@localhost>\r\n")
    expect(w.read_reply(), 250, what="MAIL")
    expect(w.read_reply(), 250, what="RCPT")
    # RFC 3030 §4.2: BDAT commands may be pipelined; send all chunks in one write.
    wire = b""
    for i, c in enumerate(chunks):
        last = " LAST" if i == len(chunks) - 1 else ""
        wire += b"BDAT %d%s\r\n" % (len(c), last.encode()) + c
    w.send(wire)
    for i in range(len(chunks)):
        expect(w.read_reply(), 250, what="BDAT chunk %d" % (i + 1))
    # Message 2: data chunk, then an empty "BDAT 0 LAST".
    s2 = "bdat0-" + nonce()
    m2 = make_message(s2)
    w.send(b"MAIL FROM:<bdat@e2e.test>\r\nRCPT TO:<admin@localhost>\r\nBDAT %d\r\n" % len(m2) + m2 + b"BDAT 0 LAST\r\n")
    expect(w.read_reply(), 250, what="MAIL (2nd)")
    expect(w.read_reply(), 250, what="RCPT (2nd)")
    expect(w.read_reply(), 250, what="BDAT data (2nd)")
    expect(w.read_reply(), 250, what="BDAT 0 LAST (2nd)")
    # RFC 3030 §2: DATA is refused inside a BDAT transaction.
    w.send(b"MAIL FROM:<bdat@e2e.test>\r\nRCPT TO:<admin@localhost>\r\nBDAT 4\r\nabc\nDATA\r\n")
    expect(w.read_reply(), 250, what="MAIL (3rd)")
    expect(w.read_reply(), 250, what="RCPT (3rd)")
    expect(w.read_reply(), 250, what="BDAT 4 (3rd)")
    expect(w.read_reply(), 503, what="DATA after BDAT")
    expect(w.cmd("RSET"), 250, what="RSET")
    expect(w.cmd("QUIT"), 221, what="QUIT")
    return {"messages": [{"subject": s1, "message": b64(m1)}, {"subject": s2, "message": b64(m2)}]}


# ---------------------------------------------------------------- dot-stuffing (RFC 5321 §4.5.2)


@case
def dotstuff(args):
    subject = "dots-" + nonce()
    msg = make_message(subject, body_lines=[".", "..", "...", ".leading", "..double", "middle . dot", ". space",
                                            "", "."])
    w = SMTPWire(args.host, args.port)
    w.greeting()
    w.ehlo()
    expect(w.cmd("MAIL FROM:<dots@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<admin@localhost>"), 250, what="RCPT")
    expect(w.cmd("DATA"), 354, what="DATA")
    w.send(dot_stuff(msg))
    expect(w.read_reply(), 250, what="end of data")
    expect(w.cmd("QUIT"), 221, what="QUIT")
    return {"subject": subject, "message": b64(msg)}


# ---------------------------------------------------------------- bare LF / bare CR in DATA


@case
def bare_lf(args):
    """Facteur's documented policy: bare LF and bare CR in DATA are stored as CRLF.

    Prints both what was sent and the CRLF-normalised form the store must hold."""
    subject = "barelf-" + nonce()
    sent = ("From: a@e2e.test\nTo: admin@localhost\nSubject: %s\n\nline one\nline two\rline three\r\n"
            ".leading dot after LF\nlast line\r\n" % subject).encode()
    expected = sent.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    w = SMTPWire(args.host, args.port)
    w.greeting()
    w.ehlo()
    expect(w.cmd("MAIL FROM:<lf@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<admin@localhost>"), 250, what="RCPT")
    expect(w.cmd("DATA"), 354, what="DATA")
    # The dot-stuffed ".." after a bare LF is unstuffed like any line start.
    w.send(sent.replace(b"\n.leading", b"\n..leading") + b".\r\n")
    expect(w.read_reply(), 250, what="end of data")
    expect(w.cmd("QUIT"), 221, what="QUIT")
    return {"subject": subject, "message": b64(expected)}


# ---------------------------------------------------------------- SMTP smuggling


SMUGGLE_VARIANTS = {
    "lf-dot-crlf": b"\n.\r\n",
    "lf-dot-lf": b"\n.\n",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
}


@case
def smuggling(args):
    """A fake end-of-data followed by a second transaction inside one DATA.

    The server must not see two messages: either it takes everything as one message
    (one 250, the smuggled commands stay text) or it refuses the message. Never a
    reply to the smuggled MAIL/RCPT/DATA."""
    outer = "outer-" + nonce()
    smuggled = "SMUGGLED-" + nonce()
    fake_end = SMUGGLE_VARIANTS[args.variant]
    body = (("From: a@e2e.test\r\nTo: admin@localhost\r\nSubject: %s\r\n\r\nouter body" % outer).encode()
            + fake_end
            + ("MAIL FROM:<evil@e2e.test>\r\nRCPT TO:<admin@localhost>\r\nDATA\r\n"
               "From: evil@e2e.test\r\nSubject: %s\r\n\r\nsmuggled body\r\n" % smuggled).encode())
    w = SMTPWire(args.host, args.port)
    w.greeting()
    w.ehlo()
    expect(w.cmd("MAIL FROM:<a@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<admin@localhost>"), 250, what="RCPT")
    expect(w.cmd("DATA"), 354, what="DATA")
    w.send(body + b".\r\n")
    try:
        first = w.read_reply()
    except (EOFError, ConnectionResetError):
        return {"outcome": "dropped", "outer_subject": outer, "smuggled_subject": smuggled}
    check(first.code in (250, 550, 554, 500, 501), "end of data: unexpected %r" % first)
    # Anything more before we speak means the smuggled commands were executed.
    extra = w.drain(1.0)
    check(extra == b"", "replies to smuggled commands after the end of data: %r" % extra)
    expect(w.cmd("NOOP"), 250, what="NOOP after the message")
    extra = w.drain(0.3)
    check(extra == b"", "more than one reply to NOOP: %r" % extra)
    expect(w.cmd("QUIT"), 221, what="QUIT")
    return {"outcome": "accepted" if first.code == 250 else "rejected", "reply": repr(first),
            "outer_subject": outer, "smuggled_subject": smuggled}


# ---------------------------------------------------------------- SIZE (RFC 1870)


@case
def oversize_declared(args):
    w = SMTPWire(args.host, args.port)
    w.greeting()
    _, ext = w.ehlo()
    limit = int(ext["SIZE"])
    # RFC 1870 §6.1: declared size over the fixed maximum -> 552 (5.3.4, RFC 3463).
    r = w.cmd("MAIL FROM:<big@e2e.test> SIZE=%d" % (limit + 1))
    expect(r, 552, "5.3.4", what="MAIL with SIZE over the maximum")
    # A declared size at the maximum is fine.
    expect(w.cmd("MAIL FROM:<big@e2e.test> SIZE=%d" % limit), 250, what="MAIL with SIZE at the maximum")
    expect(w.cmd("RSET"), 250, what="RSET")
    # A SIZE that does not fit any integer must be refused, not crash (RFC 1870 §5).
    r = w.cmd("MAIL FROM:<big@e2e.test> SIZE=99999999999999999999999999999")
    expect(r, (501, 552, 555), what="MAIL with an absurd SIZE")
    expect(w.cmd("NOOP"), 250, what="NOOP")
    return {"limit": limit}


@case
def oversize_stream(args):
    """More octets than SIZE allows, with no SIZE declared: refused with 552 at the end (RFC 1870 §6.3)."""
    w = SMTPWire(args.host, args.port)
    w.greeting()
    _, ext = w.ehlo()
    limit = int(ext["SIZE"])
    check(limit <= 200 * 1024 * 1024, "SIZE %d too large to test by streaming" % limit)
    subject = "oversize-" + nonce()
    head = make_message(subject, body_lines=[])
    line = b"x" * 998 + CRLF
    expect(w.cmd("MAIL FROM:<big@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<admin@localhost>"), 250, what="RCPT")
    if args.mode == "bdat":
        total = limit + 1024
        try:
            w.send(b"BDAT %d LAST\r\n" % total)
            sent = 0
            block = line * 64
            while sent < total:
                n = min(len(block), total - sent)
                w.send(block[:n])
                sent += n
        except (BrokenPipeError, ConnectionResetError):
            return {"outcome": "closed", "subject": subject, "limit": limit}
    else:
        expect(w.cmd("DATA"), 354, what="DATA")
        try:
            w.send(head)
            sent = len(head)
            block = line * 64
            while sent <= limit + 1024:
                w.send(block)
                sent += len(block)
            w.send(b".\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return {"outcome": "closed", "subject": subject, "limit": limit}
    try:
        r = w.read_reply(timeout=60)
    except (EOFError, ConnectionResetError):
        return {"outcome": "closed", "subject": subject, "limit": limit}
    expect(r, 552, what="end of an oversized message")
    check(r.enhanced in ("5.3.4", "5.2.3", "5.2.2"), "oversized message: enhanced code %r" % r.enhanced)
    # The session is still usable (RFC 1870 §6.3: the transaction is aborted, not the session).
    try:
        expect(w.cmd("NOOP"), 250, what="NOOP after the oversized message")
    except (EOFError, ConnectionResetError):
        pass
    return {"outcome": "refused", "subject": subject, "limit": limit, "reply": repr(r)}


# ---------------------------------------------------------------- DSN parameters (RFC 3461)


@case
def dsn(args):
    """DSN is advertised: RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT are accepted when well
    formed, and malformed values get 501 5.5.4 (RFC 3461 §4, RFC 3463). No message is sent."""
    w = SMTPWire(args.host, args.port)
    w.greeting()
    _, ext = w.ehlo()
    check("DSN" in ext, "EHLO does not advertise DSN; got %s" % sorted(ext))
    expect(w.cmd("MAIL FROM:<a@e2e.test> RET=FULL ENVID=abc+2Bd"), 250, what="MAIL RET= ENVID=")
    expect(w.cmd("RCPT TO:<admin@localhost> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;admin@localhost"), 250,
           what="RCPT NOTIFY= ORCPT=")
    expect(w.cmd("RSET"), 250, what="RSET")
    expect(w.cmd("MAIL FROM:<a@e2e.test> RET=BODY"), 501, "5.5.4", what="MAIL RET=BODY")
    expect(w.cmd("MAIL FROM:<a@e2e.test> ENVID=a+zz"), 501, "5.5.4", what="MAIL ENVID= bad xtext")
    expect(w.cmd("MAIL FROM:<a@e2e.test> ENVID=" + "x" * 101), 501, "5.5.4", what="MAIL ENVID= too long")
    expect(w.cmd("MAIL FROM:<a@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<admin@localhost> NOTIFY=NEVER,SUCCESS"), 501, "5.5.4", what="RCPT NOTIFY=NEVER,SUCCESS")
    expect(w.cmd("RCPT TO:<admin@localhost> ORCPT=admin@localhost"), 501, "5.5.4", what="RCPT ORCPT= without type")
    expect(w.cmd("RCPT TO:<admin@localhost> NOTIFY=NEVER"), 250, what="RCPT NOTIFY=NEVER")
    expect(w.cmd("QUIT"), 221, what="QUIT")
    return {"checked": 10}


# ---------------------------------------------------------------- disconnect mid-transfer


@case
def disconnect(args):
    """The client goes away in the middle of DATA/BDAT: nothing may be stored."""
    subject = "cut-" + nonce()
    msg = make_message(subject, body_lines=filler_lines(args.bytes, "cut"))
    w = SMTPWire(args.host, args.port)
    w.greeting()
    w.ehlo()
    expect(w.cmd("MAIL FROM:<cut@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<admin@localhost>"), 250, what="RCPT")
    half = msg[: len(msg) // 2]
    if args.mode.startswith("bdat"):
        w.send(b"BDAT %d LAST\r\n" % len(msg) + half)
    else:
        expect(w.cmd("DATA"), 354, what="DATA")
        w.send(half)
    time.sleep(0.2)
    if args.mode.endswith("rst"):
        w.abort()
    else:
        w.close()
    # The server is still there for the next client.
    time.sleep(0.3)
    w2 = SMTPWire(args.host, args.port)
    w2.greeting()
    expect(w2.cmd("NOOP"), 250, what="NOOP on a new connection")
    w2.cmd("QUIT")
    return {"subject": subject}


# ---------------------------------------------------------------- graceful shutdown


@case
def sigterm_mid_data(args):
    """SIGTERM arrives while a message is half sent: the session may finish it (250), then
    the server says goodbye (421 4.3.2 or close) and exits; new connections are refused."""
    import os
    import signal
    subject = "sigterm-" + nonce()
    msg = make_message(subject, body_lines=filler_lines(20000, "term"))
    wire = dot_stuff(msg)
    w = SMTPWire(args.host, args.port)
    w.greeting()
    w.ehlo()
    expect(w.cmd("MAIL FROM:<term@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<admin@localhost>"), 250, what="RCPT")
    expect(w.cmd("DATA"), 354, what="DATA")
    w.send(wire[: len(wire) // 2])
    time.sleep(0.2)
    os.kill(args.pid, signal.SIGTERM)
    time.sleep(1.0)
    # The listener is closed once shutdown has begun.
    refused = False
    try:
        probe = SMTPWire(args.host, args.port, timeout=3)
        try:
            r = probe.read_reply(timeout=3)
            refused = r.code == 421
        except (EOFError, ConnectionResetError, socket.timeout):
            refused = True
        probe.close()
    except (ConnectionRefusedError, OSError):
        refused = True
    w.send(wire[len(wire) // 2:])
    expect(w.read_reply(timeout=30), 250, what="end of data after SIGTERM")
    try:
        after = w.read_reply(timeout=10)
        check(after.code == 421, "after the last message of a draining session: %r" % after)
    except (EOFError, ConnectionResetError):
        pass
    return {"subject": subject, "message": b64(msg), "new_connection_refused": refused}


@case
def sigterm_silent(args):
    """SIGTERM with one idle session and one client gone silent mid-DATA: the idle session
    gets 421 (RFC 5321 §3.8) at once; the silent one is cut after the shutdown grace and
    the server exits. Reports how long the exit took."""
    import os
    import signal
    idle = SMTPWire(args.host, args.port)
    idle.greeting()
    idle.ehlo()
    silent = SMTPWire(args.host, args.port)
    silent.greeting()
    silent.ehlo()
    subject = "silent-" + nonce()
    expect(silent.cmd("MAIL FROM:<silent@e2e.test>"), 250, what="MAIL")
    expect(silent.cmd("RCPT TO:<admin@localhost>"), 250, what="RCPT")
    expect(silent.cmd("DATA"), 354, what="DATA")
    silent.send(("Subject: %s\r\n\r\nhalf a message" % subject).encode())
    start = time.monotonic()
    os.kill(args.pid, signal.SIGTERM)
    try:
        idle_reply = repr(idle.read_reply(timeout=10))
    except (EOFError, ConnectionResetError) as e:
        idle_reply = "closed without a reply"
    while time.monotonic() - start < 120:
        try:
            os.kill(args.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return {"idle_reply": idle_reply, "exit_seconds": time.monotonic() - start, "subject": subject}


# ---------------------------------------------------------------- strace / crash helpers


@case
def deliver_marked(args):
    """Delivers one message of about --bytes octets whose every body line carries --marker.

    Prints the local port so that a trace of the server can find this connection."""
    subject = "marked-" + args.marker
    msg = make_message(subject, body_lines=filler_lines(args.bytes, args.marker))
    w = SMTPWire(args.host, args.port)
    w.greeting()
    w.ehlo()
    expect(w.cmd("MAIL FROM:<trace@e2e.test>"), 250, what="MAIL")
    expect(w.cmd("RCPT TO:<admin@localhost>"), 250, what="RCPT")
    expect(w.cmd("DATA"), 354, what="DATA")
    w.send(dot_stuff(msg))
    expect(w.read_reply(timeout=120), 250, what="end of data")
    expect(w.cmd("QUIT"), 221, what="QUIT")
    return {"subject": subject, "client_port": w.local_port, "size": len(msg)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sender", default="tester@e2e.test")
    p.add_argument("--to", action="append")
    p.add_argument("--subject")
    p.add_argument("--rcpt")
    p.add_argument("--code", type=int, default=550)
    p.add_argument("--enhanced")
    p.add_argument("--mail-size", type=int, default=0)
    p.add_argument("--variant", choices=sorted(SMUGGLE_VARIANTS), default="lf-dot-crlf")
    p.add_argument("--mode", default="data")
    p.add_argument("--bytes", type=int, default=10240)
    p.add_argument("--marker", default="MARK" + nonce())
    p.add_argument("--pid", type=int, default=0)
    p.add_argument("--cafile")
    args = p.parse_args()
    if not args.to:
        args.to = ["admin@localhost"]
    try:
        result = CASES[args.case](args)
    except (AssertionError, ProtocolError, smtplib.SMTPException, OSError, EOFError) as e:
        sys.stderr.write("FAIL: %s: %s: %s\n" % (args.case, type(e).__name__, e))
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
