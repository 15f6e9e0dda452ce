# bench/lib.sh: shared shell functions of the benchmark scenarios (sourced, not run).
#
# Every broker runs on a free loopback port in its own temp dir ($BENCH_DIR), started in
# the background; its PID is recorded and only that PID is ever killed (bench_cleanup runs
# on EXIT). The three brokers under comparison share one set of settings (bench_common_conf)
# so that the only difference between them is what is measured:
#   A  bare mosquitto: anonymous, no ACL, clients publish straight to the delivery topic;
#   B  mosquitto's own password_file (mosquitto_passwd hashes) + an acl_file of 20
#      `pattern` lines, the last of which is the one that matches chat traffic, so every
#      check walks 19 non-matching patterns first (the authenticated, access-controlled
#      configuration one would build without mqchat);
#   M  mosquitto + mqchat_plugin.so (auth, per-delivery membership checks, validation,
#      stamping, the feed to the bridge).
#
# Environment: BUILD (default: $ROOT/build-bench) holds mqchat-loadgen, mqchat-seed,
# plugin/mqchat_plugin.so and bridge/mqchat-bridge. MOSQUITTO (default /usr/sbin/mosquitto).
#
# Databases: a DB argument is a SQLite path or a postgresql:// URI (a database on the
# throwaway server of pg_start, made by pg_db_create); db_sql reads either.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BUILD=${BUILD:-$ROOT/build-bench}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
LOADGEN=$BUILD/bench/mqchat-loadgen
SEED=$BUILD/bench/mqchat-seed
PLUGIN=$BUILD/plugin/mqchat_plugin.so
BRIDGE_BIN=$BUILD/bridge/mqchat-bridge
BENCH_PW=bench-password-1
SERVICE_USER=mqchat-service
SERVICE_PW=bench-service-secret-0123
PG_SH=$ROOT/scripts/pg.sh

BENCH_PIDS=()
PG_DIR=

bench_init() {
	BENCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mqchat-bench.XXXXXX")
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	for f in "$LOADGEN" "$SEED"; do
		[ -x "$f" ] || { echo "bench: $f is missing: build first (cmake --build $BUILD)" >&2; exit 1; }
	done
	echo "# bench dir $BENCH_DIR; $(nproc) cores; $(date -u +%FT%TZ); git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
}

bench_cleanup() {
	local pid
	# Under set -e: a process already stopped must not end the cleanup before the rm.
	for pid in "${BENCH_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${BENCH_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "$PG_DIR" ]; then
		"$PG_SH" stop "$PG_DIR" >/dev/null 2>&1 || echo "bench: stopping the PostgreSQL server in $PG_DIR failed" >&2
	fi
	if [ -n "${BENCH_KEEP:-}" ]; then
		echo "# kept $BENCH_DIR" >&2
	else
		rm -rf "$BENCH_DIR"
	fi
}

# ---------------------------------------------------------------- databases

# db_is_pg DB: whether DB is a PostgreSQL URI (as mqc_db_engine_of decides).
db_is_pg() {
	case $1 in
	postgresql://* | postgres://*) return 0 ;;
	esac
	return 1
}

# db_sql DB SQL: runs SQL on either engine; rows on stdout, fields separated by | (as the
# sqlite3 shell prints them).
db_sql() {
	if db_is_pg "$1"; then
		psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"
	else
		sqlite3 "$1" "$2"
	fi
}

