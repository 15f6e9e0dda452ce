#!/usr/bin/env bash
# bench/scenario3.sh: history at scale (docs/benchmarks.md, scenario 3).
#
# Database: 10,000 rooms x 900 messages + a hot room of 1,000,000 + a room of 100 = 10,000,100
# messages (mqchat-histseed; ~70 s). It is cached in $CACHE_DIR under a version string and
# copied for each run (the loaded phase writes into it); without the cache it is seeded
# from scratch.
# Query sets (mqchat-reqbench as user "reader": MQTT 5, one request in flight, REQUESTS
# each after WARMUP unmeasured ones):
#   hist_newest  history of the hot room, newest page (50)
#   hist_deep    history of the hot room, 50 below the middle message (before = its id)
#   hist_normal  history of a 900-message room, newest page
#   count_hot    count of the hot room (1M)          count_small  count of the 100-message room
#   count_from   count of the hot room from one sender
# In-bridge time: the bridge's request timing (SIGUSR1 reports and resets), read after each
# set. Phases: idle, then loaded: mqchat-loadgen sends LOAD_RATE msg/s at QoS 1 into 1,000
# other rooms (2 members each, offline: the bridge is the only receiver; scenario 2's shape)
# while the same sets run again. LOAD_RATE=auto (default) is half of the rate at which the
# bridge drains a backlog into this database, at most 25,000 (half of scenario 2's target).
# Prints one line per figure with loaded/idle.
#
#   bench/scenario3.sh     (BUILD=path/to/build, REQUESTS=2000, WARMUP=200, LOAD_RATE=auto|N,
#                           CACHE_DIR=/tmp/mqchat-bench-cache, PERF=1 to perf-record the bridge
#                           during the loaded phase)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
LOAD_RATE=${LOAD_RATE:-auto}
LOAD_ROOMS=1000
CACHE_DIR=${CACHE_DIR:-/tmp/mqchat-bench-cache}
# Bump when mqchat-histseed or the schema changes what it makes.
SEED_VERSION=s3-v1-schema$(ls "$ROOT"/schema/*.sql | wc -l)-10000x900-hot1000000-small100
HISTSEED=$BUILD/bench/mqchat-histseed
REQBENCH=$BUILD/bench/mqchat-reqbench

bench_init
for f in "$HISTSEED" "$REQBENCH" "$BRIDGE_BIN" "$PLUGIN"; do
	[ -e "$f" ] || { echo "bench: $f is missing: build first (cmake --build $BUILD)" >&2; exit 1; }
done

# ---------------------------------------------------------------- the database
cached=$CACHE_DIR/$SEED_VERSION
if [ ! -f "$cached/chat.db" ]; then
	echo "# seeding $cached (no cache)"
	mkdir -p "$CACHE_DIR"
	tmp=$(mktemp -d "$CACHE_DIR/seeding.XXXXXX")
	t0=$(date +%s.%N)
	"$HISTSEED" --db "$tmp/chat.db" --password "$BENCH_PW" --info "$tmp/info" --rooms-file "$tmp/rooms.txt" \
		|| { rm -rf "$tmp"; exit 1; }
	echo "# seeded in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
	rm -rf "$cached"
	mv "$tmp" "$cached"
else
	echo "# using the cached database $cached ($(grep SEED_SECONDS "$cached/info"))"
fi
t0=$(date +%s.%N)
cp "$cached/chat.db" "$BENCH_DIR/chat.db"
cp "$cached/rooms.txt" "$BENCH_DIR/rooms.txt"
sync "$BENCH_DIR/chat.db" # write the copy back now, not during the measurements
. "$cached/info"
echo "# copied the database ($(du -h "$BENCH_DIR/chat.db" | cut -f1)) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"

# The query plans: every query must be an index search (no SCAN).
plans=$(sqlite3 "$BENCH_DIR/chat.db" <<EOF
EXPLAIN QUERY PLAN SELECT id, sender, ts, type, body, attachment, client_msg_id FROM messages WHERE room_id = '$HOT_ROOM' AND id > 0 AND id < $HOT_MID_ID ORDER BY id DESC LIMIT 51;
EXPLAIN QUERY PLAN SELECT id, sender, ts, type, body, attachment, client_msg_id FROM messages WHERE room_id = '$HOT_ROOM' AND sender = '$HOT_SENDER' AND id > 0 AND id < $HOT_MID_ID ORDER BY id DESC LIMIT 51;
EXPLAIN QUERY PLAN SELECT r.msg_count, max(0, r.msg_count - coalesce((SELECT s.seq FROM messages s WHERE s.room_id = r.id AND s.id <= rm.last_read_id ORDER BY s.id DESC LIMIT 1), 0)) FROM rooms r LEFT JOIN read_markers rm ON rm.user_id = '$READER' AND rm.room_id = r.id WHERE r.id = '$HOT_ROOM';
EXPLAIN QUERY PLAN SELECT n FROM room_sender_counts WHERE room_id = '$HOT_ROOM' AND sender = '$HOT_SENDER';
EOF
)
echo "$plans" | sed 's/^/# plan: /'
if echo "$plans" | grep -q 'SCAN'; then
	echo "bench: a history/count query scans instead of using an index (see the plans above)" >&2
	exit 1
fi

# ---------------------------------------------------------------- broker, bridge
start_mqchat "$BENCH_DIR/chat.db" </dev/null
start_bridge "$BENCH_DIR/chat.db" "$PORT"
for i in $(seq 1 100); do
	grep -q 'bridge: ready' "$BENCH_DIR/bridge.log" && break
	sleep 0.1
done
grep -q 'bridge: ready' "$BENCH_DIR/bridge.log" || { echo "bench: the bridge is not ready after 10 s" >&2; cat "$BENCH_DIR/bridge.log" >&2; exit 1; }

sets=(hist_newest hist_deep hist_normal count_hot count_small count_from)
declare -A request op
request[hist_newest]="{\"op\":\"history\",\"room\":\"$HOT_ROOM\",\"limit\":50}"
request[hist_deep]="{\"op\":\"history\",\"room\":\"$HOT_ROOM\",\"before\":$HOT_MID_ID,\"limit\":50}"
request[hist_normal]="{\"op\":\"history\",\"room\":\"$NORMAL_ROOM\",\"limit\":50}"
request[count_hot]="{\"op\":\"count\",\"room\":\"$HOT_ROOM\"}"
request[count_small]="{\"op\":\"count\",\"room\":\"$SMALL_ROOM\"}"
request[count_from]="{\"op\":\"count\",\"room\":\"$HOT_ROOM\",\"from\":\"$HOT_SENDER\"}"
for s in "${sets[@]}"; do op[$s]=$(jq -r .op <<<"${request[$s]}"); done

# bridge_stats OUT: SIGUSR1 the bridge, wait for its report, keep the report's lines in OUT.
bridge_stats() {
	local before i
	before=$(grep -c 'stats: request timing' "$BENCH_DIR/bridge.log" || true)
	kill -USR1 "$BRIDGE_PID"
	for i in $(seq 1 100); do
		[ "$(grep -c 'stats: request timing' "$BENCH_DIR/bridge.log" || true)" -gt "$before" ] && break
		sleep 0.05
	done
	sleep 0.05
	awk -v n="$before" '/stats: request timing/ {k++} k > n' "$BENCH_DIR/bridge.log" >"$1"
}
# stat_field FILE WHAT FIELD: p50/p99/max (us) or n from the line "op WHAT" / "flush WHAT".
stat_field() {
	awk -v w="$2" -v f="$3" '$5 == w { for (i = 6; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) { sub("us", "", kv[2]); print kv[2] } } }' "$1"
}

# run_sets PHASE: every query set, with the bridge's own figures after each.
run_sets() {
	local phase=$1 s
	for s in "${sets[@]}"; do
		"$REQBENCH" --port "$PORT" --user "$READER" --password "$BENCH_PW" --requests "$WARMUP" --warmup 0 \
			--timeout-ms 60000 \
			--label "$phase.$s.warmup" --request "${request[$s]}" >/dev/null 2>"$BENCH_DIR/$phase.$s.warmup.err" \
			|| { cat "$BENCH_DIR/$phase.$s.warmup.err" >&2; exit 1; }
		bridge_stats "$BENCH_DIR/$phase.$s.warm.stats"
		"$REQBENCH" --port "$PORT" --user "$READER" --password "$BENCH_PW" --requests "$REQUESTS" --warmup 0 \
			--timeout-ms 60000 \
			--label "$phase.$s" --request "${request[$s]}" >"$BENCH_DIR/$phase.$s.json"
		bridge_stats "$BENCH_DIR/$phase.$s.stats"
	done
}

echo "# idle: ${#sets[@]} query sets x $REQUESTS requests (after $WARMUP unmeasured)"
run_sets idle

# ---------------------------------------------------------------- loaded
# stored_since ID: rows stored above ID (a rowid range: cheap on the 10M table).
stored_since() { sqlite3 "$BENCH_DIR/chat.db" "SELECT count(*) FROM messages WHERE id > $1"; }
# start_load RATE|saturate SECONDS NAME [DRAIN]: mqchat-loadgen in the background, 1 publisher per room
# of the first LOAD_ROOMS regular rooms, QoS 1, window 8; sets LOAD_PID once it is connected.
start_load() {
	local how=(--rate "$1")
	[ "$1" = saturate ] && how=(--saturate)
	rm -f "$BENCH_DIR/$3.ready"
	nice -n "${LOAD_NICE:-0}" "$LOADGEN" --broker-pid "$BROKER_PID" --port "$PORT" --mode mqchat --label "$3" --users $((2 * LOAD_ROOMS)) \
		--rooms-file "$BENCH_DIR/rooms.txt" --rooms "$LOAD_ROOMS" --publishers "$LOAD_ROOMS" --qos 1 \
		--password "$BENCH_PW" "${how[@]}" --window 8 --subscribers-per-room 0 --duration "$2" --warmup 3 \
		--drain "${4:-0}" --connect-retries 60 --ready-file "$BENCH_DIR/$3.ready" >"$BENCH_DIR/$3.txt" 2>&1 &
	LOAD_PID=$!
	BENCH_PIDS+=("$LOAD_PID")
	for i in $(seq 1 600); do
		[ -e "$BENCH_DIR/$3.ready" ] && return 0
		kill -0 "$LOAD_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: the load generator ($3) did not get ready" >&2
	cat "$BENCH_DIR/$3.txt" >&2
	exit 1
}
# forget_pid PID: a process already waited for leaves BENCH_PIDS (bench_cleanup runs under
# set -e, and a kill of a reaped PID would end it before it removes $BENCH_DIR).
forget_pid() {
	local p keep=()
	for p in "${BENCH_PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	BENCH_PIDS=("${keep[@]}")
}
# wait_stored N AFTER SECONDS: until N rows above AFTER are stored.
wait_stored() {
	local i
	for i in $(seq 1 $((10 * $3))); do
		[ "$(stored_since "$2")" -ge "$1" ] && return 0
		sleep 0.1
	done
	echo "bench: WARNING: $(stored_since "$2") of $1 messages stored after $3 s" >&2
}

before_id=$(sqlite3 "$BENCH_DIR/chat.db" 'SELECT max(id) FROM messages')
load_how="LOAD_RATE as given"
if [ "$LOAD_RATE" = auto ]; then
	# What the bridge sustains on this database: its drain rate. A burst (PROBE_RATE msg/s
	# for 5 s) builds a backlog in the broker; once the senders stop, the stored rows are
	# counted until the backlog is gone (the bridge and the broker have the machine to
	# themselves, as scenario 2's drain). The load is then half of that, at most 25,000.
	probe_rate=${PROBE_RATE:-30000}
	start_load "$probe_rate" 2 probe 2
	wait "$LOAD_PID" || { cat "$BENCH_DIR/probe.txt" >&2; exit 1; }
	forget_pid "$LOAD_PID"
	# acked: what the broker took (a publish still unacknowledged when the senders stop may be lost)
	psent=$(grep '^{' "$BENCH_DIR/probe.txt" | jq .acked_total)
	c0=$(stored_since "$before_id") p0=$(date +%s.%N)
	wait_stored "$psent" "$before_id" 180
	c1=$(stored_since "$before_id") p1=$(date +%s.%N)
	if [ $((psent - c0)) -lt 20000 ]; then
		sustained=">= $probe_rate"
		LOAD_RATE=25000
	else
		sustained=$(awk -v a="$c0" -v b="$c1" -v s="$p0" -v e="$p1" 'BEGIN{printf "%.0f", (b-a)/(e-s)}')
		LOAD_RATE=$((sustained / 2 < 25000 ? sustained / 2 : 25000))
	fi
	echo "# probe: $psent messages at $probe_rate msg/s; $((psent - c0)) were still queued when the senders stopped; the bridge drained them at $sustained msg/s"
	load_how="half of the bridge's drain rate on this database, $sustained msg/s, at most 25000"
	before_id=$(sqlite3 "$BENCH_DIR/chat.db" 'SELECT max(id) FROM messages')
fi
load_seconds=$(( 30 + REQUESTS / 100 ))
echo "# loaded: $LOAD_RATE msg/s at QoS 1 into $LOAD_ROOMS rooms for ${load_seconds}s, then the same sets"
start_load "$LOAD_RATE" "$load_seconds" load
sleep 5 # past the load's warm-up: the bridge is storing at the full rate
ticks0=$(cpu_ticks "$BRIDGE_PID") bticks0=$(cpu_ticks "$BROKER_PID") t0=$(date +%s.%N)
if [ -n "${PERF:-}" ]; then
	perf record -g -p "$BRIDGE_PID" -o "$BENCH_DIR/perf.data" -- sleep 10 >/dev/null 2>&1 &
	PERF_PID=$!
fi
run_sets loaded
ticks1=$(cpu_ticks "$BRIDGE_PID") bticks1=$(cpu_ticks "$BROKER_PID") t1=$(date +%s.%N)
kill -0 "$LOAD_PID" 2>/dev/null || echo "bench: WARNING: the load ended before the loaded query sets did; raise load_seconds" >&2
if [ -n "${PERF:-}" ]; then
	wait "$PERF_PID" || true
	perf report -i "$BENCH_DIR/perf.data" --no-children -g none --percent-limit 0.7 --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -25 >"$BENCH_DIR/perf.txt" || true
fi
wait "$LOAD_PID" || { echo "bench: mqchat-loadgen failed" >&2; cat "$BENCH_DIR/load.txt" >&2; exit 1; }
forget_pid "$LOAD_PID"
grep '^#' "$BENCH_DIR/load.txt" | grep -v retry || true
grep '^{' "$BENCH_DIR/load.txt" >"$BENCH_DIR/load.json"
sent=$(jq .acked_total "$BENCH_DIR/load.json")
for i in $(seq 1 300); do
	stored=$(stored_since "$before_id")
	[ "$stored" -ge "$sent" ] && break
	sleep 0.1
done
span=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
bridge_cpu=$(awk -v a="$ticks0" -v b="$ticks1" -v s="$span" -v hz="$CLK_TCK" 'BEGIN{printf "%.0f", 100*(b-a)/hz/s}')
broker_cpu=$(awk -v a="$bticks0" -v b="$bticks1" -v s="$span" -v hz="$CLK_TCK" 'BEGIN{printf "%.0f", 100*(b-a)/hz/s}')

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "# scenario 3: $MESSAGES messages in $ROOMS rooms (hot $HOT_MESSAGES, small $SMALL_MESSAGES, normal $NORMAL_MESSAGES);"
echo "# $REQUESTS requests per set; load $LOAD_RATE msg/s QoS 1 into $LOAD_ROOMS rooms ($load_how): acknowledged by the broker $sent, stored $stored;"
echo "# during the loaded sets the bridge used ${bridge_cpu}% CPU and the broker ${broker_cpu}% (of one core)"
printf '%-34s %10s %10s %8s %10s\n' figure idle loaded ld/idle target
for s in "${sets[@]}"; do
	o=${op[$s]}
	case $o in history) t50="<= 200" t99="<= 2000" ;; *) t50="" t99="<= 500" ;; esac
	for f in p50 p99 max; do
		i=$(stat_field "$BENCH_DIR/idle.$s.stats" "$o" "$f") l=$(stat_field "$BENCH_DIR/loaded.$s.stats" "$o" "$f")
		t=""; [ $f = p50 ] && t=$t50; [ $f = p99 ] && t=$t99
		printf '%-34s %10s %10s %8s %10s\n' "$s bridge $f us" "$i" "$l" "$(ratio "$l" "$i")" "$t"
	done
	for f in p50 p99; do
		i=$(jq ".${f}_us" "$BENCH_DIR/idle.$s.json") l=$(jq ".${f}_us" "$BENCH_DIR/loaded.$s.json")
		t=""; [ $f = p99 ] && [ "$o" = history ] && t="<= 5000"
		printf '%-34s %10.0f %10.0f %8s %10s\n' "$s round trip $f us" "$i" "$l" "$(ratio "$l" "$i")" "$t"
	done
	printf '%-34s %10s %10s\n' "$s errors" "$(jq .errors "$BENCH_DIR/idle.$s.json")" "$(jq .errors "$BENCH_DIR/loaded.$s.json")"
done
for s in count_hot count_small; do
	for f in p50 p99; do
		i=$(stat_field "$BENCH_DIR/loaded.$s.stats" before-request "$f")
		printf '%-34s %10s %10s\n' "$s ingest flush before it $f us" "$(stat_field "$BENCH_DIR/idle.$s.stats" before-request "$f")" "$i"
	done
done
h=$(stat_field "$BENCH_DIR/idle.count_hot.stats" count p99) s=$(stat_field "$BENCH_DIR/idle.count_small.stats" count p99)
echo "count p99 1M room / 100-message room (idle): $(ratio "$h" "$s")  (target: about 1)"
for s in "${sets[@]}"; do echo "# $s: $(jq -r .result "$BENCH_DIR/idle.$s.json")"; done
[ -s "$BENCH_DIR/perf.txt" ] && { echo "# perf (bridge, loaded phase):"; sed 's/^/#   /' "$BENCH_DIR/perf.txt"; }
exit 0
