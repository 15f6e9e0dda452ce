#!/usr/bin/env bash
# bench/scenario3.sh: history at scale (docs/benchmarks.md, scenario 3), on each engine.
#
# Database: 10,000 rooms x 900 messages + a hot room of 1,000,000 + a room of 100 = 10,000,100
# messages (mqchat-histseed). SQLite (~70 s to seed): cached in $CACHE_DIR under a version
# string and copied for each round (the loaded phase writes into it); without the cache it
# is seeded from scratch. PostgreSQL (~100 s): seeded once per script run into database
# s3seed of the throwaway server the script starts (scripts/pg.sh, stopped at exit), and
# each round gets a file copy of it (CREATE DATABASE ... TEMPLATE s3seed STRATEGY FILE_COPY).
# Engines: every round runs on each engine of ENGINES in turn (ROUNDS rounds); with one
# engine and one round the output is the single run's report, otherwise each (round,
# engine) prints its report, then min / median / max per engine and PostgreSQL's median
# over SQLite's.
# Query plans: the bridge's own statements (schema/<engine>/q_bridge.sql) for history,
# history from a sender, count and count from: SQLite's EXPLAIN QUERY PLAN, PostgreSQL's
# EXPLAIN (ANALYZE, BUFFERS) after six executions of the prepared statement (so the plan
# is the one the bridge's prepared statement settles on); a SCAN / Seq Scan of a table that
# grows with the data stops the run.
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
#                           during the loaded phase, ENGINES="sqlite postgresql", ROUNDS=5,
#                           PG_STATEMENTS=1: PostgreSQL logs every statement (a diagnostic run:
#                           it slows the server) and each set prints the server's time by statement)
# A round takes ~1.5-2 min per engine.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

REQUESTS=${REQUESTS:-2000}
PG_STATEMENTS=${PG_STATEMENTS:-}
WARMUP=${WARMUP:-200}
LOAD_RATE=${LOAD_RATE:-auto}
LOAD_ROOMS=1000
CACHE_DIR=${CACHE_DIR:-/tmp/mqchat-bench-cache}
ENGINES=${ENGINES:-sqlite postgresql}
ROUNDS=${ROUNDS:-5}
# Bump when mqchat-histseed or the schema changes what it makes.
SEED_VERSION=s3-v1-schema$(ls "$ROOT"/schema/sqlite/[0-9]*.sql | wc -l)-10000x900-hot1000000-small100
HISTSEED=$BUILD/bench/mqchat-histseed
REQBENCH=$BUILD/bench/mqchat-reqbench
read -r -a engines <<<"$ENGINES"
for e in "${engines[@]}"; do
	case $e in sqlite | postgresql) ;; *) echo "bench: ENGINES: unknown engine '$e' (sqlite, postgresql)" >&2; exit 2 ;; esac
done
single=false
[ "${#engines[@]}" -eq 1 ] && [ "$ROUNDS" -eq 1 ] && single=true

bench_init
for f in "$HISTSEED" "$REQBENCH" "$BRIDGE_BIN" "$PLUGIN"; do
	[ -e "$f" ] || { echo "bench: $f is missing: build first (cmake --build $BUILD)" >&2; exit 1; }
done
SUMMARY=$BENCH_DIR/summary.tsv
: >"$SUMMARY"
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# ---------------------------------------------------------------- the seeded databases
cached=$CACHE_DIR/$SEED_VERSION
case " $ENGINES " in *" sqlite "*)
	if [ ! -f "$cached/chat.db" ]; then
		echo "# seeding $cached (no cache)"
		mkdir -p "$CACHE_DIR"
		tmp=$(mktemp -d "$CACHE_DIR/seeding.XXXXXX")
		t0=$(date +%s.%N)
		"$HISTSEED" --db "$tmp/chat.db" --password "$BENCH_PW" --info "$tmp/info" --rooms-file "$tmp/rooms.txt" \
			|| { rm -rf "$tmp"; exit 1; }
		echo "# seeded in $(elapsed "$t0") s"
		rm -rf "$cached"
		mv "$tmp" "$cached"
	else
		echo "# using the cached database $cached ($(grep SEED_SECONDS "$cached/info"))"
	fi
	;;
