#!/usr/bin/env python3
"""Outbound throughput: Facteur's queue against a Postfix relay, same load, same sink.

Started by bench/smtp-outbound/run.sh (see bench/README.md). On 127.0.0.1 only:

  unbound      MX records for DOMAINS domains (d0.test …), every MX -> 127.0.0.1
  smtp-sink    Postfix's test server: answers 250 to everything; its `-c` counter
               (mesg=N, written as each message ends) tells when the last one arrived
  facteur      submission (AUTH PLAIN) -> durable queue -> MX lookup -> DKIM-signed SMTP
               to the sink on [delivery] mx_port
  postfix      a private instance (Tests/e2e/postfix_instance.py), mynetworks relay,
               relayhost = the sink (Postfix resolves MX through the system resolver only,
               so it gets the next hop as an address literal instead)

For each of the two, SESSIONS submission sessions (one process each) send MESSAGES
messages of SIZE octets, one recipient each, round-robin over RECIPIENTS addresses spread
over DOMAINS domains. Measured: from the first connection to the moment the sink counted
the MESSAGES-th message (the last 250 it sent), and the submission phase alone.
Prints one table and the ratio.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
POSTFIX_INSTANCE = os.path.join(ROOT, "Tests", "e2e", "postfix_instance.py")
PASSWORD = "bench-password-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def cpu_seconds(pid, children=False):
    """utime + stime of a process (and, with `children`, of its reaped children), from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        if children:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# MARK: - the sink

class Sink:
    """smtp-sink with its running counter read from a pipe (it prints `… mesg=N\\r`)."""

    def __init__(self, port, workdir):
        self.port = port
        self.count = 0
        self.reached = {}  # target -> time the counter first reached it
        self.lock = threading.Lock()
        self.errors = open(os.path.join(workdir, "smtp-sink.err"), "w")
        # -u: smtp-sink refuses to run as root; -c: the counter; 1024: listen backlog.
        self.process = subprocess.Popen(["smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{port}", "1024"],
                                        stdout=subprocess.PIPE, stderr=self.errors, stdin=subprocess.DEVNULL)
        self.targets = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: can_connect(port), 10, "smtp-sink")

    def _read(self):
        pending = b""
        while True:
            chunk = self.process.stdout.read1(65536)
            if not chunk:
                return
            now = time.time()
            pending += chunk
            *records, pending = pending.replace(b"\n", b"\r").split(b"\r")
            value = 0
            for record in records:
                for word in record.split():
                    if word.startswith(b"mesg="):
                        value = max(value, int(word[5:]))
            with self.lock:
                self.count = max(self.count, value)
                for target in self.targets:
                    if self.count >= target and target not in self.reached:
                        self.reached[target] = now

    def expect(self, target):
        with self.lock:
            self.targets.append(target)
            if self.count >= target:
                self.reached[target] = time.time()

    def wait(self, target, deadline):
        while time.time() < deadline:
            with self.lock:
                if target in self.reached:
                    return self.reached[target]
            time.sleep(0.05)
        return None

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.errors.close()


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# MARK: - the load

