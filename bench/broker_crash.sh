#!/usr/bin/env bash
# bench/broker_crash.sh: what a broker crash loses (docs/architecture.md "Durability").
#
# ROUNDS (5) rounds, each on a fresh database: a steady QoS 1 load at RATE (5000) msg/s
# with the bridge keeping up; after CRASH_AT (10) seconds the broker is killed with SIGKILL
# and started again at once (the same config, persistence on); the load goes on to
# DURATION (20) s. mqchat-soak then counts the acknowledged messages that are not stored:
# that is the loss, by id. The plugin's own count of it (its "LOST:" line
# after the restart: "... N messages it had stamped ...") is printed beside it.
#
#   bench/broker_crash.sh    (BUILD=path/to/build, ROUNDS, RATE, CRASH_AT, DURATION)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-5}
RATE=${RATE:-5000}
CRASH_AT=${CRASH_AT:-10}
DURATION=${DURATION:-20}
SOAK=$BUILD/bench/mqchat-soak

bench_init
[ -x "$SOAK" ] || { echo "bench: $SOAK is missing: build first" >&2; exit 1; }
lost_all=() logged_all=()
for r in $(seq 1 "$ROUNDS"); do
	rm -f "$BENCH_DIR"/chat.db* "$BENCH_DIR"/mosquitto.db
	seed_db "$BENCH_DIR/chat.db" "$BENCH_DIR/rooms.txt" 400 200 2
	PORT=$(free_port)
	example_conf "$BENCH_DIR/chat.db" "$PORT" "$BENCH_DIR/m.conf"
	start_broker "m$r" "$BENCH_DIR/m.conf"
	start_bridge "$BENCH_DIR/chat.db" "$PORT"
	"$SOAK" --port "$PORT" --db "$BENCH_DIR/chat.db" --password "$BENCH_PW" --rooms-file "$BENCH_DIR/rooms.txt" \
		--senders 200 --rate "$RATE" --duration "$DURATION" --victims 0 --drain-s 30 \
		>"$BENCH_DIR/soak.$r.out" 2>/dev/null &
	soak=$!
	BENCH_PIDS+=("$soak")
	sleep "$CRASH_AT"
	kill -KILL "$BROKER_PID"
	wait "$BROKER_PID" 2>/dev/null || true
	start_broker "m$r-after" "$BENCH_DIR/m.conf"
	wait "$soak" || true
	lost=$(grep '^{' "$BENCH_DIR/soak.$r.out" | jq .missing)
	acked=$(grep '^{' "$BENCH_DIR/soak.$r.out" | jq .acked)
	logged=$(grep -oE '(at least [0-9]+|[0-9]+ messages it had stamped)' "$BENCH_DIR/m$r-after.log" | grep -oE '[0-9]+' | head -1 || echo 0)
	echo "# round $r: $acked acknowledged, $lost lost to the broker crash (by id), ${logged:-0} logged as LOST by the plugin"
	lost_all+=("$lost")
	logged_all+=("${logged:-0}")
	stop_pid "$BRIDGE_PID"
	stop_pid "$BROKER_PID"
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "min %d median %d max %d", a[1], a[int((NR+1)/2)], a[NR]}'; }
echo "# broker SIGKILL at $RATE msg/s, bridge keeping up, $ROUNDS rounds: lost $(stats "${lost_all[@]}"); logged $(stats "${logged_all[@]}")"
