#!/usr/bin/env bash
# bench/scenario2.sh: everything stored (docs/benchmarks.md, scenario 2).
#
# 1,000 rooms of 2 members (2,000 users), 1,000 publishers (one per room) at QoS 1,
# saturation = each publisher keeps WINDOW unacknowledged publishes.
#   offline : members do not subscribe; the bridge is the only receiver
#   online  : both members of every room subscribe (QoS 1) as well
#   ceiling : the same broker + plugin without the bridge; one QoS 1 subscriber (the service
#             user, filter chat/rooms/+/messages, MQTT 5 with Receive Maximum 65535 as the
#             bridge) that only counts: what it receives while the window is open
#   half    : offline at half the stored rate of "offline", for the publish->stored lag
# Stored rate and lag: mqchat-loadgen --db polls `SELECT id, body FROM messages WHERE id > ?`
# every 2 ms in a second thread (read-only) and takes, for each new row, now minus the
# CLOCK_MONOTONIC send stamp in its body: the lag includes up to one poll interval.
# "stored msgs/s" counts the rows that appeared while the window was open (sustained);
# messages stored later, from a backlog, do not count. The backlog at the end of the window
# and the final loss check are printed too.
# Zero loss: after each run, every (publisher, seq) acknowledged must be in the table
# exactly once, and nothing twice (count and ids; checked with python3's sqlite3 against
# the loadgen's --sent-file). At saturation the plugin refuses sends once the bridge is
# too far behind (not acknowledged: the connection is closed), so a publisher may stop
# early; what it sent and was refused may be stored (at most once) or not.
#
#   bench/scenario2.sh            (BUILD=path/to/build, DURATION=60, WINDOW=8)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-60}
WINDOW=${WINDOW:-8}
bench_init
seed_db "$BENCH_DIR/chat.db" "$BENCH_DIR/rooms.txt" 2000 1000 2
# Publishers behave as paho and MQTT.js do: a connection the plugin closes (it refuses
# sends while the bridge is too far behind) comes back after 1 s and sends its
# unacknowledged messages again, each with a client_msg_id so that a resend whose PUBACK
# was lost in the close is delivered and stored once.
base=(--users 2000 --rooms-file "$BENCH_DIR/rooms.txt" --publishers 1000 --qos 1 --password "$BENCH_PW"
	--duration "$DURATION" --warmup 3 --drain 20 --connect-retries 60 --reconnect-ms 1000 --client-msg-id)

# check_stored RUN AFTER_ID: every message of RUN's sent file is stored exactly once.
check_stored() {
	python3 - "$BENCH_DIR/chat.db" "$BENCH_DIR/$1.sent" "$2" <<'EOF'
import sqlite3, sys
db, sent_file, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
sent, acked = {}, {}
for l in open(sent_file):
    p, n, a = (int(x) for x in l.split())
    sent[p], acked[p] = n, a
seen, dup, bad = {}, 0, 0
for (body,) in sqlite3.connect(db).execute("SELECT body FROM messages WHERE id > ?", (after,)):
    try:
        _, p, s = body.split(":", 3)[:3]
        p, s = int(p), int(s)
    except ValueError:
        bad += 1
        continue
    k = (p, s)
    if k in seen: dup += 1
    seen[k] = 1
# Every acknowledged message must be stored once; one sent but refused (no PUBACK: the
# broker closed the connection, "try again later") may be stored at most once.
missing = sum(1 for p, n in acked.items() for s in range(1, n + 1) if (p, s) not in seen)
total, total_acked = sum(sent.values()), sum(acked.values())
print(f"sent {total} acknowledged {total_acked} stored {len(seen)} missing {missing} duplicates {dup} unparsable {bad}")
sys.exit(0 if missing == 0 and dup == 0 else 1)
EOF
}
max_id() { sqlite3 "$BENCH_DIR/chat.db" 'SELECT coalesce(max(id),0) FROM messages'; }