# pg_start: a throwaway PostgreSQL server for this run (scripts/pg.sh, in a temp dir of its
# own: pg.sh needs a directory the server's user can reach), stopped by bench_cleanup. Sets
# PG_URL (its maintenance database) and PG_BASE (the URL without the database).
pg_start() {
	PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mqchat-bench-pg.XXXXXX")
	if ! PG_URL=$("$PG_SH" start "$PG_DIR" 2>"$BENCH_DIR/pg.start.log"); then
		cat "$BENCH_DIR/pg.start.log" >&2
		echo "bench: the PostgreSQL server did not start" >&2
		exit 1
	fi
	PG_BASE=${PG_URL%/*}
	echo "# PostgreSQL $(psql -X -At -d "$PG_URL" -c 'SHOW server_version') on ${PG_BASE#postgresql://postgres@} (scripts/pg.sh, data in $PG_DIR)"
}

# pg_db_create NAME [TEMPLATE]: a database on the server (a file copy of TEMPLATE if given);
# prints its URI.
pg_db_create() {
	local how=""
	[ -n "${2:-}" ] && how=" TEMPLATE $2 STRATEGY FILE_COPY"
	psql -X -q -v ON_ERROR_STOP=1 -d "$PG_URL" -c "CREATE DATABASE $1$how" >&2 || return 1
	echo "$PG_BASE/$1"
}

# pg_db_drop NAME
pg_db_drop() {
	psql -X -q -d "$PG_URL" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >&2 || true
}

# pg_log_start DB: the server logs every statement on DB with its duration from now on
# (log_min_duration_statement = 0 for the database: new sessions only). Prints the log's
# line count, for pg_log_summary.
pg_log_start() {
	db_sql "$1" "ALTER DATABASE ${1##*/} SET log_min_duration_statement = 0" >/dev/null
	wc -l <"$PG_DIR/log"
}

# pg_log_summary FROM TITLE [PER]: the server's time per statement in its log after line
# FROM (parse, bind and execute apart), the largest first; PER: also per one of PER
# (requests, say).
pg_log_summary() {
	tail -n +"$(($1 + 1))" "$PG_DIR/log" | python3 -c '
import re, sys
tot, cnt = {}, {}
per = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else 0
for line in sys.stdin:
    m = re.search(r"duration: ([0-9.]+) ms  (parse|bind|execute|statement)[^:]*: (.*)", line)
    if not m:
        continue
    ms, phase, sql = float(m.group(1)), m.group(2), " ".join(m.group(3).split())[:70]
    k = (phase if phase != "statement" else "simple") + " " + sql
    tot[k] = tot.get(k, 0) + ms
    cnt[k] = cnt.get(k, 0) + 1
t, c = sum(tot.values()), sum(cnt.values())
extra = f"; per one of {per}: {1000 * t / per:.1f} us in {c / per:.1f} calls" if per else ""
print(f"# {sys.argv[1]}: {t:.0f} ms in {c} calls{extra}")
for k in sorted(tot, key=tot.get, reverse=True)[:12]:
    print(f"#   {tot[k]:9.1f} ms {cnt[k]:7d} x {1000 * tot[k] / cnt[k]:8.1f} us  {k}")
' "$2" "${3:-}"
}

