#!/usr/bin/env bash
# bench/mailauth/run.sh — what sender authentication costs.
#
# (a) DKIM signatures signed and verified per second on a 10 KB message, rsa-sha256 and
#     ed25519-sha256: Facteur (`facteur dkim sign|verify --repeat`) against dkimpy (Debian
#     python3-dkim) — see dkimrate.py.
# (b) Inbound SMTP throughput with the checks on and off: two `facteur serve` on fresh data
#     folders, `[mail_auth] verify_inbound = true` with `trusted_networks = []` (so loopback
#     clients are checked: SPF, DKIM, iprev) against `verify_inbound = false`; both resolve
#     through a loopback unbound that serves the sending domain's SPF, DKIM, DMARC, A and PTR
#     records. sendload.py sends DKIM-signed messages, ROUNDS runs per server in alternation.
#     Prints msg/s, latency and the server's CPU time per message (utime+stime from
#     /proc/PID/stat) for each run.
# Loopback only; bounded in count (MESSAGES, COUNT) and time (TIME_CAP, DKIMPY_SECONDS).
# See bench/README.md.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
BIN="${FACTEUR_BIN:-$root/.build/release/facteur}"
COUNT="${COUNT:-2000}"                 # (a) signatures per Facteur measurement
DKIMPY_SECONDS="${DKIMPY_SECONDS:-15}" # (a) time cap of each dkimpy loop (also at most COUNT)
MESSAGES="${MESSAGES:-2000}"           # (b) messages per run
ROUNDS="${ROUNDS:-3}"                  # (b) runs per mode, off and on alternating
WARMUP="${WARMUP:-50}"                 # (b) messages sent before each measured run
CLIENTS="${CLIENTS:-4}"                # (b) concurrent SMTP sessions
TIME_CAP="${TIME_CAP:-60}"             # (b) seconds per run at most
USERS="${USERS:-10}"                   # (b) recipients user1..USERS@localhost
SIGN="${SIGN:-rsa}"                    # (b) signatures per message: "rsa", "ed25519", "ed25519 rsa" or "none"
SIZE=10240
PARTS="${PARTS:-a b}"                  # which parts to run
KEEP="${KEEP:-0}"
PYTHON=/usr/bin/python3                # Debian's, where python3-dkim lives
DOMAIN=bench.example                   # the sending domain

[ -x "$BIN" ] || { echo "bench: no facteur binary at $BIN (swift build -c release --product facteur, or set FACTEUR_BIN)" >&2; exit 1; }
"$PYTHON" -c 'import dkim' 2>/dev/null || { echo "bench: dkimpy missing (apt-get install -y python3-dkim python3-nacl)" >&2; exit 1; }
UNBOUND="$(command -v unbound || echo /usr/sbin/unbound)"
[ -x "$UNBOUND" ] || { echo "bench: unbound missing (apt-get install -y unbound)" >&2; exit 1; }
"$BIN" dkim sign --help >/dev/null 2>&1 || { echo "bench: $BIN has no 'dkim sign' (build a facteur that has it)" >&2; exit 1; }

work="$(mktemp -d /tmp/facteur-mailauth-bench.XXXXXX)"
unbound_pid=""
servers=""
cleanup() {
  for server in $servers; do
    if kill -0 "$server" 2>/dev/null; then kill -TERM "$server"; wait "$server" 2>/dev/null || true; fi
  done
  if [ -n "$unbound_pid" ] && kill -0 "$unbound_pid" 2>/dev/null; then
    kill -TERM "$unbound_pid"; wait "$unbound_pid" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- keys: Facteur generates them, as `facteur dkim generate` does for a real domain.
keys="$work/keys"
"$BIN" dkim generate "$DOMAIN" --algorithm rsa --selector brsa --data "$keys" >/dev/null
"$BIN" dkim generate "$DOMAIN" --algorithm ed25519 --selector bed --data "$keys" >/dev/null
"$BIN" dkim record "$DOMAIN" --data "$keys" >"$work/records.txt"
rsa_key="$keys/dkim/$DOMAIN/brsa.rsa.pem"
ed_key="$keys/dkim/$DOMAIN/bed.ed25519"
[ -f "$rsa_key" ] && [ -f "$ed_key" ] || { echo "bench: keys not where expected under $keys/dkim/$DOMAIN" >&2; exit 1; }

# --- DNS: unbound on a free loopback port, serving only the sending domain and loopback's PTR.
dns_port="$("$PYTHON" - <<'EOF'
import random, socket
for _ in range(100):
    port = random.randint(20000, 60000)
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, kind); s.bind(("127.0.0.1", port)); s.close()
    except OSError:
        continue
    print(port); break
