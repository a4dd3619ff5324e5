#!/usr/bin/env python3
"""Verifies every DKIM-Signature of a stored message with dkimpy (Debian python3-dkim), an
independent verifier (RFC 6376, RFC 8463 for Ed25519), against key records given on the command
line instead of DNS. Used on what another MTA stored: its line ends (LF in a Maildir) become
CRLF first, as on the wire (RFC 5322 §2.3).

  dkim_verify.py MESSAGE_FILE --record 'SEL._domainkey.DOMAIN. 3600 IN TXT "v=DKIM1; …" "…"' …

Prints one JSON line: {"signatures": [{"d": …, "s": …, "a": …, "pass": true|false}, …]}.
Exit status 3 when dkimpy is not importable (the caller skips).
"""
import argparse
import json
import re
import sys

try:
    import dkim
except ImportError:
    print(json.dumps({"error": "dkimpy (python3-dkim) is not installed for " + sys.executable}))
    sys.exit(3)


def parse_record(line):
    """A zone-file TXT line: owner name, then the character-strings, concatenated (RFC 1035 §5.1)."""
    name = line.split()[0].rstrip(".").lower()
    value = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', line))
    return name, value.encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("message")
    parser.add_argument("--record", action="append", default=[])
    args = parser.parse_args()
    records = dict(parse_record(r) for r in args.record)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.rstrip(".").lower())

    with open(args.message, "rb") as f:
        data = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    verifier = dkim.DKIM(data)
    results = []
    header_end = data.find(b"\r\n\r\n")
    count = len(re.findall(rb"(?im)^dkim-signature:", data[:header_end if header_end >= 0 else len(data)]))
    for index in range(count):
        try:
            ok = bool(verifier.verify(idx=index, dnsfunc=dnsfunc))
        except Exception as error:  # a verifier error is a failed verification, with its reason
            ok = False
            results.append({"pass": False, "error": repr(error)})
            continue
        tags = verifier.signature_fields or {}
        results.append({"d": tags.get(b"d", b"").decode(), "s": tags.get(b"s", b"").decode(),
                        "a": tags.get(b"a", b"").decode(), "pass": ok})
    print(json.dumps({"signatures": results}))


if __name__ == "__main__":
    main()