def build_message(i, size, recipient):
    header = (f"From: Bench <sender@bench.test>\r\nTo: <{recipient}>\r\nSubject: outbound bench {i}\r\n"
              f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
              f"Message-ID: <bench.{i}.{os.getpid()}@bench.test>\r\nMIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again, for the bench.\r\n"
    body = bytearray()
    while len(header) + len(body) < size:
        body += line
    return header + bytes(body[:max(0, size - len(header) - 2)]) + b"\r\n"


def recipient(i, args):
    n = i % args.recipients
    return f"user{n // args.domains}@d{n % args.domains}.test"


def session(worker, args, port, auth, queue):
    """One submission session: messages worker, worker+SESSIONS, …; reconnects on error."""
    sent = errors = 0
    client = None
    for i in range(worker, args.messages, args.sessions):
        rcpt = recipient(i, args)
        for attempt in range(3):
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.bench.test", timeout=120)
                    client.ehlo()
                    if auth:
                        client.login("sender@bench.test", PASSWORD)
                client.sendmail("sender@bench.test", [rcpt], build_message(i, args.size, rcpt))
                sent += 1
                break
            except (smtplib.SMTPException, OSError) as error:
                errors += 1
                if errors <= 3:
                    sys.stderr.write(f"bench: session {worker}: message {i}: {error!r}\n")
                try:
                    client.close()
                except Exception:
                    pass
                client = None
                time.sleep(0.2 * (attempt + 1))
    if client is not None:
        try:
            client.quit()
        except Exception:
            pass
    queue.put((sent, errors, time.time()))


def run_load(name, port, auth, sink, args, server_cpu):
    baseline = sink.count
    target = baseline + args.messages
    sink.expect(target)
    cpu_before = server_cpu()
    queue = multiprocessing.Queue()
    started = time.time()
    workers = [multiprocessing.Process(target=session, args=(w, args, port, auth, queue)) for w in range(args.sessions)]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    submitted = sum(r[0] for r in results)
    submit_errors = sum(r[1] for r in results)
    submission_done = max(r[2] for r in results)
    last = sink.wait(baseline + submitted, started + args.time_cap)
    cpu_after = server_cpu()
    delivered = sink.count - baseline
    end = last if last is not None else time.time()
    seconds = end - started
    return {
        "name": name, "submitted": submitted, "submit_errors": submit_errors, "delivered": delivered,
        "complete": last is not None, "submission_s": submission_done - started, "total_s": seconds,
        "msgs_per_s": delivered / seconds if seconds > 0 else 0.0,
        "server_cpu_s": cpu_after - cpu_before,
    }


# MARK: - the servers

def start_unbound(workdir, port, domains):
    folder = os.path.join(workdir, "unbound")
    os.makedirs(folder)
    lines = ["server:", "  interface: 127.0.0.1", f"  port: {port}", "  do-daemonize: no", '  chroot: ""', '  username: ""',
             f'  directory: "{folder}"', f'  pidfile: "{folder}/unbound.pid"', "  use-syslog: no", "  verbosity: 1",
             "  num-threads: 1", "  do-ip6: no", "  access-control: 127.0.0.0/8 allow", '  module-config: "iterator"',
             '  local-zone: "." refuse']
    zones = {f"d{d}.test": [f"d{d}.test. 300 IN MX 10 mx.d{d}.test.", f"mx.d{d}.test. 300 IN A 127.0.0.1"] for d in range(domains)}
    zones["bench.test"] = ["bench.test. 300 IN MX 10 mx.bench.test.", "mx.bench.test. 300 IN A 127.0.0.1"]
    for zone, records in sorted(zones.items()):
        lines.append(f'  local-zone: "{zone}." static')
        lines.append(f"  local-data: \"{zone}. 3600 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\"")
        lines += [f"  local-data: '{r}'" for r in records]
    lines += ["remote-control:", "  control-enable: no", ""]
    config = os.path.join(folder, "unbound.conf")
    with open(config, "w") as f:
        f.write("\n".join(lines))
    log_path = os.path.join(folder, "unbound.log")
    log = open(log_path, "w")
    process = subprocess.Popen(["unbound", "-d", "-c", config], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    wait_for(lambda: "start of service" in open(log_path).read() or process.poll() is not None, 20, "unbound")
    if process.poll() is not None:
        raise RuntimeError("unbound did not start: " + open(log_path).read()[-2000:])
    return process


def facteur_cli(binary, data, config, *arguments, stdin=None):
    result = subprocess.run([binary, *arguments, "--data", data, "--config", config], input=stdin,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"facteur {' '.join(arguments)}: {result.stderr[-2000:]}")
    return result.stdout


def start_facteur(binary, workdir, dns_port, sink_port, dkim_sign=True):
    data = os.path.join(workdir, "facteur")
    os.makedirs(data)
    config = os.path.join(workdir, "facteur.toml")
    with open(config, "w") as f:
        f.write(f'hostname = "mx.bench.test"\nprimary_domain = "bench.test"\ndns_servers = ["127.0.0.1:{dns_port}"]\n'
                f"[delivery]\nmx_port = {sink_port}\n"
                # The per-account submission limits (anti-abuse) would cap the bench, not measure it.
                "[limits]\nsubmission_messages_per_hour = 100000000\nsubmission_recipients_per_hour = 100000000\n"
                "max_connections_per_ip = 1000\n"
                # Postfix here signs nothing; --no-dkim measures Facteur on the same footing.
                f"[mail_auth]\ndkim_sign = {'true' if dkim_sign else 'false'}\n")
    facteur_cli(binary, data, config, "domain", "add", "bench.test")
    facteur_cli(binary, data, config, "account", "add", "sender@bench.test", "--password-stdin", stdin=PASSWORD + "\n")
    stdout_path = os.path.join(workdir, "facteur.stdout")
    stdout = open(stdout_path, "w")
    log = open(os.path.join(workdir, "facteur.log"), "w")
    process = subprocess.Popen([binary, "serve", "--data", data, "--config", config, "--listen", "submission=127.0.0.1:0"],
                               stdout=stdout, stderr=log, stdin=subprocess.DEVNULL)
    port = None

    def listening():
        nonlocal port
        for line in open(stdout_path):
            if line.startswith("LISTENING submission "):
                port = int(line.rsplit(":", 1)[1])
                return True
        if process.poll() is not None:
            raise RuntimeError("facteur exited: " + open(os.path.join(workdir, "facteur.log")).read()[-2000:])
        return False

    wait_for(listening, 120, "facteur's LISTENING line")
    return process, port, data, config


def postfix_instance(*arguments):
    result = subprocess.run([sys.executable, POSTFIX_INSTANCE, *arguments], capture_output=True, text=True, timeout=120)
    reply = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {"ok": False, "error": result.stderr}
    if not reply.get("ok"):
        raise RuntimeError(f"postfix_instance {arguments[0]}: {reply}")
    return reply


def postfix_cpu(folder):
    """CPU of a Postfix instance: master(8), the children it reaped, and the live ones
    (smtpd, cleanup, qmgr, smtp …), which do the work."""
    try:
        with open(os.path.join(folder, "queue", "pid", "master.pid")) as f:
            master = int(f.read().strip())
    except (OSError, ValueError):
        return 0.0
    total = cpu_seconds(master, children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        total += cpu_seconds(int(entry), children=True)
            except (OSError, ValueError, IndexError):
                pass
    return total


def main():
    env = os.environ.get
    parser = argparse.ArgumentParser()
    parser.add_argument("--facteur", required=True)
    parser.add_argument("--messages", type=int, default=int(env("MESSAGES", "10000")))
    parser.add_argument("--size", type=int, default=int(env("SIZE", "10240")))
    parser.add_argument("--recipients", type=int, default=int(env("RECIPIENTS", "1000")))
    parser.add_argument("--domains", type=int, default=int(env("DOMAINS", "10")))
    parser.add_argument("--sessions", type=int, default=int(env("SESSIONS", "20")))
    parser.add_argument("--time-cap", type=float, default=float(env("TIME_CAP", "900")))
    parser.add_argument("--only", choices=["facteur", "postfix"], default=env("ONLY") or None)
    parser.add_argument("--keep", action="store_true", default=env("KEEP", "0") == "1")
    parser.add_argument("--no-dkim", action="store_true", default=env("DKIM_SIGN", "1") == "0",
                        help="turn off Facteur's DKIM signing ([mail_auth] dkim_sign = false); Postfix here never signs")
    args = parser.parse_args()
    if not (1 <= args.domains <= args.recipients and 1 <= args.sessions <= 200 and 1 <= args.messages <= 1_000_000
            and 512 <= args.size <= 50_000_000):
        parser.error("need 1 <= DOMAINS <= RECIPIENTS, 1 <= SESSIONS <= 200, MESSAGES <= 1e6, 512 <= SIZE <= 50e6")

    workdir = tempfile.mkdtemp(prefix="facteur-bench-outbound-")
    os.chmod(workdir, 0o755)  # Postfix's daemons run as `postfix` and must reach their folders
    unbound = sink = facteur = None
    postfix_dir = os.path.join(workdir, "postfix")
    results = []
    try:
        dns_port, sink_port, postfix_port = free_port(), free_port(), free_port()
        unbound = start_unbound(workdir, dns_port, args.domains)
        sink = Sink(sink_port, workdir)
        print(f"bench: {args.messages} messages of {args.size} octets to {args.recipients} recipients in "
              f"{args.domains} domains, {args.sessions} submission sessions; sink 127.0.0.1:{sink_port}; "
              f"facteur DKIM signing {'off' if args.no_dkim else 'on (Ed25519 + RSA-2048)'}", flush=True)

        if args.only in (None, "facteur"):
            facteur, port, _, _ = start_facteur(args.facteur, workdir, dns_port, sink_port, dkim_sign=not args.no_dkim)
            results.append(run_load("facteur", port, True, sink, args, lambda: cpu_seconds(facteur.pid)))
            facteur.send_signal(signal.SIGTERM)
            facteur.wait(60)
            print("bench: facteur done", flush=True)

        if args.only in (None, "postfix"):
            postfix_instance("start", "--dir", postfix_dir, "--smtpd-port", str(postfix_port), "--hostname", "mx.relay.test",
                             "--relayhost", f"[127.0.0.1]:{sink_port}")
            results.append(run_load("postfix", postfix_port, False, sink, args, lambda: postfix_cpu(postfix_dir)))
            postfix_instance("stop", "--dir", postfix_dir)
            print("bench: postfix done", flush=True)
    finally:
        if facteur is not None and facteur.poll() is None:
            facteur.kill()
        if os.path.exists(os.path.join(postfix_dir, "etc", "main.cf")):
            try:
                postfix_instance("stop", "--dir", postfix_dir)
            except Exception as error:
                sys.stderr.write(f"bench: stopping postfix: {error}\n")
        if sink is not None:
            sink.stop()
        if unbound is not None:
            unbound.terminate()
            unbound.wait(10)
        if args.keep:
            print(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    # CPU per message is the steadier figure on a shared machine: the rates move with other
    # people's load, the CPU a message costs much less.
    print("| server | submitted | delivered | complete | submission s | first submission -> last 250 s | msg/s | server CPU s "
          "| CPU ms/msg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        per_message = 1000 * r['server_cpu_s'] / r['delivered'] if r['delivered'] else 0.0
        print(f"| {r['name']} | {r['submitted']} | {r['delivered']} | {'yes' if r['complete'] else 'NO'} | "
              f"{r['submission_s']:.1f} | {r['total_s']:.1f} | {r['msgs_per_s']:.0f} | {r['server_cpu_s']:.1f} "
              f"| {per_message:.2f} |")
    if len(results) == 2 and results[1]["msgs_per_s"] > 0:
        print(f"\nfacteur / postfix throughput ratio: {results[0]['msgs_per_s'] / results[1]['msgs_per_s']:.2f}")
    for r in results:
        print("result " + json.dumps(r))
    return 0 if results and all(r["complete"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
