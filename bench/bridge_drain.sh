#!/usr/bin/env bash
# bench/bridge_drain.sh: the bridge's own storing rate, isolated from the load generator.
# 1,000 rooms of 2 members; the bridge connects once (its persistent session exists), is
# stopped, N_SECONDS of QoS 1 saturation are published and kept for it by the plugin,
# then the bridge is started alone and the stored
# count is sampled every second until it stops growing.
#   BUILD=$PWD/build-bench bench/bridge_drain.sh     (N_SECONDS=8, BRIDGE_ARGS="--batch-max N")
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init
N_SECONDS=${N_SECONDS:-8}
seed_db "$BENCH_DIR/chat.db" "$BENCH_DIR/rooms.txt" 2000 1000 2
# the backlog waits in the plugin: bounds high enough to hold N_SECONDS of saturation
start_mqchat "$BENCH_DIR/chat.db" <<EOF
plugin_opt_unconfirmed_max_messages 5000000
plugin_opt_unconfirmed_max_bytes 4294967296
EOF
start_bridge "$BENCH_DIR/chat.db" "$PORT"
for _ in $(seq 1 100); do grep -q 'bridge: ready' "$BENCH_DIR/bridge.log" && break; sleep 0.1; done
stop_pid "$BRIDGE_PID"
"$LOADGEN" --port "$PORT" --mode mqchat --users 2000 --rooms-file "$BENCH_DIR/rooms.txt" --publishers 1000 \
	--qos 1 --password "$BENCH_PW" --duration "$N_SECONDS" --warmup 1 --drain 1 --subscribers-per-room 0 \
	--saturate --window 8 --connect-retries 60 2>/dev/null | grep '^#'
queued=$(sqlite3 "$BENCH_DIR/chat.db" 'SELECT count(*) FROM messages')
t0=$(date +%s%N)
start_bridge "$BENCH_DIR/chat.db" "$PORT"
prev=$queued first=
while :; do
	sleep 1
	n=$(sqlite3 "$BENCH_DIR/chat.db" 'SELECT count(*) FROM messages')
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	echo "t=${ms} ms stored=$n"
	[ -z "$first" ] && [ "$n" -gt "$queued" ] && first=$ms
	[ "$n" = "$prev" ] && break
	prev=$n last=$ms
done
echo "bridge drain: $((prev - queued)) messages in $((last - first)) ms after the first commit = $(( (prev - queued) * 1000 / (last - first + 1) )) msg/s"
