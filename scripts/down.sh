#!/usr/bin/env bash
# down.sh: stops what scripts/up.sh started (the pids in ./run/*.pid): the bridge first, so
# it flushes, then mosquitto, then the PostgreSQL server of MQCHAT_ENGINE=postgresql (its
# data is deleted with it). Leaves ./run/ (SQLite database, logs) in place.
set -uo pipefail

RUN=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/run

stop() {
	local name=$1 pidfile=$RUN/$1.pid pid
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	# Only a process that is still the one we started (same executable name).
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/comm" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			echo "down.sh: $name (pid $pid) still running after 10 s; sending SIGKILL" >&2
			kill -KILL "$pid"
		fi
		echo "stopped $name (pid $pid)"
	fi
	rm -f "$pidfile"
}

stop bridge mqchat-bridge
stop mosquitto mosquitto
if [ -f "$RUN/pg/url" ]; then
	bash "$(dirname "${BASH_SOURCE[0]}")/pg.sh" stop "$RUN/pg" && echo "stopped postgresql ($RUN/pg)"
fi
