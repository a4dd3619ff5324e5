#!/usr/bin/env python3
"""A light, seeded fuzzer for a live Facteur SMTP listener.

Sends --count command lines built from RFC 5321/1870/2920/3030/6531 commands and
mutations of them (flipped and inserted bytes, NULs, invalid UTF-8, bare CR/LF,
overlong lines, absurd numbers, broken addresses), answering 354 with a random
body, reconnecting after 221/421 or a dropped connection. Fails (exit 1) when a
reply is not a syntactically valid SMTP reply (RFC 5321 §4.2), or when at the end
a fresh connection does not get a 220 greeting and a 250 to NOOP.

Prints one JSON line with counters. Same seed, same inputs.
"""

import argparse
import json
import random
import socket
import sys

from smtpwire import ProtocolError, SMTPWire, expect

BASE = [
    b"EHLO fuzz.test", b"HELO fuzz.test", b"EHLO [127.0.0.1]", b"EHLO",
    b"MAIL FROM:<fuzz@e2e.test>", b"MAIL FROM:<>", b"MAIL FROM:<fuzz@e2e.test> SIZE=1000",
    b"MAIL FROM:<fuzz@e2e.test> BODY=8BITMIME SMTPUTF8", b"MAIL FROM:<fuzz@e2e.test> RET=FULL ENVID=x",
    b"MAIL FROM:<\"quoted local\"@e2e.test>", b"MAIL FROM:<@a,@b:user@e2e.test>",
    b"RCPT TO:<admin@localhost>", b"RCPT TO:<Admin@LOCALHOST>", b"RCPT TO:<postmaster>",
    b"RCPT TO:<nobody@localhost>", b"RCPT TO:<x@example.com>", b"RCPT TO:<admin@localhost> NOTIFY=NEVER",
    b"RCPT TO:<admin@[127.0.0.1]>", b"RCPT TO:<\"a\\\"b\"@localhost>",
    b"DATA", b"RSET", b"NOOP", b"NOOP with argument", b"VRFY admin", b"EXPN list", b"HELP", b"HELP DATA",
    b"AUTH PLAIN AGFkbWluAHBhc3M=", b"AUTH LOGIN", b"ETRN localhost", b"TURN", b"XCLIENT ADDR=1.2.3.4",
    b"BDAT 0", b"BDAT abc", b"BDAT -1", b"BDAT 1 FIRST", b"BDAT 18446744073709551616 LAST",
    b"BDAT 99999999999999999999999999",
]
SPECIAL = [b"\x00", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\r", b"\n", b"\t", b" ", b"<", b">", b":", b"@",
           b"\"", b"\\", b"=", b"%", b"\xe2\x80\xae", b"."]


