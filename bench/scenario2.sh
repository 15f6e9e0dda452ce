#!/usr/bin/env bash
# bench/scenario2.sh: everything stored (docs/benchmarks.md, scenario 2), on each engine.
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
# exactly once, and nothing twice (count and ids; checked with python3 against the bodies
# read back and the loadgen's --sent-file). At saturation the plugin refuses sends once the
# bridge is too far behind (not acknowledged: the connection is closed), so a publisher may
# stop early; what it sent and was refused may be stored (at most once) or not.
#
# Engines: every round runs on each engine of ENGINES in turn (sqlite: a file in the bench
# dir; postgresql: a database of its own on a throwaway server this script starts with
# scripts/pg.sh and stops at exit), each on a freshly seeded database. The ceiling has no
# bridge and so no database work: it runs once per round, on the round's first engine.
# With one engine and one round the output is the single run's table; otherwise each
# (round, engine) prints its table, then min / median / max per engine and PostgreSQL's
# median over SQLite's. The half rate is half of the same (round, engine)'s offline rate.
#
#   bench/scenario2.sh      (BUILD=path/to/build, DURATION=60, WINDOW=8,
#                            ENGINES="sqlite postgresql", ROUNDS=5,
#                            RUNS="ceiling offline online half": a subset to save time)
# Each run takes about DURATION + 25 s: the defaults take ~55 min; DURATION=20 ~25 min.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-60}
WINDOW=${WINDOW:-8}
ENGINES=${ENGINES:-sqlite postgresql}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-ceiling offline online half}
read -r -a engines <<<"$ENGINES"
for e in "${engines[@]}"; do
	case $e in sqlite | postgresql) ;; *) echo "bench: ENGINES: unknown engine '$e' (sqlite, postgresql)" >&2; exit 2 ;; esac
done
has_run() { case " $RUNS " in *" $1 "*) return 0 ;; esac; return 1; }
if has_run half && ! has_run offline; then echo "bench: RUNS: half needs offline (its rate)" >&2; exit 2; fi
bench_init
case " $ENGINES " in *" postgresql "*) pg_start ;; esac
SUMMARY=$BENCH_DIR/summary.tsv
: >"$SUMMARY"
single=false
[ "${#engines[@]}" -eq 1 ] && [ "$ROUNDS" -eq 1 ] && single=true

# Publishers behave as paho and MQTT.js do: a connection the plugin closes (it refuses
# sends while the bridge is too far behind) comes back after 1 s and sends its
# unacknowledged messages again, each with a client_msg_id so that a resend whose PUBACK
# was lost in the close is delivered and stored once.
base=(--users 2000 --publishers 1000 --qos 1 --password "$BENCH_PW"
	--duration "$DURATION" --warmup 3 --drain 20 --connect-retries 60 --reconnect-ms 1000 --client-msg-id)

# check_stored RUN AFTER_ID: every message of RUN's sent file is stored exactly once.
check_stored() {
	db_sql "$DB" "SELECT body FROM messages WHERE id > $2" | python3 -c '
import sys
sent_file = sys.argv[1]
sent, acked = {}, {}
for l in open(sent_file):
    p, n, a = (int(x) for x in l.split())
    sent[p], acked[p] = n, a
seen, dup, bad = {}, 0, 0
for line in sys.stdin:
    body = line.rstrip("\n")
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
' "$RUN_DIR/$1.sent"
}
max_id() { db_sql "$DB" 'SELECT coalesce(max(id),0) FROM messages'; }

