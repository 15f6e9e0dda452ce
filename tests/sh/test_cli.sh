#!/usr/bin/env bash
# test_cli.sh: the core path driven only by mosquitto_pub / mosquitto_sub, as a user of the
# command-line clients would: alice and bob talk both ways in their direct room (each
# sees its own echo), carol (outside) is refused, and an invalid message is refused and
# reaches nobody. Its own temp dir and free port (tests/sh/lib.sh).
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sh_prepare cli alice bob carol
ROOM=$(admin room create alice bob | grep -oE '\br[A-Za-z0-9]{21}\b' | tail -n 1)
[ -n "$ROOM" ] || { fail "room create printed no room id"; exit 1; }
sh_start

MESSAGES=chat/rooms/$ROOM/messages
SEND=chat/rooms/$ROOM/send
count_stored() { sqlite3 -readonly "$DB" "SELECT count(*) FROM messages WHERE room_id = '$ROOM'"; }

# Starts a subscriber in the background (-d: its debug lines tell when the SUBACK came);
# waits until it is subscribed. $1 user, $2 file, rest: extra mosquitto_sub options.
start_sub() {
	local user=$1 out=$2; shift 2
	# stdbuf: the debug lines must reach the file as they happen, not at exit.
	stdbuf -oL mosquitto_sub "${C[@]}" -u "$user" -P "pw-$user-s3cret" -i "$user:sub$RANDOM" -t "$MESSAGES" -q 1 -d "$@" >"$out" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 100); do grep -q SUBACK "$out" && return 0; sleep 0.05; done
	fail "$user: no SUBACK"
}
payloads() { grep '^{' "$1"; }

# --- direct room both ways, each with its own echo (bob on MQTT 5, alice on 3.1.1)
start_sub alice "$DIR/alice.out" -C 2 -W 20 -V 311
start_sub bob "$DIR/bob.out" -C 2 -W 20 -V 5
mosquitto_pub "${C[@]}" -u alice -P pw-alice-s3cret -i alice:pub -t "$SEND" -q 1 \
	-m '{"type":"msg","body":"hi bob","from":"mallory"}' || fail "alice's publish failed"
mosquitto_pub "${C[@]}" -V 5 -u bob -P pw-bob-s3cret -i bob:pub -t "$SEND" -q 1 \
	-m '{"type":"msg","body":"hi alice"}' || fail "bob's publish failed"
wait "${PIDS[0]}" "${PIDS[1]}" 2>/dev/null
for who in alice bob; do
	p=$(payloads "$DIR/$who.out")
	echo "$p" | grep 'hi bob' | grep -q '"from": *"alice"' || fail "$who did not get alice's message stamped from alice: $p"
	echo "$p" | grep 'hi alice' | grep -q '"from": *"bob"' || fail "$who did not get bob's message: $p"
	echo "$p" | grep -q mallory && fail "$who saw the forged from: $p"
	[ "$(echo "$p" | grep -c '^{')" = 2 ] || fail "$who got $(echo "$p" | grep -c '^{') messages, expected 2"
done
for _ in $(seq 1 50); do [ "$(count_stored)" = 2 ] && break; sleep 0.1; done
[ "$(count_stored)" = 2 ] || fail "stored $(count_stored) messages, expected 2"
PIDS=()

# --- carol, outside the room: her subscription is refused, her send too
out=$(mosquitto_sub "${C[@]}" -V 5 -u carol -P pw-carol-s3cret -i carol:sub -t "$MESSAGES" -q 1 -C 1 -W 3 2>&1)
echo "$out" | grep -qi "denied\|not authori" || fail "carol's SUBSCRIBE to $MESSAGES was not refused: $out"
for filter in 'chat/#' '#' '$share/g/chat/rooms/+/messages'; do
	out=$(mosquitto_sub "${C[@]}" -V 5 -u carol -P pw-carol-s3cret -i carol:w -t "$filter" -C 1 -W 2 2>&1)
	echo "$out" | grep -qi "denied\|not authori" || fail "carol's SUBSCRIBE to $filter was not refused: $out"
done
start_sub bob "$DIR/bob2.out" -C 1 -W 3 -V 5
start_sub carol "$DIR/carol.out" -C 1 -W 3 -V 5 -t 'chat/rooms/+/messages'
out=$(mosquitto_pub "${C[@]}" -V 5 -u carol -P pw-carol-s3cret -i carol:pub -t "$SEND" -q 1 \
	-m '{"type":"msg","body":"let me in"}' 2>&1)
echo "$out" | grep -qi "not authori\|failed" || fail "carol's send was not refused: $out"

# --- invalid messages are refused and reach nobody
for bad in '{"type":"msg"' '{"type":"sticker","body":"x"}' '{"type":"msg"}'; do
	out=$(mosquitto_pub "${C[@]}" -V 5 -u alice -P pw-alice-s3cret -i alice:bad -t "$SEND" -q 1 -m "$bad" 2>&1)
	echo "$out" | grep -qi "not authori\|failed" || fail "invalid message $bad was not refused: $out"
done
out=$(mosquitto_pub "${C[@]}" -V 5 -u alice -P pw-alice-s3cret -i alice:ret -t "$SEND" -q 1 -r \
	-m '{"type":"msg","body":"retained"}' 2>&1)
echo "$out" | grep -qi "not authori\|failed" || fail "a retained send was not refused: $out"
wait "${PIDS[@]}" 2>/dev/null
[ -z "$(payloads "$DIR/bob2.out")" ] || fail "bob received a refused message: $(payloads "$DIR/bob2.out")"
[ -z "$(payloads "$DIR/carol.out")" ] || fail "carol received something: $(payloads "$DIR/carol.out")"
PIDS=()

# --- a wrong password is refused at CONNECT
out=$(mosquitto_pub "${C[@]}" -u alice -P wrong -i alice:x -t "$SEND" -m '{"type":"msg","body":"x"}' 2>&1) \
	&& fail "a wrong password was accepted: $out"

# --- and a valid message after all of that is delivered and stored: only one more row
start_sub bob "$DIR/bob3.out" -C 1 -W 10 -V 5
mosquitto_pub "${C[@]}" -V 5 -u alice -P pw-alice-s3cret -i alice:pub -t "$SEND" -q 1 \
	-m '{"type":"msg","body":"still works"}' || fail "a valid message after the refusals failed"
wait "${PIDS[@]}" 2>/dev/null
payloads "$DIR/bob3.out" | grep -q 'still works' || fail "bob did not get the valid message"
for _ in $(seq 1 50); do [ "$(count_stored)" = 3 ] && break; sleep 0.1; done
[ "$(count_stored)" = 3 ] || fail "stored $(count_stored) messages, expected 3"
PIDS=()

exit 0
