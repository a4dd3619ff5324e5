#!/usr/bin/env python3
"""POP3 benchmark (not a test): Facteur against Dovecot's POP3 in the same run.

100 accounts x 100 messages of 10 KB. N concurrent clients each take accounts from a shared list,
log in (USER/PASS), LIST, RETR every message, QUIT. Prints messages/s and the server's CPU time per
message retrieved, from /proc/PID/stat (utime+stime, plus cutime+cstime for Dovecot, whose
per-session processes exit and are reaped by the master), and the Facteur/Dovecot ratios.

Facteur hashes passwords with scrypt (ln=14, r=8, p=2) while the reference Dovecot keeps {PLAIN}
passwords, so one login costs Facteur far more; the script therefore also measures login-only
passes and prints the CPU per message with logins taken out. Facteur remembers successful
password checks for 60 s (like Dovecot's auth_cache), so a second login within a minute skips
scrypt: the script runs a first, cold login-only pass (every login pays scrypt, printed per
login), then a second one right before the retrieval pass, whose logins are therefore as warm as
that second pass's; "without logins" subtracts the second pass.

Usage: sudo bash /work/shared/reference-stack/start.sh   # Dovecot POP3 on 127.0.0.1:3110
       swift build -c release
       python3 bench/pop3/run.py [--facteur .build/release/facteur] [--clients 8] [--skip-dovecot]
"""

import argparse
import multiprocessing
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

ACCOUNTS = 100
MESSAGES = 100
SIZE = 10 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def body(i):
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-benchmark-line\r\n"
    head = (f"From: bench@example.net\r\nTo: many\r\nSubject: bench {i}\r\n"
            f"Message-ID: <bench-{i}-{time.time_ns()}@example.net>\r\n\r\n").encode()
    text = head
    while len(text) < SIZE:
        text += line
    return text[:SIZE - 2] + b"\r\n"


def fill(smtp_port, users):
    """100 messages, each to every account (one SMTP transaction with 100 recipients)."""
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=120) as smtp:
        for i in range(MESSAGES):
            refused = smtp.sendmail("bench@example.net", users, body(i))
            if refused:
                raise SystemExit(f"recipients refused: {refused}")


def cpu_ticks(pids, children=False):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[11..14] are utime, stime, cutime, cstime (stat(5) fields 14-17).
        total += int(fields[11]) + int(fields[12])
        if children:
            total += int(fields[13]) + int(fields[14])
    return total


