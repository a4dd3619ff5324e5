#!/usr/bin/env bash
# bench/smtp-inbound/run.sh — inbound SMTP throughput and latency of the real server.
#
# Builds facteur in release mode, starts it on an ephemeral loopback port with a fresh
# data folder (full durability: the server's defaults), creates user1..user100@localhost,
# and for each client count in $CLIENTS drives $MESSAGES messages of $SIZE octets with
# smtpload (C, pipelined MAIL/RCPT/DATA). Prints messages/s, p50/p99 latency from the
# end of data (the "." line sent) to the 250, and the server's CPU time per message
# (utime+stime from /proc/PID/stat, before and after each run).
# Traffic goes to 127.0.0.1 only. See bench/README.md.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CLIENTS="${CLIENTS:-1 10}"
MESSAGES="${MESSAGES:-5000}"
SIZE="${SIZE:-10240}"
TIME_CAP="${TIME_CAP:-60}"
USERS="${USERS:-100}"
PER_CONNECTION="${PER_CONNECTION:-100}"
PIPELINING="${PIPELINING:-1}"
BIN="${FACTEUR_BIN:-}"
KEEP="${KEEP:-0}"

command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

if [ -z "$BIN" ]; then
  echo "bench: swift build -c release --product facteur" >&2
  (cd "$root" && swift build -c release --product facteur >&2)
  BIN="$root/.build/release/facteur"
fi
[ -x "$BIN" ] || { echo "bench: no facteur binary at $BIN" >&2; exit 1; }

work="$(mktemp -d /tmp/facteur-bench.XXXXXX)"
load="$work/smtpload"
cc -O2 -pthread -o "$load" "$here/smtpload.c"

data="$work/data"
mkdir -p "$data"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Start the server; its stdout announces the port ("LISTENING smtp 127.0.0.1:PORT").
: >"$work/stdout"
"$BIN" serve --data "$data" --listen smtp=127.0.0.1:0 >"$work/stdout" 2>"$work/server.log" &
server_pid=$!
port=""
for _ in $(seq 1 600); do
  port="$(sed -n 's/^LISTENING smtp 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/stdout" | head -1 || true)"
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "bench: facteur exited:" >&2; cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "bench: facteur did not announce its SMTP port" >&2; exit 1; }

echo "bench: creating $USERS accounts" >&2
for i in $(seq 1 "$USERS"); do
  echo "bench-password-$i" | "$BIN" account add "user$i@localhost" --password-stdin --data "$data" >/dev/null
done

ticks="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

printf '\nfacteur inbound SMTP, %s-octet messages, %s messages per run (cap %ss), %s per connection, pipelining=%s\n' \
  "$SIZE" "$MESSAGES" "$TIME_CAP" "$PER_CONNECTION" "$PIPELINING"
printf 'machine: %s, %s cores; %s; load average before: %s\n' "$(uname -m)" "$(nproc)" \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %10s %8s %10s %10s %10s %14s %14s\n' clients delivered errors "msg/s" "p50 ms" "p99 ms" "server cpu/msg" "client cpu/msg"
for n in $CLIENTS; do
  before="$(cpu_ticks)"
  out="$("$load" -h 127.0.0.1 -p "$port" -c "$n" -n "$MESSAGES" -s "$SIZE" -t "$TIME_CAP" -u "$USERS" \
        -d localhost -m "$PER_CONNECTION" -P "$PIPELINING" 2>"$work/load-$n.err")" || true
  after="$(cpu_ticks)"
  [ -s "$work/load-$n.err" ] && cat "$work/load-$n.err" >&2
  get() { echo "$out" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  delivered="$(get delivered)"
  if [ -z "$delivered" ] || [ "$delivered" = 0 ]; then
    echo "bench: no message delivered with $n clients: $out" >&2; continue
  fi
  server_ms="$(awk -v a="$before" -v b="$after" -v t="$ticks" -v d="$delivered" 'BEGIN { printf "%.3f ms", (b - a) / t * 1000 / d }')"
  client_ms="$(awk -v c="$(get generator_cpu_s)" -v d="$delivered" 'BEGIN { printf "%.3f ms", c * 1000 / d }')"
  printf '%-8s %10s %8s %10s %10s %10s %14s %14s\n' "$n" "$delivered" "$(get errors)" "$(get msgs_per_s)" \
    "$(get p50_ms)" "$(get p99_ms)" "$server_ms" "$client_ms"
done

# Sanity: the messages are really in the store.
stored="$("$BIN" message list user1@localhost --data "$data" | wc -l)"
echo "bench: user1@localhost holds $stored messages" >&2
