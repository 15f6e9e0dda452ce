#!/usr/bin/env bash
# bench/restart_storm.sh: a broker restart readmits a fleet in seconds (issue 9,
# docs/benchmarks.md "Issue 9").
#
# USERS (10000) users, each with a device token (made here with python3: 32 random bytes,
# its SHA-256 in the tokens table, as token.create does). Per round (ROUNDS, 3):
#   - the broker is restarted (SIGTERM, start again; the plugin's caches start empty, as
#     after any restart);
#   - a probe pair (u0 sends to u1 at 50 msg/s, QoS 1) connects first and measures
#     publish -> delivery for 15 s, while
#   - every other user connects at once with its token, each
#     refused one retrying every second (what paho and MQTT.js do), until all are in
#     (WINDOW CONNECTs in flight at a time: see below).
# The probe's idle p99 is measured the same way with no storm, in each round.
# Then the same storm with passwords: at the default 210,000 iterations and at 1,000
# (PW_USERS users, capped at PW_FOR s), and the first-pass connect rate of tokens against
# mosquitto's own password_file (mosquitto_passwd: 101 iterations) in the same run.
#
#   bench/restart_storm.sh    (BUILD=path/to/build, USERS, ROUNDS, PW_USERS=2000, PW_FOR=60, WINDOW=64)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

USERS=${USERS:-10000}
ROUNDS=${ROUNDS:-3}
PW_USERS=${PW_USERS:-2000}
PW_FOR=${PW_FOR:-60}
# CONNECTs in flight at once. Mosquitto listens with a backlog of 100 (net.c): past it the
# kernel drops SYNs and clients retransmit after 1 s, 3 s, 7 s, whatever the plugin does.
WINDOW=${WINDOW:-64}
RATE_ROUNDS=${RATE_ROUNDS:-5}
PHASES=${PHASES:-storm passwords rates} # which parts to run
bench_init

seed_db "$BENCH_DIR/chat.db" "$BENCH_DIR/rooms.txt" "$USERS" "$((USERS / 2))" 2
head -1 "$BENCH_DIR/rooms.txt" >"$BENCH_DIR/probe_room.txt"
python3 - "$BENCH_DIR/chat.db" "$BENCH_DIR/tokens.txt" "$USERS" <<'EOF'
import base64, hashlib, os, sqlite3, sys, time
db, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = sqlite3.connect(db)
now = int(time.time() * 1000)
rows = []
with open(out, "w") as f:
    for i in range(n):
        secret = "mqt_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        rows.append(("tk%016x" % i, "u%d" % i, "bench", hashlib.sha256(secret.encode()).hexdigest(), now))
        if i >= 2:
            f.write("u%d %s\n" % (i, secret))
con.executemany("INSERT INTO tokens(id, user_id, name, hash, created_at) VALUES (?,?,?,?,?)", rows)
con.commit()
EOF
echo "# $USERS users with a device token each"

start_mqchat "$BENCH_DIR/chat.db" </dev/null
start_bridge "$BENCH_DIR/chat.db" "$PORT"
sleep 1

probe() { # LABEL SECONDS
	"$LOADGEN" --port "$PORT" --users-file <(printf 'u0\nu1\n') --rooms-file "$BENCH_DIR/probe_room.txt" \
		--password "$BENCH_PW" --publishers 1 --qos 1 --rate 50 --duration "$2" --warmup 1 --drain 2 \
		--mode mqchat --label "$1" --connect-retries 30 --nodelay 2>/dev/null | grep '^{'
}
restart_broker() {
	stop_pid "$BROKER_PID"
	start_broker "m$1" "$BENCH_DIR/m.conf"
}

