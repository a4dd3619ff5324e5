#!/usr/bin/env bash
# bench/smtp-outbound/run.sh — outbound delivery throughput of Facteur's queue, and of a
# Postfix relay given the same load in the same run, both delivering to Postfix's smtp-sink.
#
# Submits $MESSAGES messages of $SIZE octets (one recipient each, round-robin over $RECIPIENTS
# addresses in $DOMAINS domains whose MX records a loopback unbound serves) over $SESSIONS
# sessions, and times from the first submission to the last 250 the sink sends. The work is
# done by outbound.py; this script finds the binaries. Loopback only. See bench/README.md.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
BIN="${FACTEUR_BIN:-$root/.build/release/facteur}"
export PATH="$PATH:/usr/sbin:/sbin"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

for tool in python3 unbound smtp-sink postfix; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is not installed (Debian: unbound, postfix, python3)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (Postfix's master and smtp-sink -u need it)" >&2; exit 1; }

if [ ! -x "$BIN" ]; then
  echo "bench: nice -n 19 swift build -c release --product facteur" >&2
  (cd "$root" && nice -n 19 swift build -c release --product facteur >&2)
  BIN="$root/.build/release/facteur"
fi
[ -x "$BIN" ] || { echo "bench: no facteur binary at $BIN" >&2; exit 1; }

exec python3 "$here/outbound.py" --facteur "$BIN" "$@"
