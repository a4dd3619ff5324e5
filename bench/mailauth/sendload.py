#!/usr/bin/python3
"""bench/mailauth/sendload.py: sends DKIM-signed messages to an SMTP server, several sessions at once.

Called by bench/mailauth/run.sh. bench/smtp-inbound/smtpload.c composes its own unsigned
messages, so it cannot exercise DKIM verification; this sender mirrors its protocol use
(RFC 5321 sessions, MAIL/RCPT/DATA pipelined in one write per RFC 2920 §3.1, the message and
"." in one write, a new session every --per-connection messages) and its key=value output.

Before timing, --distinct messages of --size octets are built and signed with dkimpy
(`--sign ALGORITHM:SELECTOR:KEYFILE`, repeatable; none: unsigned) and then sent in turn; each copy
gets an unsigned `X-Bench-Sequence:` field on top so that no two stored messages are identical.
Traffic goes to 127.0.0.1 only.
"""
import argparse
import itertools
import socket
import sys
import threading
import time

import dkim


def build_messages(options):
    signers = [spec.split(":", 2) for spec in options.sign]
    keys = [(algorithm.encode(), selector.encode(), open(path, "rb").read()) for algorithm, selector, path in signers]
    line = b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrst\r\n"
    messages = []
    for n in range(options.distinct):
        header = ("From: Bench <bench@%s>\r\nTo: user%d@%s\r\nSubject: mailauth bench %06d\r\n"
                  "Message-ID: <%06d.mailauth@%s>\r\nDate: Thu, 27 Nov 2025 10:00:00 +0000\r\n"
                  "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                  % (options.from_domain, n % options.users + 1, options.rcpt_domain, n, n, options.from_domain)).encode()
        body = line * max(1, (options.size - len(header)) // len(line))
        message = header + body
        fields = b""
        for algorithm, selector, key in keys:
            fields += dkim.sign(message, selector, options.from_domain.encode(), key,
                                canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algorithm)
        # RFC 5321 §4.5.2: a line starting with "." gets another one.
        messages.append((n % options.users + 1, (fields + message).replace(b"\r\n.", b"\r\n..")))
    return messages


class Connection:
    def __init__(self, options):
        self.sock = socket.create_connection((options.host, options.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        if self.reply() != 220:
            raise OSError("no 220 greeting")
        self.sock.sendall(b"EHLO %s\r\n" % options.helo.encode())
        if self.reply() != 250:
            raise OSError("EHLO refused")

    def reply(self):
        """One (possibly multiline) reply; its code."""
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if len(line) >= 4 and line[3:4] == b"-":
                    continue
                return int(line[:3]) if line[:3].isdigit() else -1
            chunk = self.sock.recv(65536)
            if not chunk:
                return -1
            self.buffer += chunk

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except OSError:
            pass
        self.sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--time-cap", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--per-connection", type=int, default=100)
    parser.add_argument("--rcpt-domain", default="localhost")
    parser.add_argument("--from-domain", required=True)
    parser.add_argument("--mail-from", required=True)
    parser.add_argument("--helo", required=True)
    parser.add_argument("--sign", action="append", default=[])
    options = parser.parse_args()
    if options.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("loopback only")

    messages = build_messages(options)
    counter = itertools.count()
    lock = threading.Lock()
    latencies = []
    errors = []
    start = time.perf_counter()
    deadline = start + options.time_cap
    cpu_before = time.process_time()

    def client():
        mine, connection, in_connection, last_error = [], None, 0, None
        while True:
            with lock:
                n = next(counter)
            if n >= options.count or time.perf_counter() > deadline:
                break
            user, message = messages[n % len(messages)]
            try:
                if connection is None or in_connection >= options.per_connection:
                    if connection is not None:
                        connection.close()
                    connection, in_connection = Connection(options), 0
                connection.sock.sendall(b"MAIL FROM:<%s> SIZE=%d\r\nRCPT TO:<user%d@%s>\r\nDATA\r\n"
                                        % (options.mail_from.encode(), len(message) + 32, user, options.rcpt_domain.encode()))
                codes = (connection.reply(), connection.reply(), connection.reply())
                if codes != (250, 250, 354):
                    last_error = "MAIL/RCPT/DATA replied %s" % (codes,)
                    if codes[2] == 354:
                        connection.sock.sendall(b".\r\n")
                        connection.reply()
                    connection.sock.sendall(b"RSET\r\n")
                    connection.reply()
                    mine.append(None)
                    continue
                connection.sock.sendall(b"X-Bench-Sequence: %010d\r\n" % n + message + b".\r\n")
                sent = time.perf_counter()
                code = connection.reply()
                if code != 250:
                    last_error = "end of data replied %d" % code
                    mine.append(None)
                    continue
                mine.append(time.perf_counter() - sent)
                in_connection += 1
            except OSError as error:
                last_error = "connection: %s" % error
                mine.append(None)
                connection = None
        if connection is not None:
            connection.close()
        with lock:
            latencies.extend(x for x in mine if x is not None)
            errors.extend([last_error or "?"] * sum(1 for x in mine if x is None))

    threads = [threading.Thread(target=client) for _ in range(options.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    latencies.sort()
    delivered = len(latencies)

    def percentile(p):
        return latencies[int(p * (delivered - 1))] * 1000 if delivered else 0.0

    if errors:
        print("sendload: %d errors, last: %s" % (len(errors), errors[-1]), file=sys.stderr)
    print("clients=%d delivered=%d errors=%d seconds=%.3f msgs_per_s=%.1f p50_ms=%.2f p99_ms=%.2f generator_cpu_s=%.3f"
          % (options.clients, delivered, len(errors), elapsed, delivered / elapsed if elapsed else 0, percentile(0.5),
             percentile(0.99), cpu))
    return 0 if delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
