#!/usr/bin/python3
"""bench/mailauth/dkimrate.py: DKIM signatures signed and verified per second, Facteur against dkimpy.

Called by bench/mailauth/run.sh. For each algorithm (rsa-sha256, ed25519-sha256) and one
message, measures:
  - Facteur: `facteur dkim sign --repeat N` and `facteur dkim verify --dns ADDR --repeat N`
    (the key is fetched from the loopback unbound once, then served by the client's cache).
    The rate is timed inside the process; CPU per operation is the process's CPU time for N
    operations minus that of a run with 1, divided by N - 1, so process start-up is left out.
  - dkimpy (Debian python3-dkim): dkim.sign / dkim.verify in a loop in this process, with a
    dnsfunc answering from memory (the equivalent of a warm cache), until N or --seconds.
Both use relaxed/relaxed. Before timing, each side verifies the other's signature once.
Prints one tab-separated line per measurement: impl, algorithm, operation, count, per_second, cpu_ms.
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import time

import dkim


def child_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_facteur(arguments, message):
    before = child_cpu()
    result = subprocess.run(arguments, input=message, capture_output=True)
    return result, child_cpu() - before


def facteur_rate(binary, arguments, message, count, verb):
    """(count, per second, CPU ms per operation) of `facteur dkim sign|verify ... --repeat count`."""
    full, cpu_full = run_facteur([binary] + arguments + ["--repeat", str(count)], message)
    one, cpu_one = run_facteur([binary] + arguments + ["--repeat", "1"], message)
    if full.returncode != 0 or one.returncode != 0:
        sys.exit("facteur %s failed: %s %s" % (" ".join(arguments), full.stdout.decode(), full.stderr.decode()))
    match = re.search(r"^%s (\d+) in ([0-9.]+) s \(([0-9.]+)/s\)" % verb, full.stdout.decode(), re.M)
    if not match:
        sys.exit("unexpected output from facteur: %r" % full.stdout)
    cpu_ms = max(0.0, cpu_full - cpu_one) / max(1, count - 1) * 1000
    return int(match.group(1)), float(match.group(3)), cpu_ms


def python_rate(operation, count, seconds):
    """(count, per second, CPU ms per operation) of calling operation() up to count times or seconds."""
    done = 0
    wall = time.perf_counter()
    cpu = time.process_time()
    deadline = wall + seconds
    while done < count and (done == 0 or time.perf_counter() < deadline):
        operation()
        done += 1
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return done, done / wall if wall > 0 else 0.0, cpu / done * 1000


def records(path):
    """`facteur dkim record` output → {owner name without the final dot: TXT value}."""
    found = {}
    for line in open(path, encoding="utf-8"):
        if line.startswith(";") or " IN TXT " not in line:
            continue
        owner, _, rest = line.partition(" ")
        found[owner.rstrip(".").lower()] = "".join(re.findall(r'"([^"]*)"', rest.split(" IN TXT ", 1)[1]))
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--facteur", required=True)
    parser.add_argument("--dns", required=True, help="ADDRESS:PORT of the resolver serving the keys")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--records", required=True, help="file with the output of `facteur dkim record`")
    parser.add_argument("--message", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0, help="time cap of each dkimpy loop")
    parser.add_argument("--key", action="append", default=[], help="ALGORITHM:SELECTOR:FILE, e.g. rsa-sha256:brsa:key.pem")
    options = parser.parse_args()

    message = open(options.message, "rb").read()
    published = records(options.records)
    domain = options.domain.encode()
    for spec in options.key:
        algorithm, selector, path = spec.split(":", 2)
        key = open(path, "rb").read()
        name = "%s._domainkey.%s" % (selector, options.domain.lower())
        if name not in published:
            sys.exit("no record for %s in %s" % (name, options.records))
        record = published[name].encode()
        dnsfunc = lambda _name, timeout=5: record
        kind = "rsa" if algorithm.startswith("rsa") else "ed25519"
        common = ["--domain", options.domain, "--selector", selector, "--key", path, "--algorithm", kind]

        # Cross-checks: each verifies the other's signature, or the figures below mean nothing.
        ours = subprocess.run([options.facteur, "dkim", "sign"] + common, input=message, capture_output=True)
        if ours.returncode != 0 or not dkim.verify(ours.stdout, dnsfunc=dnsfunc):
            sys.exit("dkimpy does not verify Facteur's %s signature: %s" % (algorithm, ours.stderr.decode()))
        theirs = dkim.sign(message, selector.encode(), domain, key, canonicalize=(b"relaxed", b"relaxed"),
                           signature_algorithm=algorithm.encode()) + message
        check = subprocess.run([options.facteur, "dkim", "verify", "--dns", options.dns], input=theirs, capture_output=True)
        if check.returncode != 0:
            sys.exit("Facteur does not verify dkimpy's %s signature: %s" % (algorithm, check.stdout.decode()))

        rows = [
            ("facteur", "sign") + facteur_rate(options.facteur, ["dkim", "sign"] + common, message, options.count, "signed"),
            ("dkimpy", "sign") + python_rate(
                lambda: dkim.sign(message, selector.encode(), domain, key, canonicalize=(b"relaxed", b"relaxed"),
                                  signature_algorithm=algorithm.encode()), options.count, options.seconds),
            ("facteur", "verify") + facteur_rate(options.facteur, ["dkim", "verify", "--dns", options.dns], ours.stdout,
                                                 options.count, "verified"),
            ("dkimpy", "verify") + python_rate(lambda: dkim.verify(theirs, dnsfunc=dnsfunc) or sys.exit("dkimpy: verify failed"),
                                               options.count, options.seconds),
        ]
        for impl, operation, count, rate, cpu_ms in rows:
            print("%s\t%s\t%s\t%d\t%.1f\t%.3f" % (impl, algorithm, operation, count, rate, cpu_ms), flush=True)


if __name__ == "__main__":
    main()
