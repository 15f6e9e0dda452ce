#!/usr/bin/env bash
# bench/scenario1.sh: the cost of being a chat system (docs/benchmarks.md, scenario 1).
#
# 100 rooms x 10 members (1,000 users, every member subscribed to its room), 100
# publishers (one per room), QoS 0, saturation: each publisher keeps at most WINDOW
# messages whose own copy has not come back to it (closed loop, so queues stay bounded and
# latency means something). Runs A (bare mosquitto, raw), B (password_file + 20-line
# acl_file, raw) and M (mqchat plugin, publish to .../send) alternately ROUNDS times and
# prints the median of each figure with the ratios M/A and M/B.
#
#   bench/scenario1.sh            (BUILD=path/to/build, DURATION=10, ROUNDS=2, WINDOW=2, SIZE=64)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-2}
WINDOW=${WINDOW:-2}
SIZE=${SIZE:-64}
USERS=1000 ROOMS=100 MEMBERS=10 PUBS=100

bench_init
seed_db "$BENCH_DIR/chat.db" "$BENCH_DIR/rooms.txt" $USERS $ROOMS $MEMBERS
seq 0 $((USERS - 1)) | sed 's/^/u/' >"$BENCH_DIR/users.txt"
make_baseline_b_files "$BENCH_DIR/users.txt"

common=(--users $USERS --rooms-file "$BENCH_DIR/rooms.txt" --publishers $PUBS --qos 0 --saturate
	--window "$WINDOW" --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" --drain 3 --connect-retries 30)

run_one() { # KIND ROUND
	local kind=$1 r=$2
	case $kind in
	A) start_baseline_a
	   run_loadgen "$BROKER_PID" "$BENCH_DIR/A.$r.json" --port "$PORT" --mode raw --label A "${common[@]}" ;;
	B) start_baseline_b "$BENCH_DIR/users.txt"
	   run_loadgen "$BROKER_PID" "$BENCH_DIR/B.$r.json" --port "$PORT" --mode raw --password "$BENCH_PW" --label B "${common[@]}" ;;
	M) # with the bridge: the plugin keeps every message until the bridge has committed it
	   # and sends each to it (without a bridge its bound fills and it refuses sends)
	   start_mqchat "$BENCH_DIR/chat.db" </dev/null
	   start_bridge "$BENCH_DIR/chat.db" "$PORT"
	   run_loadgen "$BROKER_PID" "$BENCH_DIR/M.$r.json" --port "$PORT" --mode mqchat --password "$BENCH_PW" --label M "${common[@]}"
	   stop_pid "$BRIDGE_PID" ;;
	esac
	stop_pid "$BROKER_PID"
}

for r in $(seq 1 "$ROUNDS"); do
	for k in A B M; do
		run_one $k "$r"
	done
done

# median KIND FIELD
median() {
	cat "$BENCH_DIR/$1".*.json | jq -s "[.[].$2] | sort | .[(length - 1) / 2 | floor]"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "# scenario 1: $ROOMS rooms x $MEMBERS members, $PUBS publishers, QoS 0, window $WINDOW, body $SIZE B, ${DURATION}s x $ROUNDS rounds (medians)"
printf '%-34s %12s %12s %12s %8s %8s\n' figure A B M M/A M/B
for f in deliveries_per_s msgs_per_s broker_cpu_us_per_delivery p50_us p99_us p999_us lost duplicates client_cpu_s; do
	a=$(median A $f) b=$(median B $f) m=$(median M $f)
	printf '%-34s %12s %12s %12s %8s %8s\n' "$f" "$a" "$b" "$m" "$(ratio "$m" "$a")" "$(ratio "$m" "$b")"
done
a=$(median A deliveries_per_s) b=$(median B deliveries_per_s) m=$(median M deliveries_per_s)
echo "target: M/A >= 0.85 -> $(ratio "$m" "$a"); M/B >= 3 -> $(ratio "$m" "$b")"
