#!/usr/bin/env python3
"""Concurrent delivery burst for the crash-safety test.

--clients threads each deliver messages to --to over their own SMTP session. Before
sending a message, its exact bytes are written to OUTDIR/<subject>.eml; once the
server has answered 250 to the end of data (RFC 5321 §4.1.1.4: the server has taken
responsibility), the subject is appended to OUTDIR/acked.txt (flushed, one line per
message). Every --large-every'th message is about 1 MB (the store keeps those as
files), the others about 10 KB. When the server dies mid-burst the clients stop;
that is expected, so the exit status is 0 unless nothing at all was acknowledged.
"""

import argparse
import json
import os
import sys
import threading

from smtpwire import SMTPWire, dot_stuff, expect, filler_lines, make_message


def client(args, index, lock, acked_file, counters):
    try:
        w = SMTPWire(args.host, args.port, timeout=60)
        w.greeting()
        w.ehlo()
    except Exception as e:  # server already gone
        with lock:
            counters["errors"].append("client %d connect: %s" % (index, e))
        return
    n = 0
    try:
        while n < args.count:
            number = index * args.count + n
            subject = "burst-%d-%05d" % (index, n)
            size = 1024 * 1024 if args.large_every and number % args.large_every == args.large_every - 1 else 10240
            msg = make_message(subject, body_lines=filler_lines(size, subject),
                               message_id="<%s@burst.e2e.test>" % subject)
            with open(os.path.join(args.outdir, subject + ".eml"), "wb") as f:
                f.write(msg)
            # One command at a time: this test is about durability, not PIPELINING.
            expect(w.cmd("MAIL FROM:<burst@e2e.test>"), 250, what="MAIL")
            expect(w.cmd("RCPT TO:<%s>" % args.to), 250, what="RCPT")
            expect(w.cmd("DATA"), 354, what="DATA")
            w.send(dot_stuff(msg))
            expect(w.read_reply(timeout=60), 250, what="end of data")
            with lock:
                acked_file.write(subject + "\n")
                acked_file.flush()
                counters["acked"] += 1
            n += 1
    except Exception as e:
        with lock:
            counters["errors"].append("client %d after %d: %s: %s" % (index, n, type(e).__name__, e))
    finally:
        w.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--count", type=int, default=100, help="messages per client")
    p.add_argument("--large-every", type=int, default=10)
    p.add_argument("--to", default="admin@localhost")
    p.add_argument("--outdir", required=True)
    args = p.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    lock = threading.Lock()
    counters = {"acked": 0, "errors": []}
    with open(os.path.join(args.outdir, "acked.txt"), "a") as acked_file:
        threads = [threading.Thread(target=client, args=(args, i, lock, acked_file, counters))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    sys.stdout.write(json.dumps({"acked": counters["acked"], "errors": counters["errors"][:20]}) + "\n")
    return 0 if counters["acked"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
