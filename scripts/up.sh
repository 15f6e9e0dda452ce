#!/usr/bin/env bash
# up.sh: brings up mqchat on localhost with a fresh database, in ./run/:
#   installs missing packages, builds (build/), creates ./run/chat.db with users alice and
#   bob (random passwords, printed) and their direct room, writes ./run/mosquitto.conf from
#   mosquitto.conf.example, starts mosquitto + plugin and mqchat-bridge in the background
#   (pids in ./run/*.pid, logs in ./run/*.log), waits until both are ready and prints how
#   to connect. A previous up.sh run is stopped first (scripts/down.sh).
# MQCHAT_PORT sets the MQTT listener port (default 1883), MQCHAT_WEB_PORT the web client's
# (MQTT over WebSockets and the page, default 9001; loopback only).
# The web client (web/ and MQTT.js from node_modules, installed with npm ci) is copied to
# ./run/web and served by mosquitto itself.
# MQCHAT_ENGINE=postgresql keeps the database in PostgreSQL instead of SQLite: a server of its
# own in ./run/pg (scripts/pg.sh, a free loopback port, stopped by down.sh) with a database
# "mqchat". docs/running.md shows how to use a PostgreSQL server you already run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PORT=${MQCHAT_PORT:-1883}
WEB_PORT=${MQCHAT_WEB_PORT:-9001}
RUN=$ROOT/run
BUILD=$ROOT/build

bash scripts/deps.sh
bash scripts/down.sh >/dev/null 2>&1 || true
[ -f node_modules/mqtt/dist/mqtt.min.js ] || npm ci --no-audit --no-fund --loglevel=error

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target mqchat_plugin mqchat-bridge mqchat-admin >/dev/null
ADMIN=$BUILD/admin/mqchat-admin
BRIDGE=$BUILD/bridge/mqchat-bridge
PLUGIN=$BUILD/plugin/mqchat_plugin.so

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	echo "up.sh: port $PORT on 127.0.0.1 is already in use; choose another with MQCHAT_PORT=..." >&2
	exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$WEB_PORT") 2>/dev/null; then
	echo "up.sh: port $WEB_PORT on 127.0.0.1 is already in use; choose another with MQCHAT_WEB_PORT=..." >&2
	exit 1
fi

rm -rf "$RUN"
mkdir -p "$RUN"
chmod 700 "$RUN"
DB=$RUN/chat.db
case "${MQCHAT_ENGINE:-sqlite}" in
	sqlite) ;;
	postgresql)
		# pg.sh runs the server as the postgres user: its directory must be reachable.
		chmod 711 "$RUN"
		PG_URL=$(bash scripts/pg.sh start "$RUN/pg")
		psql "$PG_URL" -q -c 'CREATE DATABASE mqchat' >/dev/null
		DB=${PG_URL%/postgres}/mqchat
		;;
	*) echo "up.sh: MQCHAT_ENGINE=$MQCHAT_ENGINE: expected sqlite or postgresql" >&2; exit 1 ;;
esac
newpw() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

"$ADMIN" --db "$DB" init >/dev/null
ALICE_PW=$(newpw)
BOB_PW=$(newpw)
printf '%s\n' "$ALICE_PW" | "$ADMIN" --db "$DB" user add alice >/dev/null
printf '%s\n' "$BOB_PW" | "$ADMIN" --db "$DB" user add bob >/dev/null
ROOM=$("$ADMIN" --db "$DB" room create alice bob | tail -n 1)
# a device token for bob (docs/logging-in.md): what a device logs in with after the password once
BOB_TOKEN=$("$ADMIN" --db "$DB" token add bob cli 2>/dev/null)
SERVICE_PW=$(newpw)$(newpw)
printf '%s\n' "$SERVICE_PW" > "$RUN/service.pw"
chmod 600 "$RUN/service.pw"

# Every connection is a file descriptor: raise the soft limit as far as the hard one
# allows, and keep max_connections below it (with room for the listeners and files).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
MAXCONN=10000
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((MAXCONN + 100)) ]; then MAXCONN=$((NOFILE - 100)); fi

