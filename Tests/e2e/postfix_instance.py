#!/usr/bin/env python3
"""A private Postfix instance for the interoperability tests and the outbound benchmark.

Everything lives under one folder (--dir): etc/ (main.cf, master.cf, maps), queue/, data/,
vmail/ (Maildir mailboxes) and postfix.log. Postfix listens on 127.0.0.1:--smtpd-port only,
never touches DNS (every next hop is an address literal, RFC 5321 §4.1.3), does no TLS, and
logs to its own file (maillog_file, Postfix >= 3.4). Must run as root: master(8) drops to the
`postfix` user. The system's own Postfix (/etc/postfix) is never started nor changed.

  start   write the configuration (first time), start master(8), wait until smtpd answers
  stop    `postfix stop`, then SIGKILL the master if it is still there
  flush   `postqueue -f`: try deferred mail now

Prints one JSON line: {"ok": true|false, ...}; on failure the log's tail is in "log".
"""
import argparse
import json
import os
import pwd
import socket
import subprocess
import sys
import time

# master.cf: one smtpd on the test's port; every daemon unchrooted (a chroot would need
# copies of /etc files inside queue/), the usual service names the other daemons expect.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def log_tail(root, lines=40):
    try:
        with open(os.path.join(root, "postfix.log"), errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def write_config(args):
    root = os.path.abspath(args.dir)
    etc = os.path.join(root, "etc")
    for sub in ("etc", "queue", "data", "vmail"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    owner = pwd.getpwnam("postfix")
    # master(8) writes its lock in data/ and virtual(8) creates Maildirs under vmail/ as this user.
    for sub in ("data", "vmail"):
        os.chown(os.path.join(root, sub), owner.pw_uid, owner.pw_gid)
    os.chmod(root, 0o755)

    mailboxes = args.mailbox or []
    domains = sorted({m.split("@", 1)[1] for m in mailboxes} | set(args.virtual_domain or []))
    main = [
        "compatibility_level = 3.6",
        f"config_directory = {etc}",
        f"queue_directory = {root}/queue",
        f"data_directory = {root}/data",
        "mail_owner = postfix",
        "setgid_group = postdrop",
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        f"myhostname = {args.hostname}",
        f"mydomain = {args.hostname.split('.', 1)[-1]}",
        "myorigin = $mydomain",
        # The mailboxes are virtual(8) ones; nothing is delivered by local(8).
        "mydestination =",
        "mynetworks = 127.0.0.0/8",
        f"maillog_file_prefixes = {root}",
        f"maillog_file = {root}/postfix.log",
        # No DNS: next hops are [address]:port from the transport map or relayhost.
        "smtp_host_lookup = native",
        "smtp_dns_support_level = disabled",
        "smtpd_tls_security_level = none",
        "smtp_tls_security_level = none",
        "smtpd_banner = $myhostname ESMTP Postfix",
        "biff = no",
        # Quick retries: a test that starts the peer later flushes, but qmgr should not sit idle.
        "queue_run_delay = 5s",
        "minimal_backoff_time = 5s",
        "maximal_backoff_time = 30s",
        f"message_size_limit = {args.message_size_limit}",
        f"default_process_limit = {args.process_limit}",
        f"transport_maps = texthash:{etc}/transport",
    ]
    if domains:
        main += [
            f"virtual_mailbox_domains = {', '.join(domains)}",
            f"virtual_mailbox_base = {root}/vmail",
            f"virtual_mailbox_maps = texthash:{etc}/vmailbox",
            f"virtual_uid_maps = static:{owner.pw_uid}",
            f"virtual_gid_maps = static:{owner.pw_gid}",
        ]
    if args.relayhost:
        main.append(f"relayhost = {args.relayhost}")
    main += args.set or []
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write("\n".join(main) + "\n")
    # Maildir (trailing slash): one file per message under vmail/<local part>/new/.
    with open(os.path.join(etc, "vmailbox"), "w") as f:
        for m in mailboxes:
            f.write(f"{m} {m.split('@', 1)[0]}/\n")
    with open(os.path.join(etc, "transport"), "w") as f:
        for entry in args.transport or []:
            domain, nexthop = entry.split("=", 1)
            f.write(f"{domain} smtp:{nexthop}\n")
    with open(os.path.join(etc, "master.cf"), "w") as f:
        f.write(f"127.0.0.1:{args.smtpd_port} inet n - n - - smtpd\n" + MASTER_SERVICES)


def postfix(root, *command):
    return subprocess.run(["postfix", "-c", os.path.join(root, "etc"), *command],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(5)
            return s.recv(512).startswith(b"220")
    except OSError:
        return False


def start(args):
    root = os.path.abspath(args.dir)
    if os.geteuid() != 0:
        return {"ok": False, "error": "Postfix's master(8) must be started as root"}
    if not os.path.exists(os.path.join(root, "etc", "main.cf")) or args.rewrite:
        write_config(args)
    result = postfix(root, "start")
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        if answers(args.smtpd_port):
            return {"ok": True, "dir": root, "port": args.smtpd_port}
        time.sleep(0.1)
    return {"ok": False, "error": f"postfix start exited {result.returncode}; smtpd does not answer",
            "stderr": result.stderr[-2000:], "log": log_tail(root)}


def master_pid(root):
    try:
        with open(os.path.join(root, "queue", "pid", "master.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def stop(args):
    root = os.path.abspath(args.dir)
    pid = master_pid(root)
    if pid is None or not alive(pid):
        return {"ok": True, "running": False}
    try:
        postfix(root, "stop")
    except subprocess.TimeoutExpired:
        pass
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    if alive(pid):
        # Only the master we started, by its pid; its children exit when it goes.
        os.kill(pid, 9)
    return {"ok": True, "running": False}


def flush(args):
    root = os.path.abspath(args.dir)
    result = subprocess.run(["postqueue", "-c", os.path.join(root, "etc"), "-f"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    return {"ok": result.returncode == 0, "stderr": result.stderr[-2000:]}


def main():
    # postfix(1) and postqueue(1) live in /usr/sbin, which a test runner's PATH may lack.
    os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["start", "stop", "flush"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--smtpd-port", type=int, default=0)
    parser.add_argument("--hostname", default="mx.partner.test")
    parser.add_argument("--mailbox", action="append", help="an address with a Maildir (its domain becomes virtual)")
    parser.add_argument("--virtual-domain", action="append")
    parser.add_argument("--transport", action="append", help="DOMAIN=[address]:port (a transport_maps entry)")
    parser.add_argument("--relayhost", help="[address]:port for every other destination")
    parser.add_argument("--set", action="append", help="an extra main.cf line")
    parser.add_argument("--message-size-limit", type=int, default=10240000)
    parser.add_argument("--process-limit", type=int, default=100)
    parser.add_argument("--rewrite", action="store_true", help="rewrite the configuration even if it exists")
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    try:
        result = {"start": start, "stop": stop, "flush": flush}[args.action](args)
    except Exception as error:  # one JSON line whatever happens
        result = {"ok": False, "error": repr(error), "log": log_tail(os.path.abspath(args.dir))}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
