#!/usr/bin/env python3
"""End-to-end: IMAP COMPRESS=DEFLATE (RFC 4978) against the real `facteur` binary, over plain IMAP
on loopback and over IMAPS. The client side is Python's zlib with raw DEFLATE (wbits=-15) and a
sync flush after each command, as RFC 4978 clients do; every response must inflate to whole lines.
Usage: FACTEUR=.build/debug/facteur python3 Tests/e2e/imap_compress.py"""

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import zlib

FACTEUR = os.environ.get("FACTEUR", ".build/debug/facteur")
ADDRESS, PASSWORD = "alice@example.org", "correct horse battery"


def run(*args, stdin=None):
    subprocess.run([FACTEUR, *args], input=stdin, check=True, capture_output=True, text=True)


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", file=sys.stderr)
        raise AssertionError(what)
    print("ok -", what)


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""
        self.inflater = None
        self.deflater = None

    def recv_line(self, timeout=10):
        deadline = time.time() + timeout
        while b"\r\n" not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError(f"no line; have {self.buffer!r}")
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buffer += self.inflater.decompress(data) if self.inflater else data
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def send(self, text):
        data = text.encode() + b"\r\n"
        if self.deflater:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def command(self, tag, text):
        self.send(f"{tag} {text}")
        lines = []
        while True:
            line = self.recv_line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    def start_compression(self):
        self.inflater = zlib.decompressobj(-15)
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)


def session(sock, label):
    conn = Connection(sock)
    greeting = conn.recv_line()
    check(greeting.startswith(b"* OK"), f"{label}: greeting")
    caps = b" ".join(conn.command("c1", "CAPABILITY"))
    check(b"COMPRESS=DEFLATE" not in caps, f"{label}: COMPRESS is not offered before login")
    conn.command("a1", f'LOGIN "{ADDRESS}" "{PASSWORD}"')
    caps = b" ".join(conn.command("c2", "CAPABILITY"))
    check(b"COMPRESS=DEFLATE" in caps, f"{label}: COMPRESS=DEFLATE offered once logged in")
    check(conn.command("z0", "COMPRESS GZIP")[-1].startswith(b"z0 BAD"), f"{label}: unknown mechanism is BAD")
    reply = conn.command("z1", "COMPRESS DEFLATE")[-1]
    check(reply.startswith(b"z1 OK"), f"{label}: COMPRESS DEFLATE accepted ({reply!r})")
    conn.start_compression()
    again = conn.command("z2", "COMPRESS DEFLATE")[-1]
    check(b"COMPRESSIONACTIVE" in again, f"{label}: a second COMPRESS says COMPRESSIONACTIVE (compressed both ways)")
    lines = conn.command("s1", "SELECT INBOX")
    check(lines[-1].startswith(b"s1 OK"), f"{label}: SELECT over the compressed stream")
    fetched = conn.command("f1", "FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[])")
    bodies = b"\r\n".join(fetched)
    check(fetched[-1].startswith(b"f1 OK") and bodies.count(b"compressible line") >= 300,
          f"{label}: large FETCH arrives whole ({len(bodies)} bytes inflated)")
    # Many pipelined commands in one compressed burst.
    burst = "".join(f"n{i} NOOP\r\n" for i in range(50)).encode()
    conn.sock.sendall(conn.deflater.compress(burst) + conn.deflater.flush(zlib.Z_SYNC_FLUSH))
    seen = 0
    while seen < 50:
        if re.match(rb"n\d+ OK", conn.recv_line()):
            seen += 1
    check(True, f"{label}: 50 pipelined commands answered")
    check(conn.command("l1", "LOGOUT")[-1].startswith(b"l1 OK"), f"{label}: LOGOUT")


def main():
    data = tempfile.mkdtemp(prefix="facteur-compress-")
    proc = None
    try:
        run("domain", "add", "example.org", "--data", data)
        run("account", "add", ADDRESS, "--password-stdin", "--data", data, stdin=PASSWORD + "\n")
        proc = subprocess.Popen([FACTEUR, "serve", "--data", data, "--listen", "imap=127.0.0.1:0",
                                 "--listen", "imaps=127.0.0.1:0", "--listen", "smtp=127.0.0.1:0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ports = {}
        deadline = time.time() + 30
        while len(ports) < 3 and time.time() < deadline:
            m = re.match(r"LISTENING (\w+) \S+:(\d+)", proc.stdout.readline())
            if m:
                ports[m.group(1)] = int(m.group(2))
        check(len(ports) == 3, f"server listening: {ports}")
        import smtplib
        body = "".join(f"compressible line {i}: the quick brown fox\r\n" for i in range(400))
        with smtplib.SMTP("127.0.0.1", ports["smtp"]) as smtp:
            smtp.sendmail("bob@example.net", [ADDRESS], f"Subject: big\r\nFrom: bob@example.net\r\n\r\n{body}")
        session(socket.create_connection(("127.0.0.1", ports["imap"])), "imap")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        tls = context.wrap_socket(socket.create_connection(("127.0.0.1", ports["imaps"])), server_hostname="localhost")
        session(tls, "imaps")
        print("all passed")
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