# mosquitto.conf from the example: our port, plugin, database, service password, and
# persistence in ./run. Started as root, mosquitto would switch to the "mosquitto" user,
# which cannot read ./run: keep it as the invoking user.
sed -e "s|^listener 1883 127.0.0.1|listener $PORT 127.0.0.1|" \
	-e "s|^plugin /path/to/mqchat_plugin.so|plugin $PLUGIN|" \
	-e "s|^plugin_opt_db_path .*|plugin_opt_db_path $DB|" \
	-e "s|^#plugin_opt_spool_path .*|plugin_opt_spool_path $RUN/mqchat.spool|" \
	-e "s|^#plugin_opt_idlease_path .*|plugin_opt_idlease_path $RUN/mqchat.idlease|" \
	-e "s|^plugin_opt_service_user .*|plugin_opt_service_user mqchat-bridge|" \
	-e "s|^plugin_opt_service_password .*|plugin_opt_service_password $SERVICE_PW|" \
	-e "s|^persistence_location .*|persistence_location $RUN/|" \
	-e "s|^max_connections .*|max_connections $MAXCONN|" \
	mosquitto.conf.example > "$RUN/mosquitto.conf"
# The web client: the page and MQTT over WebSockets on one port. "lo" (the interface, not
# 127.0.0.1) is what keeps mosquitto 2.0's websockets listener on the loopback: given an
# address it binds every interface (docs/running.md "The web client").
mkdir -p "$RUN/web"
cp web/* node_modules/mqtt/dist/mqtt.min.js "$RUN/web/"
printf '\n# added by scripts/up.sh\nuser %s\nlistener %s lo\nprotocol websockets\nhttp_dir %s\n' \
	"$(id -un)" "$WEB_PORT" "$RUN/web" >> "$RUN/mosquitto.conf"
chmod 600 "$RUN/mosquitto.conf"

MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
nohup "$MOSQUITTO" -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
echo $! > "$RUN/mosquitto.pid"
for _ in $(seq 1 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	if ! kill -0 "$(cat "$RUN/mosquitto.pid")" 2>/dev/null; then
		echo "up.sh: mosquitto exited; its log:" >&2; cat "$RUN/mosquitto.log" >&2; exit 1
	fi
	sleep 0.1
done

nohup "$BRIDGE" --host 127.0.0.1 --port "$PORT" --db "$DB" --user mqchat-bridge \
	--password-file "$RUN/service.pw" >"$RUN/bridge.log" 2>&1 &
echo $! > "$RUN/bridge.pid"
for _ in $(seq 1 100); do
	grep -q "bridge: ready" "$RUN/bridge.log" && break
	if ! kill -0 "$(cat "$RUN/bridge.pid")" 2>/dev/null; then
		echo "up.sh: mqchat-bridge exited; its log:" >&2; cat "$RUN/bridge.log" >&2; exit 1
	fi
	sleep 0.1
done
if ! grep -q "bridge: ready" "$RUN/bridge.log"; then
	echo "up.sh: mqchat-bridge did not become ready in 10 s; see $RUN/bridge.log" >&2
	exit 1
fi

cat <<EOT
mqchat is up: mosquitto on 127.0.0.1:$PORT with the mqchat plugin, and the bridge.
  web client  http://127.0.0.1:$WEB_PORT/   (open it in two windows: alice in one, bob in the other)
  database  $DB
  logs      $RUN/mosquitto.log  $RUN/bridge.log
  stop      bash scripts/down.sh

Users (MQTT username / password):
  alice  $ALICE_PW
  bob    $BOB_PW
Their direct room: $ROOM
bob's device token (his password on a device from now on; docs/logging-in.md):
  $BOB_TOKEN

Try it, in two terminals. bob listens, logged in with his token:
  mosquitto_sub -h 127.0.0.1 -p $PORT -u bob -P $BOB_TOKEN -i bob:cli -t chat/rooms/$ROOM/messages -q 1 -v

alice sends (she must use her own room's send topic; every participant gets the stamped message):
  mosquitto_pub -h 127.0.0.1 -p $PORT -u alice -P $ALICE_PW -i alice:cli -t chat/rooms/$ROOM/send -q 1 -m '{"type":"msg","body":"hi bob"}'

Stored messages:
EOT
if [ "$DB" = "$RUN/chat.db" ]; then
	echo "  sqlite3 -readonly $DB 'SELECT id, sender, body FROM messages'"
else
	echo "  psql $DB -c 'SELECT id, sender, body FROM messages'"
fi