esac
case " $ENGINES " in *" postgresql "*)
	pg_start
	pg_seed=$(pg_db_create s3seed)
	echo "# seeding PostgreSQL database s3seed"
	t0=$(date +%s.%N)
	"$HISTSEED" --db "$pg_seed" --password "$BENCH_PW" --info "$BENCH_DIR/pg.info" --rooms-file "$BENCH_DIR/pg.rooms.txt"
	echo "# seeded in $(elapsed "$t0") s ($(psql -X -At -d "$PG_URL" -c "SELECT pg_size_pretty(pg_database_size('s3seed'))"))"
	;;
esac

# stmt ENGINE NAME: the bridge's statement NAME as its statement table holds it.
stmt() {
	awk -v n="@$2" '/^-- @/ { on = ($2 == n); next } on && !/^--/' "$ROOT/schema/$1/q_bridge.sql"
}

# plans ENGINE: the query plans of history / history from / count / count from on DB;
# every query must be an index search (no SCAN, no Seq Scan of a large table).
plans() {
	local plans
	if [ "$1" = sqlite ]; then
		plans=$(for q in req_hist_desc req_hist_from_desc req_unread req_count_from; do
			echo "EXPLAIN QUERY PLAN $(stmt sqlite "$q");"
		done | sqlite3 "$DB")
	else
		plans=$(
			{
				echo "PREPARE hist AS $(stmt postgresql req_hist_desc);"
				echo "PREPARE hist_from AS $(stmt postgresql req_hist_from_desc);"
				echo "PREPARE unread AS $(stmt postgresql req_unread);"
				echo "PREPARE count_from AS $(stmt postgresql req_count_from);"
				local q args
				for q in "hist('$HOT_ROOM', 0, $HOT_MID_ID, 51)" "hist_from('$HOT_ROOM', 0, $HOT_MID_ID, 51, '$HOT_SENDER')" \
					"unread('$HOT_ROOM', '$READER')" "count_from('$HOT_ROOM', '$HOT_SENDER')"; do
					for args in 1 2 3 4 5 6; do echo "EXECUTE $q \\g /dev/null"; done
					echo "EXPLAIN (ANALYZE, BUFFERS) EXECUTE $q;"
				done
			} | psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB"
		)
	fi
	echo "$plans" | sed 's/^/# plan: /'
	# PostgreSQL reads read_markers (two rows here, one page) with a Seq Scan, as it should;
	# a scan of any table whose size grows with the messages or rooms is refused.
	if echo "$plans" | grep -q 'SCAN\|Seq Scan on \(messages\|rooms\|room_sender_counts\|room_participants\)'; then
		echo "bench: a history/count query scans instead of using an index (see the plans above)" >&2
		exit 1
	fi
}

sets=(hist_newest hist_deep hist_normal count_hot count_small count_from)
declare -A request op
# requests: the query sets for the room ids of the engine's seeded database (its info).
requests() {
	request[hist_newest]="{\"op\":\"history\",\"room\":\"$HOT_ROOM\",\"limit\":50}"
	request[hist_deep]="{\"op\":\"history\",\"room\":\"$HOT_ROOM\",\"before\":$HOT_MID_ID,\"limit\":50}"
	request[hist_normal]="{\"op\":\"history\",\"room\":\"$NORMAL_ROOM\",\"limit\":50}"
	request[count_hot]="{\"op\":\"count\",\"room\":\"$HOT_ROOM\"}"
	request[count_small]="{\"op\":\"count\",\"room\":\"$SMALL_ROOM\"}"
	request[count_from]="{\"op\":\"count\",\"room\":\"$HOT_ROOM\",\"from\":\"$HOT_SENDER\"}"
	local s
	for s in "${sets[@]}"; do op[$s]=$(jq -r .op <<<"${request[$s]}"); done
}

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
			--label "$phase.$s.warmup" --request "${request[$s]}" >/dev/null 2>"$RUN_DIR/$phase.$s.warmup.err" \
			|| { cat "$RUN_DIR/$phase.$s.warmup.err" >&2; exit 1; }
		bridge_stats "$RUN_DIR/$phase.$s.warm.stats"
		local log_from=""
		[ -n "$PG_STATEMENTS" ] && db_is_pg "$DB" && log_from=$(wc -l <"$PG_DIR/log")
		"$REQBENCH" --port "$PORT" --user "$READER" --password "$BENCH_PW" --requests "$REQUESTS" --warmup 0 \
			--timeout-ms 60000 \
			--label "$phase.$s" --request "${request[$s]}" >"$RUN_DIR/$phase.$s.json"
		bridge_stats "$RUN_DIR/$phase.$s.stats"
		if [ -n "$log_from" ]; then
			pg_log_summary "$log_from" "$phase.$s: the server's time, statements logged" "$REQUESTS"
		fi
	done
}

