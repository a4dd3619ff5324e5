#!/usr/bin/env python3
"""IMAP benchmark (not a test): Facteur against Dovecot in the same run.

1. Mixed workload: N clients, each logged in to its own account, cycle for --seconds through
   SELECT, FETCH headers (1:20 BODY.PEEK[HEADER]), FETCH a body (BODY.PEEK[]), STORE +FLAGS,
   SEARCH, APPEND and STORE \\Deleted + EXPUNGE of what it appended, in a folder "benchmix" of
   200 messages of 2 KB. Prints commands/s and the server's CPU per command (utime+stime from
   /proc/PID/stat; for Dovecot the whole process tree plus the master's reaped children), then the
   same per command type (one phase of --phase seconds each), and the Facteur/Dovecot ratios.
2. Big mailbox: 100,000 messages (--big) in one folder; time (client side, to the tagged OK)
   and server CPU of SELECT, FETCH 1:* (FLAGS) and UID FETCH 1:* (UID FLAGS), twice each.
   The folder is filled directly, not through the protocol (100,000 durable APPENDs would take
   minutes): Facteur's rows are cloned from one delivered message in facteur.sqlite while the
   server is stopped (the same blob, as a delivery to many recipients does); Dovecot gets 100,000
   Maildir files (its first SELECT indexes them: the first figure is cold, the second warm).
3. Idle memory: --idle connections (default 10,000) over IMAPS with COMPRESS=DEFLATE active,
   authenticated (SCRAM-SHA-256: the server checks a proof, no password hash per login),
   SELECT INBOX, IDLE; prints Facteur's resident memory (VmRSS) before and with them all idling.
   Dovecot (one process per connection) is measured with --dovecot-idle connections (default
   1,000; its process limit is 2048) over STARTTLS, COMPRESS if offered, as the sum of PSS of its
   processes, and extrapolated to --idle.

Traffic stays on 127.0.0.1. Dovecot users user1..user100@anchor.test (password "pass") only get
folders "benchmix" and "bench100k"; INBOX is left alone (other benchmarks use it).

Usage: sudo bash /work/shared/reference-stack/start.sh
       nice swift build -c release --product facteur
       python3 bench/imap/run.py [--facteur .build/release/facteur] [--clients 8] [--seconds 20] [--rounds 3]
                                 [--big 100000] [--idle 10000] [--skip-dovecot] [--skip-idle] [--skip-big]
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import multiprocessing
import os
import random
import re
import resource
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import zlib

TICK = os.sysconf("SC_CLK_TCK")
MIX_MESSAGES = 200
MIX_SIZE = 2048
DOVECOT_IMAP = 3143
DOVECOT_MAIL = "/var/vmail-anchor/anchor.test"


def message(i, size=MIX_SIZE):
    head = (f"From: Bench <bench@example.net>\r\nTo: user@example.org\r\nSubject: bench {i}\r\n"
            f"Date: Fri, 27 Nov 2026 12:00:00 +0000\r\nMessage-ID: <bench-{i}-{time.time_ns()}@example.net>\r\n\r\n").encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-benchmark-line\r\n"
    text = head
    while len(text) < size:
        text += line
    return text[:size - 2] + b"\r\n"


# ---------------------------------------------------------------- /proc

def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def cpu_ticks(pids, children=False):
    total = 0
    for pid in pids:
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat(5) fields 14, 15)
        if children:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped children
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


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- a small blocking IMAP client

class IMAP:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=300)
        self.buffer = b""
        self.tag = 0
        self.line()

    def line(self):
        while True:
            i = self.buffer.find(b"\r\n")
            if i >= 0:
                line, self.buffer = self.buffer[:i], self.buffer[i + 2:]
                return line
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk

    def exact(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def response(self, tag):
        """Untagged lines (literals inlined) up to the tagged one; raises unless it is OK."""
        lines = []
        while True:
            line = self.line()
            while line.endswith(b"}"):
                m = re.search(rb"\{(\d+)\}$", line)
                if not m:
                    break
                line += b"\r\n" + self.exact(int(m.group(1))) + self.line()
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(line.decode(errors="replace")[:200])
                return lines, line
            lines.append(line)

    def command(self, text, literal=None):
        self.tag += 1
        tag = b"t%d" % self.tag
        if literal is None:
            self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text.encode() + b" {%d}\r\n" % len(literal))
            reply = self.line()
            if not reply.startswith(b"+"):
                raise RuntimeError(f"no continuation: {reply!r}")
            self.sock.sendall(literal + b"\r\n")
        return self.response(tag)

    def close(self):
        try:
            self.command("LOGOUT")
        except Exception:
            pass
        self.sock.close()


def reset_folder(client, name, count):
    try:
        client.command(f"DELETE {name}")
    except RuntimeError:
        pass
    client.command(f"CREATE {name}")
    for i in range(count):
        client.command(f"APPEND {name} (\\Seen)" if i % 4 else f"APPEND {name}", literal=message(i))


OPS = ["select", "fetch_headers", "fetch_body", "store", "search", "append", "expunge"]


def workload(args):
    """One client: `ops` in a cycle until the deadline; returns the number of each command run."""
    port, user, password, ops, deadline, seed = args
    rng = random.Random(seed)
    client = IMAP(port)
    client.command(f"LOGIN {user} {password}")
    lines, _ = client.command("SELECT benchmix")
    exists = max(int(l.split()[1]) for l in lines if l.endswith(b" EXISTS"))
    counts = dict.fromkeys(OPS, 0)
    appended = []
    while time.monotonic() < deadline:
        for op in ops:
            if op == "select":
                lines, _ = client.command("SELECT benchmix")
                exists = max(int(l.split()[1]) for l in lines if l.endswith(b" EXISTS"))
            elif op == "fetch_headers":
                start = rng.randint(1, max(1, exists - 19))
                client.command(f"FETCH {start}:{min(exists, start + 19)} (UID FLAGS BODY.PEEK[HEADER])")
            elif op == "fetch_body":
                client.command(f"FETCH {rng.randint(1, exists)} (BODY.PEEK[])")
            elif op == "store":
                client.command(f"STORE {rng.randint(1, exists)} {rng.choice('+-')}FLAGS (\\Flagged)")
            elif op == "search":
                client.command(f"UID SEARCH SUBJECT \"bench {rng.randint(0, MIX_MESSAGES)}\"")
            elif op == "append":
                _, ok = client.command("APPEND benchmix", literal=message(rng.randint(0, 1 << 30)))
                m = re.search(rb"APPENDUID \d+ (\d+)", ok)
                if m:
                    appended.append(int(m.group(1)))
                exists += 1
            elif op == "expunge":
                if appended:
                    client.command(f"UID STORE {','.join(map(str, appended))} +FLAGS.SILENT (\\Deleted)")
                    counts["store"] += 1
                    lines, _ = client.command("EXPUNGE")
                    exists -= sum(1 for l in lines if l.endswith(b" EXPUNGE"))
                    appended = []
                else:
                    continue
            counts[op] += 1
            if time.monotonic() >= deadline:
                break
    client.close()
    return counts


def run_phase(port, users, password, clients, ops, seconds, cpu):
    deadline = time.monotonic() + seconds + 1.0  # the pool's start-up is outside the window
    before = cpu()
    start = time.monotonic()
    with multiprocessing.Pool(clients) as pool:
        results = pool.map(workload, [(port, users[i], password, ops, deadline, i) for i in range(clients)])
    time.sleep(0.5)  # Dovecot's per-connection processes exit and are reaped
    elapsed = time.monotonic() - start
    used = (cpu() - before) / TICK
    counts = dict.fromkeys(OPS, 0)
    for r in results:
        for k, v in r.items():
            counts[k] += v
    total = sum(counts.values())
    return total, min(elapsed, seconds + 1.0), used, counts


def mixed(name, port, users, password, clients, seconds, phase, cpu):
    total, elapsed, used, counts = run_phase(port, users, password, clients, OPS, seconds, cpu)
    print(f"{name:8} mixed: {total} commands in {elapsed:.1f} s = {total / elapsed:.0f} cmd/s; server CPU {used:.2f} s "
          f"= {used / max(total, 1) * 1000:.3f} ms/cmd  ({', '.join(f'{k} {v}' for k, v in counts.items())})", flush=True)
    per = {}
    if phase > 0:
        for op in ["select", "fetch_headers", "fetch_body", "store", "search", "append"]:
            t, e, u, c = run_phase(port, users, password, clients, [op], phase, cpu)
            n = max(c[op], 1)
            per[op] = (n / e, u / n * 1000)
            print(f"{name:8}   {op:14} {n / e:8.0f} cmd/s  {u / n * 1000:7.3f} ms CPU/cmd", flush=True)
    return total / elapsed, used / max(total, 1) * 1000, per


def big(name, port, user, password, cpu, rss=None):
    client = IMAP(port)
    client.command(f"LOGIN {user} {password}")
    figures = {}
    for attempt in (1, 2):
        for label, command in [("SELECT", "SELECT bench100k"), ("FETCH 1:* (FLAGS)", "FETCH 1:* (FLAGS)"),
                               ("UID FETCH 1:* (UID FLAGS)", "UID FETCH 1:* (UID FLAGS)")]:
            before = cpu()
            start = time.monotonic()
            lines, _ = client.command(command)
            elapsed = time.monotonic() - start
            used = (cpu() - before) / TICK
            extra = ""
            if label == "SELECT":
                extra = f", {max(int(l.split()[1]) for l in lines if l.endswith(b' EXISTS'))} EXISTS"
            else:
                extra = f", {len(lines)} responses"
            if rss:
                extra += f", server VmHWM {rss() // 1024} MiB"
            figures[(label, attempt)] = elapsed
            print(f"{name:8} big ({'cold' if attempt == 1 else 'warm'}): {label:26} {elapsed * 1000:8.0f} ms, "
                  f"server CPU {used * 1000:.0f} ms{extra}", flush=True)
    client.close()
    return figures


# ---------------------------------------------------------------- idle connections (asyncio, TLS, DEFLATE)

class Deflated:
    """RFC 4978: raw DEFLATE both ways, a sync flush after each of our writes."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.out = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.buffer = b""

    async def send(self, data):
        self.writer.write(self.out.compress(data) + self.out.flush(zlib.Z_SYNC_FLUSH))
        await self.writer.drain()

    async def line(self):
        while b"\r\n" not in self.buffer:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise EOFError
            self.buffer += self.inflate.decompress(chunk)
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line