stats() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "min %s median %s max %s", a[1], a[int((NR+1)/2)], a[NR]}'; }
idle=() storm=() lastin=() out=()
[[ " $PHASES " == *" storm "* ]] || ROUNDS=0
for r in $(seq 1 "$ROUNDS"); do
	p=$(probe "idle$r" 10)
	idle+=("$(jq .p99_us <<<"$p")")
	restart_broker "$r"
	probe "storm$r" 15 >"$BENCH_DIR/probe$r.json" &
	ppid=$!
	sleep 1.5 # the probe is in first
	"$LOADGEN" --port "$PORT" --passwords-file "$BENCH_DIR/tokens.txt" --connect-only --connect-window "$WINDOW" \
		--retry-for 60 --retry-ms 1000 --label "tokens$r" 2>/dev/null >"$BENCH_DIR/storm$r.out"
	wait "$ppid"
	s=$(grep '"kind":"storm"' "$BENCH_DIR/storm$r.out")
	storm+=("$(jq .p99_us "$BENCH_DIR/probe$r.json")")
	lastin+=("$(jq .last_in_s <<<"$s")")
	out+=("$(jq .out <<<"$s")")
	echo "# round $r: $(grep '^# ' "$BENCH_DIR/storm$r.out" | sed 's/^# //'); probe p99 idle $(jq .p99_us <<<"$p") us, during the storm $(jq .p99_us "$BENCH_DIR/probe$r.json") us"
done
stop_pid "$BRIDGE_PID"
stop_pid "$BROKER_PID"

ratios=()
for i in "${!idle[@]}"; do ratios+=("$(awk -v a="${storm[$i]}" -v b="${idle[$i]}" 'BEGIN{printf "%.2f", a/b}')"); done
[ "$ROUNDS" -gt 0 ] && echo "# tokens, $((USERS - 2)) users at once after a restart, $ROUNDS rounds: last one in after $(stats "${lastin[@]}") s (target <= 10); still out: $(stats "${out[@]}")"
[ "$ROUNDS" -gt 0 ] && echo "# probe publish->delivery p99 during the storm / idle: $(stats "${ratios[@]}") (target <= 2)"

# Passwords, for comparison: PW_USERS users, the same storm.
head -n "$PW_USERS" "$BENCH_DIR/tokens.txt" | awk -v pw="$BENCH_PW" '{print $1, pw}' >"$BENCH_DIR/pw.txt"
[[ " $PHASES " == *" passwords "* ]] || PW_ITERATIONS=""
for it in ${PW_ITERATIONS-210000 1000}; do
	rm -f "$BENCH_DIR"/pw.db*
	seed_db "$BENCH_DIR/pw.db" "$BENCH_DIR/pw_rooms.txt" "$((PW_USERS + 2))" 1 2 u "$it"
	start_mqchat "$BENCH_DIR/pw.db" </dev/null
	"$LOADGEN" --port "$PORT" --passwords-file "$BENCH_DIR/pw.txt" --connect-only --connect-window "$WINDOW" \
		--retry-for "$PW_FOR" --retry-ms 1000 --label "passwords-$it" 2>/dev/null | grep '^# ' || true
	stop_pid "$BROKER_PID"
done

[[ " $PHASES " == *" rates "* ]] || RATE_ROUNDS=0
# First-pass connects/s: tokens on mqchat against mosquitto's password_file (101
# iterations), RATE_ROUNDS alternating rounds.
cut -d' ' -f1 "$BENCH_DIR/tokens.txt" >"$BENCH_DIR/users.txt"
m_rates=() b_rates=() r_rates=()
for r in $(seq 1 "$RATE_ROUNDS"); do
	start_mqchat "$BENCH_DIR/chat.db" </dev/null
	m=$("$LOADGEN" --port "$PORT" --passwords-file "$BENCH_DIR/tokens.txt" --connect-only --connect-window 64 \
		--label "M tokens" 2>/dev/null | grep '"kind":"connect"' | jq .connects_per_s)
	stop_pid "$BROKER_PID"
	start_baseline_b "$BENCH_DIR/users.txt"
	b=$("$LOADGEN" --port "$PORT" --users-file "$BENCH_DIR/users.txt" --password "$BENCH_PW" --connect-only \
		--connect-window 64 --mode raw --label "B password_file" 2>/dev/null | grep '"kind":"connect"' | jq .connects_per_s)
	stop_pid "$BROKER_PID"
	echo "# rate round $r: M tokens $m connects/s, B password_file $b connects/s"
	m_rates+=("$m") b_rates+=("$b") r_rates+=("$(awk -v a="$m" -v b="$b" 'BEGIN{printf "%.2f", a/b}')")
done
[ "$RATE_ROUNDS" -gt 0 ] && echo "# first-pass connects/s over $RATE_ROUNDS rounds: M tokens $(stats "${m_rates[@]}"); B password_file $(stats "${b_rates[@]}"); M/B $(stats "${r_rates[@]}")"
