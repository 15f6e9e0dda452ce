#!/usr/bin/env bash
# bench/bridge_drain.sh: the bridge's own storing rate, isolated from the load generator.
# 1,000 rooms of 2 members; the bridge connects once (its persistent session exists), is
# stopped, N_SECONDS of QoS 1 saturation are published and kept for it by the plugin,
# then the bridge is started alone and the stored
# count is sampled every second until it stops growing.
# ENGINES (default sqlite): each round runs on each engine in turn, on a fresh database
# (postgresql: a database of its own on a throwaway server started with scripts/pg.sh);
# with more than one run, min / median / max per engine and PostgreSQL's median over
# SQLite's follow.
# PG_STATEMENTS=1: the server logs every statement of the draining bridge with its duration
# (log_min_duration_statement = 0 on that database, no extension needed), and the totals
# per statement follow: the server's time against the drain's wall time.
#   BUILD=$PWD/build-bench bench/bridge_drain.sh     (N_SECONDS=8, BRIDGE_ARGS="--batch-max N",
#                                                     ENGINES="sqlite postgresql", ROUNDS=1,
#                                                     PG_STATEMENTS=1)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init
N_SECONDS=${N_SECONDS:-8}
ENGINES=${ENGINES:-sqlite}
ROUNDS=${ROUNDS:-1}
read -r -a engines <<<"$ENGINES"
case " $ENGINES " in *" postgresql "*) pg_start ;; esac
: >"$BENCH_DIR/summary.tsv"

drain() { # ENGINE N
	local engine=$1 n=$2 db queued t0 prev first last ms
	if [ "$engine" = postgresql ]; then
		pg_db_drop "drain_r$n"
		db=$(pg_db_create "drain_r$n")
	else
		db=$BENCH_DIR/drain_r$n.db
	fi
	seed_db "$db" "$BENCH_DIR/rooms.txt" 2000 1000 2
	# the backlog waits in the plugin: bounds high enough to hold N_SECONDS of saturation
	start_mqchat "$db" <<EOF
plugin_opt_unconfirmed_max_messages 5000000
plugin_opt_unconfirmed_max_bytes 4294967296
EOF
	start_bridge "$db" "$PORT"
	for _ in $(seq 1 100); do grep -q 'bridge: ready' "$BENCH_DIR/bridge.log" && break; sleep 0.1; done
	stop_pid "$BRIDGE_PID"
	"$LOADGEN" --port "$PORT" --mode mqchat --users 2000 --rooms-file "$BENCH_DIR/rooms.txt" --publishers 1000 \
		--qos 1 --password "$BENCH_PW" --duration "$N_SECONDS" --warmup 1 --drain 1 --subscribers-per-room 0 \
		--saturate --window 8 --connect-retries 60 2>/dev/null | grep '^#'
	queued=$(db_sql "$db" 'SELECT count(*) FROM messages')
	local log_from=0
	if [ "$engine" = postgresql ] && [ -n "${PG_STATEMENTS:-}" ]; then
		log_from=$(pg_log_start "$db")
	fi
	t0=$(date +%s%N)
	start_bridge "$db" "$PORT"
	prev=$queued first=
	while :; do
		sleep 1
		n_stored=$(db_sql "$db" 'SELECT count(*) FROM messages')
		ms=$(( ($(date +%s%N) - t0) / 1000000 ))
		echo "t=${ms} ms stored=$n_stored"
		[ -z "$first" ] && [ "$n_stored" -gt "$queued" ] && first=$ms
		[ "$n_stored" = "$prev" ] && break
		prev=$n_stored last=$ms
	done
	local rate=$(( (prev - queued) * 1000 / (last - first + 1) )) label=""
	[ "$ROUNDS" -gt 1 ] || [ "${#engines[@]}" -gt 1 ] && label=" ($engine, round $n)"
	echo "bridge drain$label: $((prev - queued)) messages in $((last - first)) ms after the first commit = $rate msg/s"
	printf '%s\t%s\t%s\n' "$engine" "drain msgs/s" "$rate" >>"$BENCH_DIR/summary.tsv"
	stop_pid "$BRIDGE_PID"
	grep 'stats: writer commits' "$BENCH_DIR/bridge.log" | tail -1 | sed 's/^/# /' || true
	if [ "$log_from" -gt 0 ]; then
		pg_log_summary "$log_from" "server time per statement while draining ($last ms of wall time)"
	fi
	stop_pid "$BROKER_PID"
	if [ "$engine" = postgresql ]; then pg_db_drop "drain_r$n"; else rm -f "$db" "$db"-wal "$db"-shm "$db".spool "$db".idlease; fi
}

for n in $(seq 1 "$ROUNDS"); do
	for e in "${engines[@]}"; do
		drain "$e" "$n"
	done
done
if [ "$ROUNDS" -gt 1 ] || [ "${#engines[@]}" -gt 1 ]; then
	summary_table "$BENCH_DIR/summary.tsv" "# bridge drain: $ROUNDS rounds x (${engines[*]}), N_SECONDS=$N_SECONDS"
fi