# wait_stored N AFTER: until N rows above AFTER are stored (60 s).
wait_stored() {
	local i
	for i in $(seq 1 600); do
		[ "$(db_sql "$DB" "SELECT count(*) FROM messages WHERE id > $2")" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 0
}

run_stored() { # NAME ARGS...
	local name=$1 before
	shift
	before=$(max_id)
	run_loadgen "$BROKER_PID" "$RUN_DIR/$name.json" --port "$PORT" --mode mqchat --label "$name" \
		--rooms-file "$RUN_DIR/rooms.txt" --db "$DB" --sent-file "$RUN_DIR/$name.sent" "${base[@]}" "$@"
	wait_stored "$(jq .acked_total "$RUN_DIR/$name.json")" "$before"
	echo "$name: $(check_stored "$name" "$before" || echo 'LOSS OR DUPLICATES')" | tee "$RUN_DIR/$name.check"
}

# new_db ENGINE NAME: a fresh empty database; sets DB.
new_db() {
	if [ "$1" = postgresql ]; then
		pg_db_drop "$2"
		DB=$(pg_db_create "$2")
	else
		DB=$RUN_DIR/$2.db
	fi
}

# copy_db ENGINE NAME: a copy of DB named NAME; prints it.
copy_db() {
	if [ "$1" = postgresql ]; then
		pg_db_drop "$2"
		pg_db_create "$2" "${DB##*/}"
	else
		cp "$DB" "$RUN_DIR/$2.db"
		echo "$RUN_DIR/$2.db"
	fi
}

# round ENGINE N FIRST: one round on ENGINE (FIRST: the round's first engine runs the ceiling).
round() {
	local engine=$1 n=$2 first=$3 r
	RUN_DIR=$BENCH_DIR/$engine.$n
	mkdir -p "$RUN_DIR"
	$single || echo "# ---- round $n, $engine"
	new_db "$engine" "s2_r$n"
	seed_db "$DB" "$RUN_DIR/rooms.txt" 2000 1000 2

	# ceiling first (no bridge, a counting QoS 1 subscriber), on a copy of the database: with
	# no bridge the plugin keeps every message unconfirmed (bounds raised so that it does not
	# refuse: what is measured is the broker + plugin), and spools them at the stop; that spool
	# belongs to the copy and never reaches the database the other runs check.
	if has_run ceiling && $first; then
		local cdb
		cdb=$(copy_db "$engine" "s2_r${n}_ceiling")
		start_mqchat "$cdb" <<'CONF'
plugin_opt_unconfirmed_max_messages 100000000
plugin_opt_unconfirmed_max_bytes 8589934592
CONF
		run_loadgen "$BROKER_PID" "$RUN_DIR/ceiling.json" --port "$PORT" --mode mqchat --label ceiling \
			--rooms-file "$RUN_DIR/rooms.txt" --subscribers-per-room 0 --saturate --window "$WINDOW" \
			--sink-user "$SERVICE_USER" --sink-password "$SERVICE_PW" --sink-filter 'chat/rooms/+/messages' "${base[@]}"
		stop_pid "$BROKER_PID"
		[ "$engine" = postgresql ] && pg_db_drop "s2_r${n}_ceiling"
		cp "$RUN_DIR/ceiling.json" "$BENCH_DIR/ceiling.$n.json"
	fi

	start_mqchat "$DB" </dev/null
	start_bridge "$DB" "$PORT"
	sleep 1
	if has_run offline; then run_stored offline --subscribers-per-room 0 --saturate --window "$WINDOW"; fi
	if has_run online; then run_stored online --saturate --window "$WINDOW"; fi
	if has_run half; then
		local half
		half=$(jq '(.stored_in_window / .duration_s / 2) | floor' "$RUN_DIR/offline.json")
		run_stored half --subscribers-per-room 0 --rate "$half"
		echo "$half" >"$RUN_DIR/half.rate"
	fi
	stop_pid "$BRIDGE_PID"
	cp "$BENCH_DIR/bridge.log" "$RUN_DIR/bridge.log"
	stop_pid "$BROKER_PID"
	report "$engine" "$n"
	if [ "$engine" = postgresql ]; then
		pg_db_drop "s2_r$n"
	else
		rm -f "$DB" "$DB"-wal "$DB"-shm
	fi
}

# report ENGINE N: the round's table (as a single run prints it), and its figures into SUMMARY.
report() {
	local engine=$1 n=$2 r ceil="" st half
	j() { jq -r ".$2" "$RUN_DIR/$1.json"; }
	# lag RUN P: the stored lag's pP in ms, n/a when no message sent in the window was seen stored
	lag() { jq -r "if .stored_lag_n > 0 then .stored_lag_p$2_us / 1000 else \"n/a\" end" "$RUN_DIR/$1.json"; }
	[ -f "$BENCH_DIR/ceiling.$n.json" ] && ceil=$(jq -r .sink_recv_per_s "$BENCH_DIR/ceiling.$n.json" | cut -d. -f1)
	echo "# scenario 2: 1000 rooms x 2 members, 1000 publishers, QoS 1, window $WINDOW, ${DURATION}s$($single || echo ", round $n, $engine")"
	printf '%-46s %14s %10s\n' figure value target
	for r in offline online; do
		has_run "$r" || continue
		st=$(jq '.stored_in_window / .duration_s | floor' "$RUN_DIR/$r.json")
		printf '%-46s %14s %10s\n' "$r: sent msgs/s (in the window)" "$(jq '.msgs_per_s | floor' "$RUN_DIR/$r.json")" ""
		printf '%-46s %14s %10s\n' "$r: stored msgs/s (during the window)" "$st" ">= 50000"
		if [ -n "$ceil" ]; then
			printf '%-46s %14s %10s\n' "$r: stored / ceiling ($ceil/s)" "$(awk -v a="$st" -v b="$ceil" 'BEGIN{printf "%.2f", a/b}')" ">= 0.8"
		fi
		printf '%-46s %14s %10s\n' "$r: lag p50/p99 ms" "$(jq -r '"\(.stored_lag_p50_us/1000)/\(.stored_lag_p99_us/1000)"' "$RUN_DIR/$r.json")" ""
		printf '%-46s %14s %10s\n' "$r: loss check" "$(cut -d: -f2- "$RUN_DIR/$r.check")" "0 missing"
		printf '%s\t%s\t%s\n' "$engine" "$r: sent msgs/s" "$(j "$r" msgs_per_s)" "$engine" "$r: stored msgs/s" "$st" \
			"$engine" "$r: lag p50 ms" "$(lag "$r" 50)" "$engine" "$r: lag p99 ms" "$(lag "$r" 99)" \
			"$engine" "$r: missing + duplicates" "$(awk '{for (i = 1; i < NF; i++) if ($i == "missing" || $i == "duplicates") s += $(i + 1)} END {print s + 0}' "$RUN_DIR/$r.check")" >>"$SUMMARY"
	done
	if has_run half; then
		half=$(cat "$RUN_DIR/half.rate")
		printf '%-46s %14s %10s\n' "half rate ($half/s): publish->stored lag p50/p99 ms" \
			"$(jq -r '"\(.stored_lag_p50_us/1000)/\(.stored_lag_p99_us/1000)"' "$RUN_DIR/half.json")" "p99 <= 50"
		printf '%-46s %14s %10s\n' "half rate: loss check" "$(cut -d: -f2- "$RUN_DIR/half.check")" "0 missing"
		printf '%s\t%s\t%s\n' "$engine" "half: rate msgs/s" "$half" \
			"$engine" "half: lag p50 ms" "$(lag half 50)" "$engine" "half: lag p99 ms" "$(lag half 99)" \
			"$engine" "half: missing + duplicates" "$(awk '{for (i = 1; i < NF; i++) if ($i == "missing" || $i == "duplicates") s += $(i + 1)} END {print s + 0}' "$RUN_DIR/half.check")" >>"$SUMMARY"
	fi
	if [ -n "$ceil" ] && [ "$engine" = "${engines[0]}" ]; then printf '%s\t%s\t%s\n' "ceiling" "ceiling: received msgs/s" "$ceil" >>"$BENCH_DIR/ceiling.tsv"; fi
}

for n in $(seq 1 "$ROUNDS"); do
	first=true
	for e in "${engines[@]}"; do
		round "$e" "$n" "$first"
		first=false
	done
done

$single && exit 0
echo
summary_table "$SUMMARY" "# scenario 2: $ROUNDS rounds x (${engines[*]}), ${DURATION}s each, window $WINDOW: min / median / max (rounds)"
if [ -s "$BENCH_DIR/ceiling.tsv" ]; then
	summary_table "$BENCH_DIR/ceiling.tsv" "# the ceiling (broker + plugin, no bridge), once per round on ${engines[0]}"
fi
