#!/usr/bin/env bash
# pg.sh: a throwaway PostgreSQL server for tests and benchmarks (Debian's postgresql package).
#   scripts/pg.sh start DIR   initdb into DIR/data, start on a free 127.0.0.1 port, socket in DIR;
#                             prints the URL (postgresql://postgres@127.0.0.1:PORT/postgres),
#                             also kept in DIR/url. Trust auth: for tests only.
#   scripts/pg.sh stop DIR    stops the server (if running) and removes DIR.
#   scripts/pg.sh url DIR     prints DIR/url.
#   scripts/pg.sh halt DIR [fast|immediate]   stops the server, keeping DIR (immediate: as
#                             a crash, no shutdown checkpoint); for tests of an outage.
#   scripts/pg.sh resume DIR  starts a halted server again, on the same port.
# As root, the server runs as user postgres (initdb and postgres refuse root); otherwise as
# the current user; then DIR's parents must be searchable by postgres (DIR may be a fresh
# `mktemp -d`, which start chowns, but not a directory under one). Logs go to stderr, the
# server's own to DIR/log.
set -euo pipefail

usage() {
	echo "usage: $0 start DIR | stop DIR | url DIR | halt DIR [fast|immediate] | resume DIR" >&2
	exit 2
}

log() { echo "pg.sh: $*" >&2; }

# The bin directory of the highest installed PostgreSQL version.
pg_bin() {
	local d best="" bestv=-1 v
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/pg_ctl" ] || continue
		v=${d#/usr/lib/postgresql/}
		v=${v%/bin}
		[[ $v =~ ^[0-9]+$ ]] || continue
		if [ "$v" -gt "$bestv" ]; then
			bestv=$v
			best=$d
		fi
	done
	if [ -z "$best" ]; then
		log "no PostgreSQL under /usr/lib/postgresql/*/bin (scripts/deps.sh installs it)"
		exit 1
	fi
	echo "$best"
}

# Runs a command as the server's user.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Whether 127.0.0.1:$1 can be bound now.
port_free() {
	/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
s.close()
' "$1"
}

free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
		if port_free "$p"; then
			echo "$p"
			return 0
		fi
	done
	log "no free port found in 20000-60000"
	exit 1
}

cmd_start() {
	local dir=$1 bin port url
	bin=$(pg_bin)
	if [ -e "$dir/data" ]; then
		log "$dir/data exists already (stop it first: $0 stop $dir)"
		exit 1
	fi
	case "$dir" in
	*[[:space:]]*) log "DIR must not contain white space: $dir"; exit 1 ;;
	esac
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$dir"
	fi
	if ! as_pg test -w "$dir" -a -x "$dir"; then
		log "$dir is not reachable for $(as_pg id -un) (is a parent directory private?)"
		exit 1
	fi
	log "initdb ($bin) in $dir/data"
	if ! as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C \
		>"$dir/initdb.log" 2>&1; then
		cat "$dir/initdb.log" >&2
		exit 1
	fi
	# The port is free when tested, not necessarily when the server binds it: a lost race
	# shows as a failed start, tried again with another port.
	local _
	for _ in 1 2 3; do
		port=$(free_port)
		rm -f "$dir/log"
		log "starting on 127.0.0.1:$port"
		if as_pg "$bin/pg_ctl" -w -D "$dir/data" -l "$dir/log" \
			-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300" \
			start >&2; then
			url="postgresql://postgres@127.0.0.1:$port/postgres"
			echo "$url" >"$dir/url"
			echo "$url"
			return 0
		fi
		if ! grep -q "could not bind" "$dir/log" 2>/dev/null; then
			break
		fi
		log "port $port was taken meanwhile; trying another"
	done
	log "the server failed to start; $dir/log:"
	cat "$dir/log" >&2 || true
	exit 1
}

cmd_stop() {
	local dir=$1 bin
	if [ ! -e "$dir" ]; then
		return 0
	fi
	if [ ! -d "$dir" ]; then
		log "$dir is not a directory"
		exit 1
	fi
	# Only a directory made by start is removed (a mistyped DIR must not be rm -rf'd).
	local f
	for f in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
		[ -e "$f" ] || continue
		case "${f##*/}" in
		data | log | url | initdb.log | .s.PGSQL.*) ;;
		*)
			log "$dir holds ${f##*/}, not made by $0 start: not stopping or removing it"
			exit 1
			;;
		esac
	done
	if [ -f "$dir/data/PG_VERSION" ]; then
		bin=$(pg_bin)
		if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
			as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
		fi
	fi
	rm -rf "$dir"
}

cmd_halt() {
	local dir=$1 mode=${2:-fast} bin
	case "$mode" in fast | immediate) ;; *) usage ;; esac
	bin=$(pg_bin)
	as_pg "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w stop >&2
}

cmd_resume() {
	local dir=$1 bin url port
	bin=$(pg_bin)
	url=$(cat "$dir/url")
	port=${url##*:}
	port=${port%%/*}
	as_pg "$bin/pg_ctl" -w -D "$dir/data" -l "$dir/log" \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300" start >&2
}

cmd_url() {
	local dir=$1
	if [ ! -f "$dir/url" ]; then
		log "no server in $dir ($dir/url is missing)"
		exit 1
	fi
	cat "$dir/url"
}

[ $# -eq 2 ] || { [ $# -eq 3 ] && [ "$1" = halt ]; } || usage
case "$1" in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
url) cmd_url "$2" ;;
halt) cmd_halt "$2" "${3:-fast}" ;;
resume) cmd_resume "$2" ;;
*) usage ;;
esac