def process_tree(root):
    tree, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as handle:
                kids = [int(p) for p in handle.read().split()]
        except OSError:
            kids = []
        tree += kids
        frontier += kids
    return tree


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buffer = b""

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def multiline(self):
        while b"\r\n.\r\n" not in self.buffer:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer.split(b"\r\n.\r\n", 1)
        return data

    def command(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        status = self.line()
        if not status.startswith(b"+OK"):
            raise RuntimeError(f"{text.split()[0]}: {status!r}")
        return status


def session(port, user, password, retrieve):
    client = Client(port)
    client.line()
    client.command(f"USER {user}")
    client.command(f"PASS {password}")
    count = 0
    if retrieve:
        client.command("LIST")
        listing = client.multiline().split(b"\r\n")
        numbers = [entry.split()[0].decode() for entry in listing if entry]
        for number in numbers:
            client.command(f"RETR {number}")
            client.multiline()
            count += 1
    client.command("QUIT")
    client.sock.close()
    return count


def worker(args):
    port, users, password, retrieve = args
    return sum(session(port, user, password, retrieve) for user in users)


def run(port, users, password, clients, pids_of, retrieve=True):
    groups = [users[i::clients] for i in range(clients)]
    before = pids_of()
    start = time.monotonic()
    with multiprocessing.Pool(clients) as pool:
        counts = pool.map(worker, [(port, group, password, retrieve) for group in groups])
    elapsed = time.monotonic() - start
    used = pids_of() - before
    return sum(counts), elapsed, used / TICK


def facteur(binary, clients):
    data = tempfile.mkdtemp(prefix="facteur-bench-pop3-")
    try:
        # First start: creates the data folder, domain localhost and the admin; then accounts offline.
        first = subprocess.Popen([binary, "serve", "--data", data, "--listen", "smtp=127.0.0.1:0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in first.stdout:
            if line.startswith("LISTENING"):
                break
        first.terminate(); first.wait()
        users = [f"user{i}@localhost" for i in range(1, ACCOUNTS + 1)]
        for user in users:
            subprocess.run([binary, "account", "add", user, "--password-stdin", "--data", data],
                           input="pass\n", text=True, check=True, capture_output=True)
        server = subprocess.Popen([binary, "serve", "--data", data, "--listen", "smtp=127.0.0.1:0",
                                   "--listen", "pop3=127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ports = {}
        for line in server.stdout:
            if line.startswith("LISTENING"):
                proto, address = line.split()[1:3]
                ports[proto] = int(address.rsplit(":", 1)[1])
                if len(ports) == 2:
                    break
        fill(ports["smtp"], users)
        pids = lambda: cpu_ticks([server.pid])
        cold = run(ports["pop3"], users, "pass", clients, pids, retrieve=False)
        logins = run(ports["pop3"], users, "pass", clients, pids, retrieve=False)
        result = run(ports["pop3"], users, "pass", clients, pids)
        server.terminate(); server.wait()
        return result, logins, cold
    finally:
        shutil.rmtree(data, ignore_errors=True)


def dovecot(clients):
    users = [f"user{i}@anchor.test" for i in range(1, ACCOUNTS + 1)]
    # Empty the maildirs, then deliver through the reference Postfix (LMTP into Dovecot).
    for i in range(1, ACCOUNTS + 1):
        for sub in ("cur", "new"):
            path = f"/var/vmail-anchor/anchor.test/user{i}/Maildir/{sub}"
            if os.path.isdir(path):
                for name in os.listdir(path):
                    os.unlink(os.path.join(path, name))
    fill(3525, users)
    deadline = time.time() + 300
    while time.time() < deadline:
        n = sum(len(os.listdir(f"/var/vmail-anchor/anchor.test/user{i}/Maildir/new"))
                + len(os.listdir(f"/var/vmail-anchor/anchor.test/user{i}/Maildir/cur"))
                for i in range(1, ACCOUNTS + 1)
                if os.path.isdir(f"/var/vmail-anchor/anchor.test/user{i}/Maildir/new"))
        if n >= ACCOUNTS * MESSAGES:
            break
        time.sleep(1)
    master = int(open("/run/dovecot-anchor/master.pid").read().split()[0])
    pids = lambda: cpu_ticks(process_tree(master), children=True)
    cold = run(3110, users, "pass", clients, pids, retrieve=False)
    logins = run(3110, users, "pass", clients, pids, retrieve=False)
    return run(3110, users, "pass", clients, pids), logins, cold


def report(name, result, logins, cold):
    messages, elapsed, cpu = result
    _, _, login_cpu = logins
    _, _, cold_cpu = cold
    per = cpu / messages * 1000
    net = max(cpu - login_cpu, 0) / messages * 1000
    print(f"{name:8} {messages} messages in {elapsed:.2f} s = {messages / elapsed:.0f} msg/s; "
          f"server CPU {cpu:.2f} s = {per:.3f} ms/msg (logins alone {login_cpu:.2f} s; without them {net:.3f} ms/msg)")
    print(f"{'':8} first logins (cold) {cold_cpu:.2f} s = {cold_cpu / ACCOUNTS * 1000:.1f} ms/login; "
          f"again within a minute {login_cpu / ACCOUNTS * 1000:.1f} ms/login; "
          f"with cold logins {(cpu - login_cpu + cold_cpu) / messages * 1000:.3f} ms/msg")
    return messages / elapsed, per, net


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--facteur", default=".build/release/facteur")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-dovecot", action="store_true")
    parser.add_argument("--skip-facteur", action="store_true", help="Dovecot's figures only")
    args = parser.parse_args()
    print(f"POP3 benchmark: {ACCOUNTS} accounts x {MESSAGES} messages of {SIZE} bytes, {args.clients} clients, "
          f"{os.cpu_count()} CPUs")
    if args.skip_facteur:
        report("dovecot", *dovecot(args.clients))
        return
    ours = report("facteur", *facteur(args.facteur, args.clients))
    if args.skip_dovecot:
        return
    theirs = report("dovecot", *dovecot(args.clients))
    print(f"ratio facteur/dovecot: throughput {ours[0] / theirs[0]:.2f}x, server CPU per message {ours[1] / theirs[1]:.2f}x "
          f"(without logins {ours[2] / theirs[2]:.2f}x; target <= 0.5)")


if __name__ == "__main__":
    main()