def mutate(rng, line):
    line = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randint(0, len(line))
        if op == 0 and line:
            del line[min(pos, len(line) - 1)]
        elif op == 1:
            line[pos:pos] = rng.choice(SPECIAL)
        elif op == 2 and line:
            i = min(pos, len(line) - 1)
            line[i] ^= 1 << rng.randrange(8)
        elif op == 3:
            line[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4:
            line = bytearray(line.lower() if rng.random() < 0.5 else line.upper())
        elif op == 5:
            line[pos:pos] = b"A" * rng.choice([64, 255, 513, 1001, 4096, 20000])
        elif op == 6:
            line[pos:pos] = b" SIZE=" + str(rng.choice([0, -1, 2**31, 2**63, 10**30])).encode()
        elif op == 7:
            line[pos:pos] = b"<" * rng.randint(1, 50)
        else:
            line += b" " + bytes(rng.choice(BASE))
    return bytes(line)


def random_body(rng):
    parts = []
    for _ in range(rng.randint(0, 30)):
        kind = rng.randrange(5)
        if kind == 0:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))))
        elif kind == 1:
            parts.append(b"Header-%d: value\r\n" % rng.randrange(1000))
        elif kind == 2:
            parts.append(rng.choice([b"..\r\n", b".x\r\n", b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n"]))
        elif kind == 3:
            parts.append(b"y" * rng.choice([10, 998, 1000, 5000]) + b"\r\n")
        else:
            parts.append("ünïcödé ✉\r\n".encode())
    body = b"".join(parts)
    # Keep the conversation in step: the only end of data is the one we send.
    while b"\r\n.\r\n" in body:
        body = body.replace(b"\r\n.\r\n", b"\r\n..\r\n")
    if body.startswith(b".\r\n"):
        body = b"." + body
    return body + b"\r\n.\r\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=1500)
    p.add_argument("--reply-timeout", type=float, default=5.0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    stats = {"seed": args.seed, "commands": 0, "replies": 0, "connections": 0, "dropped": 0,
             "stalled": 0, "data_bodies": 0, "codes": {}}
    w = None
    try:
        for i in range(args.count):
            if w is None:
                w = SMTPWire(args.host, args.port, timeout=args.reply_timeout)
                stats["connections"] += 1
                try:
                    w.greeting()
                except (EOFError, ConnectionResetError):
                    raise AssertionError("no greeting on connection %d" % stats["connections"])
            if rng.random() < 0.08:
                # A well-formed transaction now and then, so that message data gets fuzzed too:
                # random bodies through DATA, random chunks through BDAT (RFC 3030).
                stats["commands"] += 1
                try:
                    ok = True
                    for command in (b"EHLO fuzz.test", b"MAIL FROM:<fuzz@e2e.test>", b"RCPT TO:<admin@localhost>"):
                        r = w.cmd(command)
                        stats["replies"] += 1
                        ok = ok and r.code == 250
                    if not ok:
                        w.cmd(b"RSET")
                        continue
                    if rng.random() < 0.5:
                        r = w.cmd(b"DATA")
                        stats["replies"] += 1
                        if r.code == 354:
                            stats["data_bodies"] += 1
                            w.send(random_body(rng))
                            r = w.read_reply()
                            stats["replies"] += 1
                    else:
                        for last in range(rng.randint(1, 3), -1, -1):
                            chunk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000)))
                            w.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last == 0 else b"") + chunk)
                            r = w.read_reply()
                            stats["replies"] += 1
                            if r.code != 250:
                                break
                        stats["data_bodies"] += 1
                    stats["codes"][str(r.code)] = stats["codes"].get(str(r.code), 0) + 1
                except socket.timeout:
                    stats["stalled"] += 1
                    w.close()
                    w = None
                except (EOFError, ConnectionResetError, BrokenPipeError):
                    stats["dropped"] += 1
                    w.close()
                    w = None
                continue
            base = rng.choice(BASE)
            line = mutate(rng, base) if rng.random() < 0.7 else base
            end = rng.choice([b"\r\n"] * 8 + [b"\n", b"\r\r\n"])
            stats["commands"] += 1
            try:
                w.send(line + end)
                if end == b"\n" or b"\r" in line or b"\n" in line:
                    # Possibly no complete command for the server yet: settle the line.
                    # Possibly several replies (one per line the server saw): take the first,
                    # then whatever follows closely. A late straggler only desynchronises us,
                    # which at worst ends in a stall and a reconnect.
                    w.send(b"\r\n")
                    replies = [w.read_reply()]
                    while True:
                        try:
                            replies.append(w.read_reply(timeout=0.05))
                        except socket.timeout:
                            break
                else:
                    replies = [w.read_reply()]
                for r in replies:
                    stats["replies"] += 1
                    stats["codes"][str(r.code)] = stats["codes"].get(str(r.code), 0) + 1
                last = replies[-1] if replies else None
                if last is None:
                    continue
                if last.code == 354:
                    stats["data_bodies"] += 1
                    w.send(random_body(rng))
                    r = w.read_reply()
                    stats["replies"] += 1
                    stats["codes"][str(r.code)] = stats["codes"].get(str(r.code), 0) + 1
                elif last.code in (221, 421) or (last.code == 220 and line.upper().startswith(b"STARTTLS")):
                    w.close()
                    w = None
            except socket.timeout:
                # e.g. a BDAT size the server believed: it waits for octets we never send.
                stats["stalled"] += 1
                w.close()
                w = None
            except (EOFError, ConnectionResetError, BrokenPipeError):
                stats["dropped"] += 1
                w.close()
                w = None
        if w is not None:
            w.close()
        # The server must still be there and sane.
        w = SMTPWire(args.host, args.port, timeout=10)
        w.greeting()
        expect(w.cmd("EHLO after.fuzz"), 250, what="EHLO after fuzzing")
        expect(w.cmd("NOOP"), 250, what="NOOP after fuzzing")
        expect(w.cmd("QUIT"), 221, what="QUIT after fuzzing")
    except (AssertionError, ProtocolError, OSError, EOFError) as e:
        sys.stderr.write("FAIL: fuzz seed %d after %d commands: %s: %s\n"
                         % (args.seed, stats["commands"], type(e).__name__, e))
        sys.stderr.write(json.dumps(stats) + "\n")
        return 1
    sys.stdout.write(json.dumps(stats) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