# db_files DB: where the plugin keeps its own files for DB (spool, id lease): beside a
# SQLite file as the plugin's default does, $BENCH_DIR/<database name> for PostgreSQL.
db_files() {
	if db_is_pg "$1"; then
		local name=${1##*/}
		echo "$BENCH_DIR/${name%%\?*}"
	else
		echo "$1"
	fi
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on (bound with port 0, then closed).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Settings every broker under comparison shares.
bench_common_conf() {
	cat <<EOF
user root
listener $1 127.0.0.1
per_listener_settings false
persistence false
max_queued_messages 1000000
max_inflight_messages 20
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
EOF
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s).
wait_port() {
	local i
	for i in $(seq 1 200); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench: nothing listens on port $1 after 10 s" >&2
	return 1
}

# start_broker NAME CONF: starts mosquitto -c CONF; sets BROKER_PID. Log: $BENCH_DIR/NAME.log
start_broker() {
	local name=$1 conf=$2 port
	port=$(awk '/^listener/ {print $2; exit}' "$conf")
	"$MOSQUITTO" -c "$conf" >"$BENCH_DIR/$name.log" 2>&1 &
	BROKER_PID=$!
	BENCH_PIDS+=("$BROKER_PID")
	wait_port "$port" || { cat "$BENCH_DIR/$name.log" >&2; return 1; }
}

# forget_pid PID: a process already waited for leaves BENCH_PIDS (bench_cleanup must not
# kill whatever has its PID by then).
forget_pid() {
	local p keep=()
	for p in "${BENCH_PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	BENCH_PIDS=("${keep[@]}")
}

# stop_pid PID: stops one process of BENCH_PIDS and waits for it.
stop_pid() {
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	forget_pid "$1"
	return 0
}

# Baseline A: bare mosquitto, anonymous, no ACL. Sets BROKER_PID and PORT.
start_baseline_a() {
	PORT=$(free_port)
	{ bench_common_conf "$PORT"; echo "allow_anonymous true"; } >"$BENCH_DIR/a.conf"
	start_broker a "$BENCH_DIR/a.conf"
}

# Baseline B: password_file for the users of USERS_FILE (one name per line, all with
# $BENCH_PW) + an acl_file of 20 pattern lines. Sets BROKER_PID and PORT.
make_baseline_b_files() {
	local users_file=$1
	if [ ! -s "$BENCH_DIR/b.passwd" ]; then
		awk -v pw="$BENCH_PW" '{print $1 ":" pw}' "$users_file" >"$BENCH_DIR/b.passwd"
		mosquitto_passwd -U "$BENCH_DIR/b.passwd"
	fi
	# 19 patterns that never match chat traffic, then the one that does.
	{
		local i
		for i in $(seq 1 19); do
			echo "pattern readwrite devices/%u/channel$i/#"
		done
		echo "pattern readwrite chat/#"
	} >"$BENCH_DIR/b.acl"
}
start_baseline_b() {
	make_baseline_b_files "$1"
	PORT=$(free_port)
	{
		bench_common_conf "$PORT"
		echo "allow_anonymous false"
		echo "password_file $BENCH_DIR/b.passwd"
		echo "acl_file $BENCH_DIR/b.acl"
	} >"$BENCH_DIR/b.conf"
	start_broker b "$BENCH_DIR/b.conf"
}

# seed_db DB ROOMS_FILE USERS ROOMS MEMBERS [PREFIX] [ITERATIONS]: a benchmark database.
# Users are PREFIX0..; rooms made by mqchat-seed (see bench/seed.c for why not one
# mqchat-admin call per user: the password hash is made once and copied).
seed_db() {
	"$SEED" --db "$1" --rooms-file "$2" --users "$3" --rooms "$4" --members "$5" \
		--prefix "${6:-u}" --password "$BENCH_PW" --iterations "${7:-1000}" >/dev/null
}

# example_conf DB PORT OUT: mosquitto.conf.example as shipped, with this port, plugin,
# database, service user and persistence directory (the broker as a user runs it).
example_conf() {
	sed -e "s|^listener 1883 127.0.0.1|listener $2 127.0.0.1|" \
		-e "s|^plugin /path/to/mqchat_plugin.so|plugin $PLUGIN|" \
		-e "s|^plugin_opt_db_path .*|plugin_opt_db_path $1|" \
		-e "s|^plugin_opt_service_user .*|plugin_opt_service_user $SERVICE_USER|" \
		-e "s|^plugin_opt_service_password .*|plugin_opt_service_password $SERVICE_PW|" \
		-e "s|^persistence_location .*|persistence_location $BENCH_DIR/|" \
		"$ROOT/mosquitto.conf.example" >"$3"
	echo "user root" >>"$3"
}

# The mqchat broker on DB (a path or a URI). Sets BROKER_PID and PORT. Extra conf lines on
# stdin (optional).
start_mqchat() {
	local db=$1
	[ -f "$PLUGIN" ] || { echo "bench: $PLUGIN is missing" >&2; return 1; }
	PORT=$(free_port)
	{
		bench_common_conf "$PORT"
		echo "allow_anonymous false"
		echo "plugin $PLUGIN"
		# A path or a URI. (plugin_opt_db is the same option, but Mosquitto 2.0.11 refuses a
		# plugin_opt_ name shorter than three characters.)
		echo "plugin_opt_db_path $db"
		# The plugin's own files (required with a URI; beside the file by default otherwise).
		if db_is_pg "$db"; then
			echo "plugin_opt_spool_path $(db_files "$db").spool"
			echo "plugin_opt_idlease_path $(db_files "$db").idlease"
		fi
		echo "plugin_opt_service_user $SERVICE_USER"
		echo "plugin_opt_service_password $SERVICE_PW"
		# The per-user limits (50 sends/s, 128 KiB/s, 20 requests/s) are a policy, not a
		# cost: off for benchmarks, whose clients send far faster than one person.
		echo "plugin_opt_send_rate 0"
		echo "plugin_opt_send_bytes_rate 0"
		echo "plugin_opt_request_rate 0"
		[ -t 0 ] || cat
	} >"$BENCH_DIR/m.conf"
	start_broker m "$BENCH_DIR/m.conf"
}

# start_bridge DB PORT: mqchat-bridge as the service user. Sets BRIDGE_PID.
start_bridge() {
	[ -x "$BRIDGE_BIN" ] || { echo "bench: $BRIDGE_BIN is missing" >&2; return 1; }
	printf '%s\n' "$SERVICE_PW" >"$BENCH_DIR/service.pw"
	chmod 600 "$BENCH_DIR/service.pw"
	"$BRIDGE_BIN" --db "$1" --host 127.0.0.1 --port "$2" --user "$SERVICE_USER" \
		--password-file "$BENCH_DIR/service.pw" ${BRIDGE_ARGS:-} >"$BENCH_DIR/bridge.log" 2>&1 &
	BRIDGE_PID=$!
	BENCH_PIDS+=("$BRIDGE_PID")
}

# cpu_ticks PID: utime+stime of PID in clock ticks (from /proc/PID/stat).
cpu_ticks() {
	awk '{print $14 + $15}' "/proc/$1/stat"
}
CLK_TCK=$(getconf CLK_TCK)

# rss_kb PID: VmRSS of PID in kB.
rss_kb() {
	awk '/^VmRSS/ {print $2}' "/proc/$1/status"
}

# run_loadgen PID OUT ARGS...: runs mqchat-loadgen against the broker PID (whose CPU over
# the measurement window the loadgen reads itself), keeps its JSON line in OUT and shows
# its human line on stderr.
run_loadgen() {
	local pid=$1 out=$2
	shift 2
	"$LOADGEN" --broker-pid "$pid" "$@" >"$out.txt" || { echo "bench: mqchat-loadgen failed: $*" >&2; return 1; }
	grep '^{' "$out.txt" >"$out"
	grep '^#' "$out.txt" >&2
}

# jget FILE KEY: a field of a JSON line.
jget() {
	jq -r ".$2" "$1"
}

# summary_table FILE [TITLE]: min / median / max per engine of "engine<TAB>figure<TAB>value"
# lines (figures in the order they first appear; the count of values in parentheses), and
# PostgreSQL's median over SQLite's when both engines are there. A non-numeric value
# (an empty field, "n/a") is left out.
summary_table() {
	python3 - "$1" "${2:-}" <<'EOF'
import sys
rows, figs, engines = {}, [], []
for line in open(sys.argv[1]):
    e, f, v = line.rstrip("\n").split("\t")
    try:
        x = float(v)
    except ValueError:
        continue
    if f not in figs: figs.append(f)
    if e not in engines: engines.append(e)
    rows.setdefault((e, f), []).append(x)
def med(a):
    a = sorted(a); n = len(a)
    return a[n // 2] if n % 2 else (a[n // 2 - 1] + a[n // 2]) / 2
def fmt(x):
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"
both = "sqlite" in engines and "postgresql" in engines
if sys.argv[2]: print(sys.argv[2])
print(f"{'figure':<46}" + "".join(f" {e + ' min / median / max (n)':>36}" for e in engines) + (f" {'pg/sqlite':>9}" if both else ""))
for f in figs:
    out = f"{f:<46}"
    for e in engines:
        a = rows.get((e, f), [])
        cell = f"{fmt(min(a))} / {fmt(med(a))} / {fmt(max(a))} ({len(a)})" if a else "n/a"
        out += f" {cell:>36}"
    if both:
        s, p = rows.get(("sqlite", f)), rows.get(("postgresql", f))
        out += f" {(f'{med(p) / med(s):.2f}' if s and p and med(s) else 'n/a'):>9}"
    print(out)
EOF
}
