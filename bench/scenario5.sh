#!/usr/bin/env bash
# Scenario 5 (issue 4): the membership cache with 1,000,000 memberships.
#   100,000 users, 200,000 rooms of 5 members (mqchat-seed).
#   - plugin memory: broker VmRSS with the plugin minus bare mosquitto's, measured side by
#     side; and the peak (VmHWM) after a full reload, when two snapshots briefly coexist;
#   - broker start: exec to port accepting, with the plugin and without;
#   - a membership change visible to the next delivery: mqchat-ctlbench (bench/ctlbench.c).
# Targets: plugin memory <= 100 MB, start <= 2 s, change visible <= 1 ms.
# Usage: BUILD=$PWD/build-bench bench/scenario5.sh   (about 1 minute)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init
CTLBENCH=$BUILD/bench/mqchat-ctlbench
USERS=${USERS:-100000} ROOMS=${ROOMS:-200000} MEMBERS=${MEMBERS:-5}
ROUNDS=${ROUNDS:-1000}

ms_now() { date +%s%3N; }

echo "# seeding $USERS users, $ROOMS rooms x $MEMBERS members"
t0=$(ms_now)
seed_db "$BENCH_DIR/s5.db" "$BENCH_DIR/rooms.txt" "$USERS" "$ROOMS" "$MEMBERS"
echo "# seeded in $(( $(ms_now) - t0 )) ms: $(sqlite3 "$BENCH_DIR/s5.db" 'SELECT count(*) FROM room_participants') memberships"

# Bare mosquitto and mqchat, started the same way, measured the same way.
t0=$(ms_now); start_baseline_a; a_start=$(( $(ms_now) - t0 )); A_PID=$BROKER_PID
sleep 1
a_rss=$(rss_kb "$A_PID")

t0=$(ms_now); start_mqchat "$BENCH_DIR/s5.db" <<<"log_type notice"; m_start=$(( $(ms_now) - t0 )); M_PID=$BROKER_PID; M_PORT=$PORT
sleep 1
m_rss=$(rss_kb "$M_PID")

# A full reload: bump acl_version behind the plugin's back, wait for its log line.
sqlite3 "$BENCH_DIR/s5.db" "UPDATE meta SET value = value + 1 WHERE key = 'acl_version'"
for _ in $(seq 1 100); do
	grep -q 'membership reloaded' "$BENCH_DIR/m.log" && break
	sleep 0.1
done
grep -q 'membership reloaded' "$BENCH_DIR/m.log" || { echo "bench: the plugin did not reload" >&2; exit 1; }
sleep 1.5 # the reload thread frees the old snapshot on its next pass
m_rss_after=$(rss_kb "$M_PID")
m_hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$M_PID/status")

room=$(head -1 "$BENCH_DIR/rooms.txt" | awk '{print $1}')
echo "# control round trips on room $room"
"$CTLBENCH" "$M_PORT" "$SERVICE_USER" "$SERVICE_PW" "$room" u1 u$((USERS - 1)) "$BENCH_PW" 1000000 "$ROUNDS" \
	| tee "$BENCH_DIR/ctl.txt"

printf '%-52s %s\n' "figure" "value"
printf '%-52s %d ms (bare mosquitto %d ms)\n' "broker start with the plugin (exec -> accepting)" "$m_start" "$a_start"
printf '%-52s %.1f MB (broker %d kB - bare %d kB)\n' "plugin memory, steady" "$(echo "($m_rss - $a_rss)/1024" | bc -l)" "$m_rss" "$a_rss"
printf '%-52s %.1f MB\n' "plugin memory after a full reload" "$(echo "($m_rss_after - $a_rss)/1024" | bc -l)"
printf '%-52s %.1f MB\n' "peak during the reload (VmHWM - bare)" "$(echo "($m_hwm - $a_rss)/1024" | bc -l)"
p5099() { grep "$1" "$BENCH_DIR/ctl.txt" | sed -E 's/.*p50 +([0-9]+) us +p99 +([0-9]+) us.*/\1 \/ \2 us/'; }
printf '%-52s %s\n' "plain QoS 1 RTT p50 / p99 (baseline)" "$(p5099 'plain QoS 1')"
printf '%-52s %s\n' "control RTT p50 / p99 (change applied)" "$(p5099 'control message')"
printf '%-52s %s\n' "change acked -> next delivery p50 / p99" "$(p5099 'change acked')"
