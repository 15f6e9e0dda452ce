#!/usr/bin/env bash
# bench/soak.sh: nothing acknowledged is lost, whatever happens (docs/benchmarks.md "Soak").
#
# DURATION (600) seconds of a steady QoS 1 load at RATE msg/s (5000: half of what this
# load stores at saturation on this 2-core machine, ~10,000-12,000 msg/s with the load
# generator's 200 client threads on the same cores) from 200 senders into 200 rooms (25
# msg/s each, under send_rate), with the broker configured as mosquitto.conf.example ships
# it, while:
#   - the bridge is killed with SIGKILL every KILL_EVERY (30) seconds and started again;
#   - the broker is stopped (SIGTERM) and started again once, at RESTART_AT (200) s;
#   - the bridge's writer is stalled for STALL_S (60) seconds from STALL_AT (360) s (a
#     sqlite3 process holds the database's write lock);
#   - one hostile user floods rooms.list requests at QoS 0 the whole time;
#   - 4 victims each make a history request every 100 ms and time the answer.
# mqchat-soak (bench/soak.c) prints acknowledged vs stored, by count and by id (every
# message has a unique client_msg_id; missing and duplicates must both be 0), the victims'
# round-trip percentiles and the publish -> stored lag; the script exits 1 if anything
# acknowledged is missing or doubled.
#
#   bench/soak.sh     (BUILD=path/to/build, DURATION, RATE, KILL_EVERY, RESTART_AT, STALL_AT, STALL_S)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-600}
RATE=${RATE:-5000}
KILL_EVERY=${KILL_EVERY:-30}
RESTART_AT=${RESTART_AT:-200}
STALL_AT=${STALL_AT:-360}
STALL_S=${STALL_S:-60}
SOAK=$BUILD/bench/mqchat-soak

bench_init
[ -x "$SOAK" ] || { echo "bench: $SOAK is missing: build first" >&2; exit 1; }
seed_db "$BENCH_DIR/chat.db" "$BENCH_DIR/rooms.txt" 2002 1001 2
FLOODER=$(awk 'NR == 1001 {print $3}' "$BENCH_DIR/rooms.txt")

# The broker as shipped: mosquitto.conf.example with our port, plugin and paths.
PORT=$(free_port)
example_conf "$BENCH_DIR/chat.db" "$PORT" "$BENCH_DIR/m.conf"
start_broker m "$BENCH_DIR/m.conf"
start_bridge "$BENCH_DIR/chat.db" "$PORT"

echo "# soak: ${DURATION} s at $RATE msg/s; bridge SIGKILL every ${KILL_EVERY} s; broker restart at ${RESTART_AT} s;" \
	"writer stall ${STALL_S} s from ${STALL_AT} s; flooder $FLOODER"
"$SOAK" --port "$PORT" --db "$BENCH_DIR/chat.db" --password "$BENCH_PW" --rooms-file "$BENCH_DIR/rooms.txt" \
	--senders 200 --rate "$RATE" --duration "$DURATION" --victims 4 --flooder "$FLOODER" \
	>"$BENCH_DIR/soak.out" 2>"$BENCH_DIR/soak.err" &
SOAK_PID=$!
BENCH_PIDS+=("$SOAK_PID")

log() { echo "# t=${1}s $2"; }
broker_rss_max=0 bridge_rss_max=0
for t in $(seq 1 "$DURATION"); do
	sleep 1
	r=$(rss_kb "$BROKER_PID" 2>/dev/null || echo 0); [ "${r:-0}" -gt "$broker_rss_max" ] && broker_rss_max=$r
	r=$(rss_kb "$BRIDGE_PID" 2>/dev/null || echo 0); [ "${r:-0}" -gt "$bridge_rss_max" ] && bridge_rss_max=$r
	if [ "$t" -eq "$RESTART_AT" ]; then
		log "$t" "broker: SIGTERM, start again"
		stop_pid "$BROKER_PID"
		start_broker m2 "$BENCH_DIR/m.conf"
	elif [ $((t % KILL_EVERY)) -eq 0 ]; then
		log "$t" "bridge: SIGKILL, start again"
		kill -KILL "$BRIDGE_PID" 2>/dev/null || true
		wait "$BRIDGE_PID" 2>/dev/null || true
		mv "$BENCH_DIR/bridge.log" "$BENCH_DIR/bridge.$t.log"
		start_bridge "$BENCH_DIR/chat.db" "$PORT"
	fi
	if [ "$t" -eq "$STALL_AT" ]; then
		log "$t" "writer stall: holding the write lock for ${STALL_S} s"
		{ echo "BEGIN IMMEDIATE;"; sleep "$STALL_S"; echo "ROLLBACK;"; } | sqlite3 "$BENCH_DIR/chat.db" &
		BENCH_PIDS+=("$!")
	fi
done
status=0
wait "$SOAK_PID" || status=$?
grep '^#' "$BENCH_DIR/soak.err" || true
cat "$BENCH_DIR/soak.out"
echo "# broker RSS max ${broker_rss_max} kB, bridge RSS max ${bridge_rss_max} kB (sampled every second)"
echo "# plugin log: $(cat "$BENCH_DIR"/m*.log | grep -c "refusing sends") times refusing sends, $(cat "$BENCH_DIR"/m*.log | grep -c "LOST") LOST lines," \
	"$(cat "$BENCH_DIR"/m*.log | grep -c "the bridge missed messages") resends"
if [ "$status" -ne 0 ]; then
	echo "soak: LOSS OR DUPLICATES (see above)" >&2
	exit 1
fi
echo "soak: every acknowledged message stored exactly once"
