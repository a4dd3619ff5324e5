"""smtpwire: a tiny raw SMTP client for Facteur's end-to-end tests.

smtplib hides the wire (it dot-stuffs, fixes line endings and never pipelines),
so the cases that are about the wire itself — PIPELINING (RFC 2920), CHUNKING
(RFC 3030), STARTTLS command injection (RFC 3207 §5), SMTP smuggling — talk to
the server through this class, which sends exactly the bytes it is given and
parses replies per RFC 5321 §4.2 (multiline "ddd-", last line "ddd ").
"""

import os
import re
import socket
import ssl
import time

CRLF = b"\r\n"
REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*)$", re.S)
ENHANCED = re.compile(r"^([245]\.[0-9]{1,3}\.[0-9]{1,3})\b")
MAX_REPLY_LINE = 4096  # RFC 5321 §4.5.3.1.5 says 512; be generous, but bounded


class ProtocolError(Exception):
    """The server sent something that is not an SMTP reply."""


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "ddd-" / "ddd ", one per line

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """RFC 2034 enhanced status code of the first line, or None."""
        if not self.lines:
            return None
        m = ENHANCED.match(self.lines[0])
        return m.group(1) if m else None

    def __repr__(self):
        return "%d %s" % (self.code, " / ".join(self.lines))


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def expect(reply, code, enhanced=None, what="reply"):
    """Fails unless `reply` has `code` (an int, or a tuple of ints) and, if given, the enhanced code."""
    codes = code if isinstance(code, tuple) else (code,)
    check(reply.code in codes, "%s: expected %s, got %r" % (what, "/".join(map(str, codes)), reply))
    if enhanced is not None:
        check(reply.enhanced == enhanced, "%s: expected enhanced code %s, got %r" % (what, enhanced, reply))
    return reply


class SMTPWire:
    def __init__(self, host, port, timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.timeout = timeout

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with a TCP RST instead of a FIN (SO_LINGER 0)."""
        import struct
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                if not line.endswith(CRLF):
                    raise ProtocolError("reply line without CRLF: %r" % line)
                return line[:-2]
            if len(self.buf) > MAX_REPLY_LINE:
                raise ProtocolError("reply line longer than %d bytes: %r..." % (MAX_REPLY_LINE, bytes(self.buf[:80])))
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete reply line within the timeout; have %r" % bytes(self.buf[:200]))
            self._fill(left)

    def read_reply(self, timeout=None):
        lines = []
        code = None
        while True:
            raw = self.read_line(timeout)
            m = REPLY_LINE.match(raw)
            if not m and re.match(rb"^[2-5][0-9][0-9]$", raw):
                m = REPLY_LINE.match(raw + b" ")
            if not m:
                raise ProtocolError("malformed reply line: %r" % raw)
            line_code = int(m.group(1))
            if code is not None and line_code != code:
                raise ProtocolError("multiline reply changes code %d -> %d" % (code, line_code))
            code = line_code
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) == b" ":
                return Reply(code, lines)

    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + CRLF)
        return self.read_reply(timeout)

    def drain(self, wait=0.5):
        """Everything the server sends within `wait` seconds (b"" if nothing); EOF returns what was read."""
        out = bytes(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLError):
                return out
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk

    def greeting(self):
        return expect(self.read_reply(), 220, what="greeting")

    def ehlo(self, name="e2e.test"):
        r = expect(self.cmd("EHLO " + name), 250, what="EHLO")
        return r, extensions(r)

    def starttls(self):
        """STARTTLS then a TLS handshake that does not verify the self-signed certificate."""
        r = expect(self.cmd("STARTTLS"), 220, what="STARTTLS")
        check(not self.buf, "bytes after the STARTTLS reply: %r" % bytes(self.buf))
        self.sock = unverified_context().wrap_socket(self.sock, server_hostname="localhost")
        return r


def extensions(ehlo_reply):
    """EHLO keywords (upper case) -> parameter string, from an EHLO reply (RFC 5321 §4.1.1.1)."""
    out = {}
    for line in ehlo_reply.lines[1:]:
        parts = line.split(None, 1)
        if parts:
            out[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
    return out


def unverified_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def nonce():
    return os.urandom(6).hex()


def make_message(subject, body_lines=None, sender="tester@e2e.test", to="admin@localhost",
                 extra_headers=(), message_id=None):
    """An RFC 5322 message with CRLF line endings, ending in CRLF."""
    message_id = message_id or "<%s@e2e.test>" % nonce()
    headers = [
        "From: Tester <%s>" % sender,
        "To: %s" % to,
        "Subject: %s" % subject,
        "Date: Thu, 27 Nov 2025 10:00:00 +0000",
        "Message-ID: %s" % message_id,
    ] + list(extra_headers)
    if body_lines is None:
        body_lines = ["Hello from the end-to-end tests.", "", "-- ", "e2e"]
    text = "\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body_lines) + "\r\n"
    return text.encode("utf-8")


def dot_stuff(message):
    """RFC 5321 §4.5.2: a line starting with '.' gets one more '.'; adds the terminating '.' line."""
    check(message.endswith(CRLF), "dot_stuff needs a CRLF-terminated message")
    lines = message[:-2].split(CRLF)
    stuffed = [(b"." + l) if l.startswith(b".") else l for l in lines]
    return CRLF.join(stuffed) + CRLF + b"." + CRLF


def filler_lines(total_bytes, marker):
    """Body lines (each under 78 octets, each containing `marker`) adding up to about total_bytes."""
    lines = []
    size = 0
    i = 0
    while size < total_bytes:
        line = "%s line %07d abcdefghijklmnopqrstuvwxyz0123456789" % (marker, i)
        lines.append(line)
        size += len(line) + 2
        i += 1
    return lines