class Plain:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def line(self):
        return (await self.reader.readline()).rstrip(b"\r\n")


async def until(stream, tag):
    while True:
        line = await stream.line()
        if line.startswith(tag + b" "):
            if b" OK" not in line[:len(tag) + 4]:
                raise RuntimeError(line.decode(errors="replace"))
            return


def scram_proof(user, password, nonce, server_first, cache):
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
    key = (password, attrs["s"], iterations)
    if key not in cache:
        cache[key] = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    salted = cache[key]
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    bare = f"n={user},r={nonce}"
    final = f"c=biws,r={attrs['r']}"
    auth = f"{bare},{server_first},{final}".encode()
    signature = hmac.new(stored, auth, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return f"{final},p={base64.b64encode(proof).decode()}"


async def idle_one(port, user, password, tls, starttls, scram, compress, cache, holders):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context if tls else None)
    stream = Plain(reader, writer)
    await stream.line()
    if starttls:
        await stream.send(b"s STARTTLS\r\n")
        await until(stream, b"s")
        await writer.start_tls(context)
    if scram:
        nonce = base64.b64encode(os.urandom(18)).decode()
        first = base64.b64encode(f"n,,n={user},r={nonce}".encode()).decode()
        await stream.send(f"a AUTHENTICATE SCRAM-SHA-256 {first}\r\n".encode())
        challenge = await stream.line()
        server_first = base64.b64decode(challenge[2:]).decode()
        await stream.send(base64.b64encode(scram_proof(user, password, nonce, server_first, cache).encode()) + b"\r\n")
        while True:
            line = await stream.line()
            if line.startswith(b"+ "):
                await stream.send(b"\r\n")
                continue
            if line.startswith(b"a "):
                if not line.startswith(b"a OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                break
    else:
        await stream.send(f"a LOGIN {user} {password}\r\n".encode())
        await until(stream, b"a")
    if compress:
        await stream.send(b"c COMPRESS DEFLATE\r\n")
        await until(stream, b"c")
        stream = Deflated(reader, writer)
    await stream.send(b"s SELECT INBOX\r\n")
    await until(stream, b"s")
    await stream.send(b"i IDLE\r\n")
    while not (await stream.line()).startswith(b"+"):
        pass
    holders.append((reader, writer, stream))


async def idle_many(count, port, users, password, tls, starttls, scram, compress, measure, parallel=64, budget=600):
    """Opens up to `count` idling connections, stopping after `budget` seconds with what it has."""
    holders, errors = [], []
    cache = {}
    queue = list(range(count))
    stop = time.monotonic() + budget

    async def worker():
        while queue and time.monotonic() < stop:
            i = queue.pop()
            try:
                await asyncio.wait_for(idle_one(port, users[i % len(users)], password, tls, starttls, scram, compress,
                                                cache, holders), 120)
            except Exception as error:  # counted, not fatal: the figure says how many were idling
                errors.append(repr(error))

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    elapsed = time.monotonic() - start
    await asyncio.sleep(2)
    figure = measure()
    for reader, writer, stream in holders:
        writer.transport.abort()
    return len(holders), errors, elapsed, figure


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200_000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------- Facteur

class Facteur:
    def __init__(self, binary, users):
        self.binary = binary
        self.data = tempfile.mkdtemp(prefix="facteur-bench-imap-")
        first = subprocess.Popen([binary, "serve", "--data", self.data, "--listen", "smtp=127.0.0.1:0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in first.stdout:
            if line.startswith("LISTENING"):
                break
        first.terminate(); first.wait()
        config = ('log_level = "warning"\n\n[limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n'
                  'max_connections_per_account = 100000\n')
        self.users = [f"user{i}@localhost" for i in range(1, users + 1)]
        for user in self.users:
            for _ in range(2):
                with open(os.path.join(self.data, "facteur.toml"), "w") as handle:
                    handle.write(config)
                done = subprocess.run([binary, "account", "add", user, "--password-stdin", "--data", self.data],
                                      input="pass\n", text=True, capture_output=True)
                if done.returncode == 0:
                    break
                # Builds older than the per-account limit reject its key.
                if "max_connections_per_account: unknown key" not in done.stderr:
                    raise SystemExit(f"account add {user}: {done.stderr}")
                config = config.replace("max_connections_per_account = 100000\n", "")
        self.server = None

    def start(self):
        self.server = subprocess.Popen([self.binary, "serve", "--data", self.data, "--listen", "imap=127.0.0.1:0",
                                        "--listen", "imaps=127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       text=True)
        self.ports = {}
        for line in self.server.stdout:
            if line.startswith("LISTENING"):
                proto, address = line.split()[1:3]
                self.ports[proto] = int(address.rsplit(":", 1)[1])
                if len(self.ports) == 2:
                    break

    def stop(self):
        self.server.terminate()
        self.server.wait()

    def cpu(self):
        return cpu_ticks([self.server.pid])

    def fill_big(self, user, count):
        """One APPEND, then its row cloned count-1 times (server stopped)."""
        self.start()
        client = IMAP(self.ports["imap"])
        client.command(f"LOGIN {user} pass")
        reset_folder(client, "bench100k", 1)
        client.close()
        self.stop()
        db = sqlite3.connect(os.path.join(self.data, "facteur.sqlite"))
        (mailbox,) = db.execute("SELECT m.id FROM mailbox m JOIN account a ON a.id = m.accountID "
                                "WHERE a.address = ? AND m.name = 'bench100k'", (user,)).fetchone()
        db.execute("""
            WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO message (mailboxID, uid, modSeq, flags, keywords, internalDate, size, blobID, prefix)
            SELECT m.mailboxID, n.i, m.modSeq, CASE WHEN n.i % 10 = 0 THEN 0 ELSE 1 END, '', m.internalDate, m.size,
                   m.blobID, m.prefix FROM n, message m WHERE m.mailboxID = ? AND m.uid = 1""", (count, mailbox))
        db.execute("UPDATE mailbox SET uidNext = ?, messageCount = ?, highestModSeq = highestModSeq + 1 WHERE id = ?",
                   (count + 1, count, mailbox))
        db.commit()
        db.close()

    def cleanup(self):
        shutil.rmtree(self.data, ignore_errors=True)


# ---------------------------------------------------------------- Dovecot

def dovecot_master():
    return int(open("/run/dovecot-anchor/master.pid").read().split()[0])


def dovecot_cpu():
    return cpu_ticks(process_tree(dovecot_master()), children=False) + cpu_ticks([dovecot_master()], children=True)


def dovecot_fill_big(user_number, count):
    """Maildir++ folder .bench100k with `count` files, most \\Seen (":2,S")."""
    home = f"{DOVECOT_MAIL}/user{user_number}/Maildir"
    client = IMAP(DOVECOT_IMAP)  # the first login creates the user's Maildir
    client.command(f"LOGIN user{user_number}@anchor.test pass")
    client.command("SELECT INBOX")
    client.close()
    folder = f"{home}/.bench100k"
    shutil.rmtree(folder, ignore_errors=True)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(f"{folder}/{sub}", exist_ok=True)
    body = message(0, 1024)
    host = socket.gethostname()
    for i in range(1, count + 1):
        flags = "" if i % 10 == 0 else "S"
        with open(f"{folder}/cur/{1_700_000_000 + i}.M{i}P1.{host},S={len(body)}:2,{flags}", "wb") as handle:
            handle.write(body)
    owner = os.stat(home)
    for root, dirs, files in os.walk(folder):
        os.chown(root, owner.st_uid, owner.st_gid)
        for name in files:
            os.chown(os.path.join(root, name), owner.st_uid, owner.st_gid)


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--facteur", default=os.environ.get("FACTEUR_BIN", ".build/release/facteur"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--phase", type=float, default=4, help="seconds per single-command phase (0: skip them)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved Facteur/Dovecot mixed runs (phases in the last)")
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--dovecot-idle", type=int, default=1_000)
    parser.add_argument("--skip-dovecot", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-mixed", action="store_true")
    parser.add_argument("--no-compress", action="store_true", help="idle connections without COMPRESS=DEFLATE")
    args = parser.parse_args()
    raise_fd_limit()
    dovecot = not args.skip_dovecot and os.path.exists("/run/dovecot-anchor/master.pid")
    if not args.skip_dovecot and not dovecot:
        print("Dovecot is not running (sudo bash /work/shared/reference-stack/start.sh): Facteur only")
    print(f"IMAP benchmark: {args.clients} clients, {args.seconds:.0f} s mixed, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, facteur {args.facteur}", flush=True)

    ours = Facteur(args.facteur, max(100, args.clients))
    theirs_users = [f"user{i}@anchor.test" for i in range(1, max(100, args.clients) + 1)]
    results = {}
    try:
        if not args.skip_big:
            ours.fill_big(ours.users[-1], args.big)
        ours.start()
        port = ours.ports["imap"]
        if not args.skip_mixed:
            for user in ours.users[:args.clients]:
                c = IMAP(port); c.command(f"LOGIN {user} pass"); reset_folder(c, "benchmix", MIX_MESSAGES); c.close()
            if dovecot:
                for user in theirs_users[:args.clients]:
                    c = IMAP(DOVECOT_IMAP); c.command(f"LOGIN {user} pass"); reset_folder(c, "benchmix", MIX_MESSAGES); c.close()
            # Interleaved rounds (Facteur, Dovecot, Facteur, ...): the machine is shared and noisy,
            # so each round's ratio compares neighbours in time; the median ratio is quoted.
            ratios = []
            for round_ in range(args.rounds):
                phase = args.phase if round_ == args.rounds - 1 else 0
                results["facteur mixed"] = mixed("facteur", port, ours.users, "pass", args.clients, args.seconds, phase, ours.cpu)
                if dovecot:
                    results["dovecot mixed"] = mixed("dovecot", DOVECOT_IMAP, theirs_users, "pass", args.clients, args.seconds,
                                                     phase, dovecot_cpu)
                    a, b = results["facteur mixed"], results["dovecot mixed"]
                    ratios.append((a[0] / b[0], a[1] / b[1]))
                    print(f"round {round_ + 1}: facteur/dovecot mixed throughput {ratios[-1][0]:.2f}x, "
                          f"CPU per command {ratios[-1][1]:.2f}x", flush=True)
            if dovecot and len(ratios) > 1:
                throughput = sorted(r[0] for r in ratios)[len(ratios) // 2]
                cpu = sorted(r[1] for r in ratios)[len(ratios) // 2]
                print(f"median of {len(ratios)} rounds: throughput {throughput:.2f}x, CPU per command {cpu:.2f}x", flush=True)
            if dovecot:
                a, b = results["facteur mixed"], results["dovecot mixed"]
                print(f"ratio facteur/dovecot mixed: throughput {a[0] / b[0]:.2f}x (target >= 1.5), "
                      f"server CPU per command {a[1] / b[1]:.2f}x", flush=True)
                for op in a[2]:
                    if op in b[2]:
                        print(f"ratio facteur/dovecot {op:14} throughput {a[2][op][0] / b[2][op][0]:.2f}x, "
                              f"CPU/cmd {a[2][op][1] / b[2][op][1]:.2f}x")
        if not args.skip_big:
            big("facteur", port, ours.users[-1], "pass", ours.cpu, rss=lambda: status_kb(ours.server.pid, "VmHWM"))
            if dovecot:
                dovecot_fill_big(100, args.big)
                big("dovecot", DOVECOT_IMAP, "user100@anchor.test", "pass", dovecot_cpu)
        if not args.skip_idle:
            probe = IMAP(port)
            probe.command(f"LOGIN {ours.users[0]} pass")
            caps, _ = probe.command("CAPABILITY")
            probe.close()
            compress = any(b"COMPRESS=DEFLATE" in line for line in caps) and not args.no_compress
            if not compress and not args.no_compress:
                print("facteur  idle: this build does not offer COMPRESS=DEFLATE: TLS only")
            before = status_kb(ours.server.pid, "VmRSS")
            n, errors, elapsed, after = asyncio.run(idle_many(
                args.idle, ours.ports["imaps"], ours.users, "pass", tls=True, starttls=False, scram=True, compress=compress,
                measure=lambda: status_kb(ours.server.pid, "VmRSS")))
            growth = (after - before) / max(n, 1)
            print(f"facteur  idle: {n} of {args.idle} connections idling (IMAPS, SCRAM-SHA-256, {'COMPRESS=DEFLATE, ' if compress else ''}SELECT INBOX, IDLE) "
                  f"after {elapsed:.0f} s; server VmRSS {before // 1024} MiB before, {after // 1024} MiB with them "
                  f"= {growth:.1f} KiB per connection; {len(errors)} errors {errors[:3]}", flush=True)
            if n and n < max(args.idle, 10_000):
                target = max(args.idle, 10_000)
                print(f"facteur  idle: extrapolated to {target}: {(before + growth * target) / 1024:.0f} MiB (target < 400 MB)")
            if dovecot:
                probe = IMAP(DOVECOT_IMAP)
                caps, _ = probe.command("CAPABILITY")
                probe.close()
                master = dovecot_master()
                before = pss_kb(process_tree(master))
                n, errors, elapsed, after = asyncio.run(idle_many(
                    args.dovecot_idle, DOVECOT_IMAP, theirs_users, "pass", tls=False, starttls=True, scram=False,
                    compress=False, measure=lambda: pss_kb(process_tree(master))))
                growth = (after - before) / max(n, 1)
                print(f"dovecot  idle: {n} of {args.dovecot_idle} connections idling (STARTTLS, LOGIN, no COMPRESS: "
                      f"not offered by the reference config, SELECT INBOX, IDLE) after {elapsed:.0f} s; PSS of its processes "
                      f"{before // 1024} MiB before, {after // 1024} MiB with them = {growth:.1f} KiB per connection; "
                      f"extrapolated to {args.idle}: {(before + growth * args.idle) / 1024:.0f} MiB; {len(errors)} errors {errors[:3]}")
    finally:
        if ours.server and ours.server.poll() is None:
            ours.stop()
        ours.cleanup()


if __name__ == "__main__":
    main()
