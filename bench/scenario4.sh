#!/usr/bin/env bash
# bench/scenario4.sh: many connections (docs/benchmarks.md, scenario 4).
#
# 10,000 users i0..i9999, each in 5 rooms (10,000 rooms of 5), mostly idle; plus the
# scenario-1 fan-out population u0..u999 (100 rooms x 10) on other rooms.
#   first connect  : every idle user connects once (slow hash at 1,000 PBKDF2 iterations,
#                    under the plugin's default 250 ms/s hash budget); connects/s, refusals
#   reconnect      : the same 10,000 again (verified-credential cache): connects/s
#   wrong password : 2,000 users with a wrong password: attempts/s and broker CPU/attempt
#   memory         : broker VmRSS with the 10,000 connected and subscribed, minus before,
#                    per connection; the same for bare mosquitto (anonymous)
#   fan-out        : scenario-1 traffic (window 2, QoS 0) with the 10,000 idle connected vs none
#
#   bench/scenario4.sh            (BUILD=path/to/build, IDLE=10000, DURATION=8)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

IDLE=${IDLE:-10000}
DURATION=${DURATION:-8}
WRONG=${WRONG:-2000}
HOLD=600 # the idle holder is stopped with SIGTERM once its figures are taken

bench_init
seed_db "$BENCH_DIR/chat.db" "$BENCH_DIR/idle_rooms.txt" "$IDLE" "$IDLE" 5 i
seed_db "$BENCH_DIR/chat.db" "$BENCH_DIR/rooms.txt" 1000 100 10 u
idle=(--users "$IDLE" --user-prefix i --rooms-file "$BENCH_DIR/idle_rooms.txt" --connect-window 64)
fan=(--users 1000 --rooms-file "$BENCH_DIR/rooms.txt" --publishers 100 --qos 0 --saturate --window 2
	--duration "$DURATION" --warmup 2 --drain 3 --connect-retries 30)

# hold KIND ARGS...: starts idle holders in the background (two of IDLE/2 users each:
# libmosquitto 2.0 takes three file descriptors per client and the hard limit here may be
# 20,000), waits until they are connected and subscribed; sets HOLD_PIDS.
hold() {
	local kind=$1 half=$((IDLE / 2)) h i
	shift
	HOLD_PIDS=()
	for h in 0 1; do
		rm -f "$BENCH_DIR/ready$h"
		"$LOADGEN" --port "$PORT" --users $half --first-user $((h * half)) --user-prefix i \
			--rooms-file "$BENCH_DIR/idle_rooms.txt" --connect-window 64 --publishers 0 --warmup 0 \
			--duration $HOLD --ready-file "$BENCH_DIR/ready$h" --connect-retries 60 --label "hold-$kind" "$@" \
			>"$BENCH_DIR/hold-$kind$h.txt" 2>"$BENCH_DIR/hold-$kind$h.err" &
		HOLD_PIDS+=($!)
		BENCH_PIDS+=($!)
	done
	for i in $(seq 1 1800); do
		[ -e "$BENCH_DIR/ready0" ] && [ -e "$BENCH_DIR/ready1" ] && return 0
		sleep 0.1
	done
	echo "bench: idle holders ($kind) not ready after 180 s" >&2
	tail -3 "$BENCH_DIR"/hold-"$kind"*.err >&2
	return 1
}
unhold() {
	local p
	for p in "${HOLD_PIDS[@]}"; do stop_pid "$p"; done
}

# connect_cost OUT ARGS...: a --connect-only run with the broker CPU it cost.
connect_cost() {
	local out=$1 t0 t1
	shift
	t0=$(cpu_ticks "$BROKER_PID")
	"$LOADGEN" --port "$PORT" --connect-only "$@" >"$out.txt"
	t1=$(cpu_ticks "$BROKER_PID")
	grep '^#' "$out.txt" >&2
	grep '^{' "$out.txt" | jq -c --argjson t $((t1 - t0)) --argjson hz "$CLK_TCK" \
		'. + {broker_cpu_s: ($t / $hz), broker_cpu_us_per_attempt: (if (.connected + .failed) > 0 then $t / $hz * 1e6 / (.connected + .failed) else null end)}' >"$out"
}