# wait_stored N AFTER: until N rows above AFTER are stored (60 s).
wait_stored() {
	local i
	for i in $(seq 1 600); do
		[ "$(sqlite3 "$BENCH_DIR/chat.db" "SELECT count(*) FROM messages WHERE id > $2")" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 0
}

run_stored() { # NAME ARGS...
	local name=$1 before
	shift
	before=$(max_id)
	run_loadgen "$BROKER_PID" "$BENCH_DIR/$name.json" --port "$PORT" --mode mqchat --label "$name" \
		--db "$BENCH_DIR/chat.db" --sent-file "$BENCH_DIR/$name.sent" "${base[@]}" "$@"
	wait_stored "$(jq .acked_total "$BENCH_DIR/$name.json")" "$before"
	echo "$name: $(check_stored "$name" "$before" || echo 'LOSS OR DUPLICATES')" | tee "$BENCH_DIR/$name.check"
}

# ceiling first (no bridge, a counting QoS 1 subscriber), on a copy of the database: with
# no bridge the plugin keeps every message unconfirmed (bounds raised so that it does not
# refuse: what is measured is the broker + plugin), and spools them at the stop; that spool
# belongs to the copy and never reaches the database the other runs check.
cp "$BENCH_DIR/chat.db" "$BENCH_DIR/ceiling.db"
start_mqchat "$BENCH_DIR/ceiling.db" <<'CONF'
plugin_opt_unconfirmed_max_messages 100000000
plugin_opt_unconfirmed_max_bytes 8589934592
CONF
run_loadgen "$BROKER_PID" "$BENCH_DIR/ceiling.json" --port "$PORT" --mode mqchat --label ceiling \
	--subscribers-per-room 0 --saturate --window "$WINDOW" \
	--sink-user "$SERVICE_USER" --sink-password "$SERVICE_PW" --sink-filter 'chat/rooms/+/messages' "${base[@]}"
stop_pid "$BROKER_PID"

start_mqchat "$BENCH_DIR/chat.db" </dev/null
start_bridge "$BENCH_DIR/chat.db" "$PORT"
sleep 1
run_stored offline --subscribers-per-room 0 --saturate --window "$WINDOW"
run_stored online --saturate --window "$WINDOW"
half=$(jq '(.stored_in_window / .duration_s / 2) | floor' "$BENCH_DIR/offline.json")
run_stored half --subscribers-per-room 0 --rate "$half"
stop_pid "$BRIDGE_PID"
stop_pid "$BROKER_PID"

j() { jq -r ".$2" "$BENCH_DIR/$1.json"; }
ceil=$(j ceiling sink_recv_per_s | cut -d. -f1)
echo "# scenario 2: 1000 rooms x 2 members, 1000 publishers, QoS 1, window $WINDOW, ${DURATION}s"
printf '%-46s %14s %10s\n' figure value target
for r in offline online; do
	st=$(jq '.stored_in_window / .duration_s | floor' "$BENCH_DIR/$r.json")
	printf '%-46s %14s %10s\n' "$r: sent msgs/s (in the window)" "$(jq '.msgs_per_s | floor' "$BENCH_DIR/$r.json")" ""
	printf '%-46s %14s %10s\n' "$r: stored msgs/s (during the window)" "$st" ">= 50000"
	printf '%-46s %14s %10s\n' "$r: stored / ceiling ($ceil/s)" "$(awk -v a="$st" -v b="$ceil" 'BEGIN{printf "%.2f", a/b}')" ">= 0.8"
	printf '%-46s %14s %10s\n' "$r: lag p50/p99 ms" "$(jq -r '"\(.stored_lag_p50_us/1000)/\(.stored_lag_p99_us/1000)"' "$BENCH_DIR/$r.json")" ""
	printf '%-46s %14s %10s\n' "$r: loss check" "$(cut -d: -f2- "$BENCH_DIR/$r.check")" "0 missing"
done
printf '%-46s %14s %10s\n' "half rate ($half/s): publish->stored lag p50/p99 ms" \
	"$(jq -r '"\(.stored_lag_p50_us/1000)/\(.stored_lag_p99_us/1000)"' "$BENCH_DIR/half.json")" "p99 <= 50"
printf '%-46s %14s %10s\n' "half rate: loss check" "$(cut -d: -f2- "$BENCH_DIR/half.check")" "0 missing"