EOF
)"
{
  cat <<EOF
server:
  interface: 127.0.0.1
  port: $dns_port
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$work"
  pidfile: "$work/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "." refuse
  local-zone: "127.in-addr.arpa." nodefault
  local-zone: "1.0.0.127.in-addr.arpa." static
  local-data: "1.0.0.127.in-addr.arpa. 300 IN SOA ns.$DOMAIN. hostmaster.$DOMAIN. 1 3600 600 86400 60"
  local-data: "1.0.0.127.in-addr.arpa. 300 IN PTR mx.$DOMAIN."
  local-zone: "$DOMAIN." static
  local-data: "$DOMAIN. 300 IN SOA ns.$DOMAIN. hostmaster.$DOMAIN. 1 3600 600 86400 60"
  local-data: "mx.$DOMAIN. 300 IN A 127.0.0.1"
  local-data: '$DOMAIN. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"'
  local-data: 'mx.$DOMAIN. 300 IN TXT "v=spf1 a -all"'
  local-data: '_dmarc.$DOMAIN. 300 IN TXT "v=DMARC1; p=reject"'
EOF
  grep ' IN TXT ' "$work/records.txt" | sed "s/^/  local-data: '/; s/\$/'/"
  printf 'remote-control:\n  control-enable: no\n'
} >"$work/unbound.conf"
: >"$work/unbound.log"
"$UNBOUND" -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 &
unbound_pid=$!
for _ in $(seq 1 200); do grep -q "start of service" "$work/unbound.log" && break; sleep 0.05; done
grep -q "start of service" "$work/unbound.log" || { echo "bench: unbound did not start:" >&2; cat "$work/unbound.log" >&2; exit 1; }

printf '\nfacteur mail-auth bench; machine: %s, %s cores; %s; load average before: %s\n' "$(uname -m)" "$(nproc)" \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(cut -d' ' -f1-3 /proc/loadavg)"

# --- (a) DKIM rates on one 10 KB message.
if [[ " $PARTS " == *" a "* ]]; then
"$PYTHON" - "$work/message.eml" "$DOMAIN" "$SIZE" <<'EOF'
import sys
path, domain, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
header = ("From: Bench <bench@%s>\r\nTo: user1@localhost\r\nSubject: DKIM rate\r\nMessage-ID: <rate@%s>\r\n"
          "Date: Thu, 27 Nov 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
          % (domain, domain)).encode()
line = b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrst\r\n"
open(path, "wb").write(header + line * ((size - len(header)) // len(line)))
EOF
printf '\n(a) DKIM, one %s-octet message, relaxed/relaxed; Facteur: %s operations per figure; dkimpy: up to %s or %ss\n' \
  "$(wc -c <"$work/message.eml")" "$COUNT" "$COUNT" "$DKIMPY_SECONDS"
printf '%-9s %-15s %-7s %8s %12s %12s\n' impl algorithm op count "per second" "CPU ms/op"
"$PYTHON" "$here/dkimrate.py" --facteur "$BIN" --dns "127.0.0.1:$dns_port" --domain "$DOMAIN" --records "$work/records.txt" \
  --message "$work/message.eml" --count "$COUNT" --seconds "$DKIMPY_SECONDS" \
  --key "rsa-sha256:brsa:$rsa_key" --key "ed25519-sha256:bed:$ed_key" |
  while IFS=$'\t' read -r impl algorithm op count rate cpu; do
    printf '%-9s %-15s %-7s %8s %12s %12s\n' "$impl" "$algorithm" "$op" "$count" "$rate" "$cpu"
  done
fi
[[ " $PARTS " == *" b "* ]] || exit 0

# --- (b) inbound SMTP: two servers, checks off and on, measured in alternation (ROUNDS times
# each) so that a change in the machine's load hits both alike.
sign_args=()
for algorithm in $SIGN; do
  case "$algorithm" in
    rsa) sign_args+=(--sign "rsa-sha256:brsa:$rsa_key") ;;
    ed25519) sign_args+=(--sign "ed25519-sha256:bed:$ed_key") ;;
    none) ;;
    *) echo "bench: SIGN must list rsa, ed25519 or none" >&2; exit 1 ;;
  esac
done
ticks="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
send() { # port count → the key=value line of sendload.py
  "$PYTHON" "$here/sendload.py" --port "$1" --count "$2" --clients "$CLIENTS" --time-cap "$TIME_CAP" \
    --users "$USERS" --size "$SIZE" --from-domain "$DOMAIN" --mail-from "bounce@$DOMAIN" --helo "mx.$DOMAIN" \
    ${sign_args[@]+"${sign_args[@]}"}
}