# ---------------------------------------------------------------- bare mosquitto
start_baseline_a
rss0=$(rss_kb "$BROKER_PID")
run_loadgen "$BROKER_PID" "$BENCH_DIR/A.none.json" --port "$PORT" --mode raw --label "A fan-out, none idle" "${fan[@]}"
hold A --mode raw
rss1=$(rss_kb "$BROKER_PID")
run_loadgen "$BROKER_PID" "$BENCH_DIR/A.idle.json" --port "$PORT" --mode raw --label "A fan-out, $IDLE idle" "${fan[@]}"
unhold
stop_pid "$BROKER_PID"
A_RSS_PER=$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')

# ---------------------------------------------------------------- mqchat
start_mqchat "$BENCH_DIR/chat.db" </dev/null
start_bridge "$BENCH_DIR/chat.db" "$PORT" # the plugin keeps every message until the bridge has it
rss0=$(rss_kb "$BROKER_PID")
connect_cost "$BENCH_DIR/M.first.json" "${idle[@]}" --password "$BENCH_PW" --label "M first connect"
run_loadgen "$BROKER_PID" "$BENCH_DIR/M.none.json" --port "$PORT" --mode mqchat --password "$BENCH_PW" --label "M fan-out, none idle" "${fan[@]}"
hold M --mode mqchat --password "$BENCH_PW"
rss1=$(rss_kb "$BROKER_PID")
run_loadgen "$BROKER_PID" "$BENCH_DIR/M.idle.json" --port "$PORT" --mode mqchat --password "$BENCH_PW" --label "M fan-out, $IDLE idle" "${fan[@]}"
unhold
sleep 1
connect_cost "$BENCH_DIR/M.re.json" "${idle[@]}" --password "$BENCH_PW" --label "M reconnect"
connect_cost "$BENCH_DIR/M.wrong.json" --users "$WRONG" --user-prefix i --password wrong-password --label "M wrong password"
stop_pid "$BRIDGE_PID"
stop_pid "$BROKER_PID"
M_RSS_PER=$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
j() { jq -r ".$2" "$BENCH_DIR/$1.json"; }
echo "# scenario 4: $IDLE idle users x 5 rooms; fan-out 100 rooms x 10, QoS 0, window 2, ${DURATION}s"
printf '%-44s %14s %10s\n' figure value target
printf '%-44s %14s %10s\n' "first connect, connects/s (refused)" "$(j M.first connects_per_s) ($(j M.first failed))" ""
printf '%-44s %14s %10s\n' "reconnect of known users, connects/s" "$(j M.re connects_per_s)" ">= 2000"
printf '%-44s %14s %10s\n' "reconnect, broker CPU us/connect" "$(j M.re broker_cpu_us_per_attempt | xargs printf '%.0f')" ""
printf '%-44s %14s %10s\n' "wrong password, attempts/s" "$(j M.wrong attempts_per_s)" ""
printf '%-44s %14s %10s\n' "wrong password, broker CPU us/attempt" "$(j M.wrong broker_cpu_us_per_attempt | xargs printf '%.0f')" ""
printf '%-44s %14s %10s\n' "broker RSS kB/connection, bare mosquitto" "$A_RSS_PER" ""
printf '%-44s %14s %10s\n' "broker RSS kB/connection, mqchat" "$M_RSS_PER" ""
printf '%-44s %14s %10s\n' "mqchat - bare, kB/connection" "$(awk -v a="$M_RSS_PER" -v b="$A_RSS_PER" 'BEGIN{printf "%.2f", a-b}')" "<= 3"
for k in A M; do
	n=$(j $k.none deliveries_per_s) i=$(j $k.idle deliveries_per_s)
	printf '%-44s %14s %10s\n' "$k fan-out deliveries/s none -> $IDLE idle" "$n -> $i" ""
	printf '%-44s %14s %10s\n' "$k fan-out ratio idle/none" "$(ratio "$i" "$n")" "$([ $k = M ] && echo '>= 0.9')"
done