# ---------------------------------------------------------------- loaded
# stored_since ID: rows stored above ID (a range of the primary key: cheap on the 10M table).
stored_since() { db_sql "$DB" "SELECT count(*) FROM messages WHERE id > $1"; }
# start_load RATE|saturate SECONDS NAME [DRAIN]: mqchat-loadgen in the background, 1 publisher per room
# of the first LOAD_ROOMS regular rooms, QoS 1, window 8; sets LOAD_PID once it is connected.
start_load() {
	local how=(--rate "$1")
	[ "$1" = saturate ] && how=(--saturate)
	rm -f "$RUN_DIR/$3.ready"
	nice -n "${LOAD_NICE:-0}" "$LOADGEN" --broker-pid "$BROKER_PID" --port "$PORT" --mode mqchat --label "$3" --users $((2 * LOAD_ROOMS)) \
		--rooms-file "$ROOMS_FILE" --rooms "$LOAD_ROOMS" --publishers "$LOAD_ROOMS" --qos 1 \
		--password "$BENCH_PW" "${how[@]}" --window 8 --subscribers-per-room 0 --duration "$2" --warmup 3 \
		--drain "${4:-0}" --connect-retries 60 --ready-file "$RUN_DIR/$3.ready" >"$RUN_DIR/$3.txt" 2>&1 &
	LOAD_PID=$!
	BENCH_PIDS+=("$LOAD_PID")
	for i in $(seq 1 600); do
		[ -e "$RUN_DIR/$3.ready" ] && return 0
		kill -0 "$LOAD_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: the load generator ($3) did not get ready" >&2
	cat "$RUN_DIR/$3.txt" >&2
	exit 1
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

# round ENGINE N: one round on ENGINE, on a fresh copy of its seeded database.
round() {
	local engine=$1 n=$2 t0 i
	RUN_DIR=$BENCH_DIR/$engine.$n
	mkdir -p "$RUN_DIR"
	$single || echo "# ---- round $n, $engine"
	t0=$(date +%s.%N)
	if [ "$engine" = sqlite ]; then
		DB=$RUN_DIR/chat.db
		cp "$cached/chat.db" "$DB"
		sync "$DB" # write the copy back now, not during the measurements
		ROOMS_FILE=$cached/rooms.txt
		. "$cached/info"
		echo "# copied the database ($(du -h "$DB" | cut -f1)) in $(elapsed "$t0") s"
	else
		pg_db_drop "s3_r$n"
		DB=$(pg_db_create "s3_r$n" s3seed)
		ROOMS_FILE=$BENCH_DIR/pg.rooms.txt
		. "$BENCH_DIR/pg.info"
		echo "# copied the database (CREATE DATABASE s3_r$n TEMPLATE s3seed STRATEGY FILE_COPY) in $(elapsed "$t0") s"
	fi
	requests
	plans "$engine"
	# PG_STATEMENTS: every statement on this database logged from now on (the bridge's and
	# the plugin's sessions start below), summed per query set.
	[ -n "$PG_STATEMENTS" ] && [ "$engine" = postgresql ] && pg_log_start "$DB" >/dev/null

	# ------------------------------------------------------------ broker, bridge
	start_mqchat "$DB" </dev/null
	start_bridge "$DB" "$PORT"
	for i in $(seq 1 100); do
		grep -q 'bridge: ready' "$BENCH_DIR/bridge.log" && break
		sleep 0.1
	done
	grep -q 'bridge: ready' "$BENCH_DIR/bridge.log" || { echo "bench: the bridge is not ready after 10 s" >&2; cat "$BENCH_DIR/bridge.log" >&2; exit 1; }

	echo "# idle: ${#sets[@]} query sets x $REQUESTS requests (after $WARMUP unmeasured)"
	run_sets idle

	# ------------------------------------------------------------ loaded
	local before_id load_rate=$LOAD_RATE load_how="LOAD_RATE as given" sustained=""
	before_id=$(db_sql "$DB" 'SELECT max(id) FROM messages')
	if [ "$load_rate" = auto ]; then
		# What the bridge sustains on this database: its drain rate. A burst (PROBE_RATE msg/s
		# for 5 s) builds a backlog in the broker; once the senders stop, the stored rows are
		# counted until the backlog is gone (the bridge and the broker have the machine to
		# themselves, as scenario 2's drain). The load is then half of that, at most 25,000.
		local probe_rate=${PROBE_RATE:-30000} psent c0 c1 p0 p1
		start_load "$probe_rate" 2 probe 2
		wait "$LOAD_PID" || { cat "$RUN_DIR/probe.txt" >&2; exit 1; }
		forget_pid "$LOAD_PID"
		# acked: what the broker took (a publish still unacknowledged when the senders stop may be lost)
		psent=$(grep '^{' "$RUN_DIR/probe.txt" | jq .acked_total)
		c0=$(stored_since "$before_id") p0=$(date +%s.%N)
		wait_stored "$psent" "$before_id" 180
		c1=$(stored_since "$before_id") p1=$(date +%s.%N)
		if [ $((psent - c0)) -lt 20000 ]; then
			sustained=">= $probe_rate"
			load_rate=25000
		else
			sustained=$(awk -v a="$c0" -v b="$c1" -v s="$p0" -v e="$p1" 'BEGIN{printf "%.0f", (b-a)/(e-s)}')
			load_rate=$((sustained / 2 < 25000 ? sustained / 2 : 25000))
		fi
		echo "# probe: $psent messages at $probe_rate msg/s; $((psent - c0)) were still queued when the senders stopped; the bridge drained them at $sustained msg/s"
		load_how="half of the bridge's drain rate on this database, $sustained msg/s, at most 25000"
		before_id=$(db_sql "$DB" 'SELECT max(id) FROM messages')
	fi
	# The load runs until the loaded sets are done (SIGTERM ends mqchat-loadgen's window
	# there); load_seconds is only an upper bound.
	local load_seconds=$((300 + REQUESTS / 10))
	echo "# loaded: $load_rate msg/s at QoS 1 into $LOAD_ROOMS rooms from 5 s before the same sets until they end"
	start_load "$load_rate" "$load_seconds" load
	sleep 5 # past the load's warm-up: the bridge is storing at the full rate
	local ticks0 bticks0 ticks1 bticks1 t1 perf_pid=""
	ticks0=$(cpu_ticks "$BRIDGE_PID") bticks0=$(cpu_ticks "$BROKER_PID") t0=$(date +%s.%N)
	if [ -n "${PERF:-}" ]; then
		perf record -g -p "$BRIDGE_PID" -o "$RUN_DIR/perf.data" -- sleep 10 >/dev/null 2>&1 &
		perf_pid=$!
	fi
	run_sets loaded
	ticks1=$(cpu_ticks "$BRIDGE_PID") bticks1=$(cpu_ticks "$BROKER_PID") t1=$(date +%s.%N)
	if kill -0 "$LOAD_PID" 2>/dev/null; then
		kill -TERM "$LOAD_PID"
	else
		echo "bench: WARNING: the load ended before the loaded query sets did; raise load_seconds" >&2
	fi
	if [ -n "$perf_pid" ]; then
		wait "$perf_pid" || true
		perf report -i "$RUN_DIR/perf.data" --no-children -g none --percent-limit 0.7 --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -25 >"$RUN_DIR/perf.txt" || true
	fi
	wait "$LOAD_PID" || { echo "bench: mqchat-loadgen failed" >&2; cat "$RUN_DIR/load.txt" >&2; exit 1; }
	forget_pid "$LOAD_PID"
	grep '^#' "$RUN_DIR/load.txt" | grep -v retry || true
	grep '^{' "$RUN_DIR/load.txt" >"$RUN_DIR/load.json"
	local sent stored span bridge_cpu broker_cpu
	sent=$(jq .acked_total "$RUN_DIR/load.json")
	for i in $(seq 1 300); do
		stored=$(stored_since "$before_id")
		[ "$stored" -ge "$sent" ] && break
		sleep 0.1
	done
	span=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
	bridge_cpu=$(awk -v a="$ticks0" -v b="$ticks1" -v s="$span" -v hz="$CLK_TCK" 'BEGIN{printf "%.0f", 100*(b-a)/hz/s}')
	broker_cpu=$(awk -v a="$bticks0" -v b="$bticks1" -v s="$span" -v hz="$CLK_TCK" 'BEGIN{printf "%.0f", 100*(b-a)/hz/s}')
	stop_pid "$BRIDGE_PID"
	cp "$BENCH_DIR/bridge.log" "$RUN_DIR/bridge.log"
	stop_pid "$BROKER_PID"

	# ------------------------------------------------------------ report
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
	echo "# scenario 3: $MESSAGES messages in $ROOMS rooms (hot $HOT_MESSAGES, small $SMALL_MESSAGES, normal $NORMAL_MESSAGES)$($single || echo ", round $n, $engine");"
	echo "# $REQUESTS requests per set; load $load_rate msg/s QoS 1 into $LOAD_ROOMS rooms ($load_how): acknowledged by the broker $sent, stored $stored;"
	echo "# during the loaded sets the bridge used ${bridge_cpu}% CPU and the broker ${broker_cpu}% (of one core)"
	printf '%-34s %10s %10s %8s %10s\n' figure idle loaded ld/idle target
	local s o f t t50 t99 idl ld h sm
	for s in "${sets[@]}"; do
		o=${op[$s]}
		case $o in history) t50="<= 200" t99="<= 2000" ;; *) t50="" t99="<= 500" ;; esac
		for f in p50 p99 max; do
			idl=$(stat_field "$RUN_DIR/idle.$s.stats" "$o" "$f") ld=$(stat_field "$RUN_DIR/loaded.$s.stats" "$o" "$f")
			t=""; [ $f = p50 ] && t=$t50; [ $f = p99 ] && t=$t99
			printf '%-34s %10s %10s %8s %10s\n' "$s bridge $f us" "$idl" "$ld" "$(ratio "$ld" "$idl")" "$t"
			if [ $f = p99 ]; then
				printf '%s\t%s\t%s\n' "$engine" "$s bridge p99 us, idle" "$idl" "$engine" "$s bridge p99 us, loaded" "$ld" >>"$SUMMARY"
			fi
		done
		for f in p50 p99; do
			idl=$(jq ".${f}_us" "$RUN_DIR/idle.$s.json") ld=$(jq ".${f}_us" "$RUN_DIR/loaded.$s.json")
			t=""; [ $f = p99 ] && [ "$o" = history ] && t="<= 5000"
			printf '%-34s %10.0f %10.0f %8s %10s\n' "$s round trip $f us" "$idl" "$ld" "$(ratio "$ld" "$idl")" "$t"
			if [ $f = p99 ]; then
				printf '%s\t%s\t%s\n' "$engine" "$s round trip p99 us, idle" "$idl" "$engine" "$s round trip p99 us, loaded" "$ld" >>"$SUMMARY"
			fi
		done
		printf '%-34s %10s %10s\n' "$s errors" "$(jq .errors "$RUN_DIR/idle.$s.json")" "$(jq .errors "$RUN_DIR/loaded.$s.json")"
	done
	for s in count_hot count_small; do
		for f in p50 p99; do
			i=$(stat_field "$RUN_DIR/loaded.$s.stats" before-request "$f")
			printf '%-34s %10s %10s\n' "$s ingest flush before it $f us" "$(stat_field "$RUN_DIR/idle.$s.stats" before-request "$f")" "$i"
		done
	done
	h=$(stat_field "$RUN_DIR/idle.count_hot.stats" count p99) sm=$(stat_field "$RUN_DIR/idle.count_small.stats" count p99)
	echo "count p99 1M room / 100-message room (idle): $(ratio "$h" "$sm")  (target: about 1)"
	for s in "${sets[@]}"; do echo "# $s: $(jq -r .result "$RUN_DIR/idle.$s.json")"; done
	[ -s "$RUN_DIR/perf.txt" ] && { echo "# perf (bridge, loaded phase):"; sed 's/^/#   /' "$RUN_DIR/perf.txt"; }
	local drained=${sustained#>= }
	printf '%s\t%s\t%s\n' "$engine" "probe: drain msgs/s" "$drained" "$engine" "load msgs/s" "$load_rate" \
		"$engine" "bridge CPU % (loaded sets)" "$bridge_cpu" "$engine" "broker CPU % (loaded sets)" "$broker_cpu" >>"$SUMMARY"

	if [ "$engine" = postgresql ]; then
		pg_db_drop "s3_r$n"
	else
		rm -f "$DB" "$DB"-wal "$DB"-shm
	fi
	return 0
}

for n in $(seq 1 "$ROUNDS"); do
	for e in "${engines[@]}"; do
		round "$e" "$n"
	done
done

$single && exit 0
echo
summary_table "$SUMMARY" "# scenario 3: $ROUNDS rounds x (${engines[*]}), $REQUESTS requests per set: min / median / max (rounds)"
exit 0
