# tests/sh/lib.sh: what every shell test shares (sourced, not run; no test_ prefix, so
# ctest does not pick it up). A test sets nothing first, sources this, then calls
#   sh_prepare NAME USER... a temp dir, a database with USERs (password "pw-USER-s3cret",
#                           1,000 hash iterations), a free port; cleanup on exit;
#   sh_start                mosquitto with the plugin and mqchat-bridge, running and ready
#                           (rooms made with admin before it are in the plugin's first load);
#   sh_setup NAME USER...   both.
# and uses: $DIR $DB $PORT, C=(-h 127.0.0.1 -p PORT), admin ARGS..., fail MSG, PIDS+=(...)
# for background clients it wants killed at exit. Needs $MQCHAT_ADMIN, $MQCHAT_PLUGIN,
# $MQCHAT_BRIDGE (ctest sets them); $MQCHAT_ASAN_PRELOAD is preloaded into mosquitto only.

: "${MQCHAT_ADMIN:?run through ctest}" "${MQCHAT_PLUGIN:?run through ctest}" "${MQCHAT_BRIDGE:?run through ctest}"

FAILS=0
PIDS=()
BROKER_PID=
BRIDGE_PID=

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
admin() { "$MQCHAT_ADMIN" --db "$DB" "$@"; }

sh_cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	if [ -n "$BRIDGE_PID" ]; then kill -TERM "$BRIDGE_PID" 2>/dev/null; wait "$BRIDGE_PID" 2>/dev/null; fi
	if [ -n "$BROKER_PID" ]; then kill -TERM "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null; fi
	if [ $FAILS -ne 0 ] || [ $rc -ne 0 ]; then
		for f in broker.log bridge.log; do echo "===== $f"; tail -n 200 "$DIR/$f" 2>/dev/null; done >&2
		echo "FAILED ($FAILS checks); kept $DIR" >&2
		exit 1
	fi
	rm -rf "$DIR"
	echo PASSED
}

sh_prepare() {
	local name=$1 u
	shift
	DIR=$(mktemp -d "${TMPDIR:-/tmp}/mqchat-$name-XXXXXX")
	DB=$DIR/chat.db
	trap sh_cleanup EXIT

	# A free loopback port: bind port 0 and read back what the kernel chose.
	PORT=$(perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0) or die; print $s->sockport')
	SERVICE_PW=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf '%s\n' "$SERVICE_PW" > "$DIR/service.pw"
	chmod 600 "$DIR/service.pw"

	admin init >/dev/null || { fail "mqchat-admin init"; exit 1; }
	for u in "$@"; do
		printf 'pw-%s-s3cret\n' "$u" | admin user add "$u" --iterations 1000 >/dev/null || { fail "user add $u"; exit 1; }
	done
}

sh_start() {
	# Started as root, mosquitto would switch to user "mosquitto", which cannot use $DIR.
	cat > "$DIR/mosquitto.conf" <<CONF
user $(id -un)
listener $PORT 127.0.0.1
allow_anonymous false
per_listener_settings false
max_queued_messages 1000
max_queued_bytes 16777216
set_tcp_nodelay true
persistence false
log_dest stderr
plugin $MQCHAT_PLUGIN
plugin_opt_db_path $DB
plugin_opt_service_user mqchat-bridge
plugin_opt_service_password $SERVICE_PW
CONF

	if [ -n "${MQCHAT_ASAN_PRELOAD:-}" ]; then
		LD_PRELOAD=$MQCHAT_ASAN_PRELOAD ASAN_OPTIONS=detect_leaks=0 mosquitto -c "$DIR/mosquitto.conf" >"$DIR/broker.log" 2>&1 &
	else
		mosquitto -c "$DIR/mosquitto.conf" >"$DIR/broker.log" 2>&1 &
	fi
	BROKER_PID=$!
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
		kill -0 "$BROKER_PID" 2>/dev/null || { fail "mosquitto exited during start-up"; exit 1; }
		sleep 0.1
	done

	"$MQCHAT_BRIDGE" --host 127.0.0.1 --port "$PORT" --db "$DB" --user mqchat-bridge \
		--password-file "$DIR/service.pw" >"$DIR/bridge.log" 2>&1 &
	BRIDGE_PID=$!
	for _ in $(seq 1 200); do
		grep -q "bridge: ready" "$DIR/bridge.log" && break
		kill -0 "$BRIDGE_PID" 2>/dev/null || { fail "mqchat-bridge exited during start-up"; exit 1; }
		sleep 0.1
	done
	grep -q "bridge: ready" "$DIR/bridge.log" || { fail "bridge never logged 'bridge: ready'"; exit 1; }
	C=(-h 127.0.0.1 -p "$PORT")
}

sh_setup() {
	sh_prepare "$@"
	sh_start
}