declare -A pid port
for mode in off on; do
  data="$work/data-$mode"
  mkdir -p "$data"
  verify=false; [ "$mode" = on ] && verify=true
  cat >"$work/$mode.toml" <<CONFIG
dns_servers = ["127.0.0.1:$dns_port"]
[mail_auth]
verify_inbound = $verify
trusted_networks = []
CONFIG
  : >"$work/$mode.stdout"
  "$BIN" serve --config "$work/$mode.toml" --data "$data" --listen smtp=127.0.0.1:0 >"$work/$mode.stdout" 2>"$work/$mode.log" &
  pid[$mode]=$!
  servers+=" ${pid[$mode]}"
  port[$mode]=""
  for _ in $(seq 1 600); do
    port[$mode]="$(sed -n 's/^LISTENING smtp 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/$mode.stdout" | head -1 || true)"
    [ -n "${port[$mode]}" ] && break
    kill -0 "${pid[$mode]}" 2>/dev/null || { echo "bench: facteur exited:" >&2; cat "$work/$mode.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "${port[$mode]}" ] || { echo "bench: facteur did not announce its SMTP port" >&2; exit 1; }
  for i in $(seq 1 "$USERS"); do
    echo "bench-password-$i" | "$BIN" account add "user$i@localhost" --password-stdin --data "$data" --config "$work/$mode.toml" >/dev/null
  done
  if [ "$WARMUP" -gt 0 ]; then send "${port[$mode]}" "$WARMUP" >/dev/null 2>&1; fi
done

printf '\n(b) inbound SMTP (port 25 role), %s-octet messages signed with: %s; %s messages per run (cap %ss), %s sessions, after %s warm-up\n' \
  "$SIZE" "$SIGN" "$MESSAGES" "$TIME_CAP" "$CLIENTS" "$WARMUP"
printf '%-7s %5s %10s %7s %9s %9s %9s %15s %15s\n' checks round delivered errors "msg/s" "p50 ms" "p99 ms" "server cpu/msg" "sender cpu/msg"
for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    before="$(cpu_ticks "${pid[$mode]}")"
    out="$(send "${port[$mode]}" "$MESSAGES" 2>"$work/$mode.send.err")" || true
    after="$(cpu_ticks "${pid[$mode]}")"
    [ -s "$work/$mode.send.err" ] && cat "$work/$mode.send.err" >&2
    get() { echo "$out" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    delivered="$(get delivered)"
    if [ -z "$delivered" ] || [ "$delivered" = 0 ]; then
      echo "bench: nothing delivered with checks $mode: $out" >&2; continue
    fi
    server_ms="$(awk -v a="$before" -v b="$after" -v t="$ticks" -v d="$delivered" 'BEGIN { printf "%.3f ms", (b - a) / t * 1000 / d }')"
    sender_ms="$(awk -v c="$(get generator_cpu_s)" -v d="$delivered" 'BEGIN { printf "%.3f ms", c * 1000 / d }')"
    printf '%-7s %5s %10s %7s %9s %9s %9s %15s %15s\n' "$mode" "$round" "$delivered" "$(get errors)" "$(get msgs_per_s)" \
      "$(get p50_ms)" "$(get p99_ms)" "$server_ms" "$sender_ms"
    echo "$mode $(get msgs_per_s) $(get p50_ms) ${server_ms% ms}" >>"$work/rows"
  done
done
# Means over the rounds: the machine's load moves single runs more than the checks do.
for mode in off on; do
  awk -v m="$mode" '$1 == m { n++; rate += $2; p50 += $3; cpu += $4 }
    END { if (n) printf "%-7s %5s %10s %7s %9.1f %9.2f %9s %12.3f ms\n", m, "mean", "", "", rate / n, p50 / n, "", cpu / n }' \
    "$work/rows" 2>/dev/null || true
done

# What the checks concluded, from the first message user1 received on each server.
for mode in off on; do
  verdict="$("$BIN" message show user1@localhost INBOX 1 --data "$work/data-$mode" --config "$work/$mode.toml" 2>/dev/null |
    awk '/^Authentication-Results:/ { line = $0; while ((getline more) > 0 && more ~ /^[ \t]/) line = line more; print line; exit }' |
    tr -s ' \t' ' ' | tr -d '\r')"
  echo "  checks $mode: ${verdict:-no Authentication-Results field}"
done
