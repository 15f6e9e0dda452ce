#!/usr/bin/env bash
# test_api_cli.sh: the request API (docs/protocol.md) driven only by mosquitto_pub /
# mosquitto_sub, as a shell user would: alice creates a direct room and a group with
# room.create (MQTT 3.1.1 and MQTT 5 forms), messages go both ways, then history, count,
# read, rooms.list; alice removes carol and carol's very next send is refused (PUBACK 0x87)
# and nothing more reaches her. Its own temp dir, free port, broker, plugin and bridge;
# needs $MQCHAT_ADMIN, $MQCHAT_PLUGIN, $MQCHAT_BRIDGE (ctest sets them). JSON is read with
# perl's core JSON::PP, so nothing beyond what test_cli.sh needs.
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sh_setup apicli alice bob carol

pw() { echo "pw-$1-s3cret"; }

# jget JSON PATH: a value of JSON by a perl path such as '->{result}{id}'; booleans print
# as true/false, undef as null, arrays as their length.
jget() {
	perl -MJSON::PP -e 'my $j = eval { decode_json($ARGV[0]) }; defined $j or do { print "unparsable"; exit };
		my $v = eval "\$j$ARGV[1]";
		print !defined $v ? "null" : ref($v) eq "JSON::PP::Boolean" ? ($v ? "true" : "false")
			: ref($v) eq "ARRAY" ? scalar(@$v) : $v' "$1" "$2"
}

# Waits until a background mosquitto_sub writing debug lines to $1 has its SUBACK.
wait_suback() {
	for _ in $(seq 1 100); do grep -q SUBACK "$1" && return 0; sleep 0.05; done
	fail "no SUBACK in $1"; return 1
}

# Each request gets its own client ids and output file (the functions run in $(...)
# subshells, so a counter would not survive: use mktemp).
# req USER JSON: MQTT 3.1.1 request; prints the answer from chat/users/USER/res.
req() {
	local out N
	out=$(mktemp "$DIR/req.XXXXXX"); N=${out##*.}
	stdbuf -oL mosquitto_sub "${C[@]}" -u "$1" -P "$(pw "$1")" -i "$1:res$N" -t "chat/users/$1/res" -C 1 -W 10 -d >"$out" 2>&1 &
	local sub=$!
	wait_suback "$out"
	mosquitto_pub "${C[@]}" -u "$1" -P "$(pw "$1")" -i "$1:req$N" -q 1 -t "chat/users/$1/req" -m "$2" || fail "publishing $2 as $1"
	wait "$sub"
	grep '^{' "$out" | head -n 1
}
# req5 USER JSON: MQTT 5 with response topic chat/users/USER/res/cli and correlation data
# corr-USER; prints "CORRELATION ANSWER".
req5() {
	local out N
	out=$(mktemp "$DIR/req.XXXXXX"); N=${out##*.}
	stdbuf -oL mosquitto_sub -V mqttv5 "${C[@]}" -u "$1" -P "$(pw "$1")" -i "$1:res$N" -t "chat/users/$1/res/cli" \
		-C 1 -W 10 -F '%D %p' -d >"$out" 2>&1 &
	local sub=$!
	wait_suback "$out"
	mosquitto_pub -V mqttv5 "${C[@]}" -u "$1" -P "$(pw "$1")" -i "$1:req$N" -q 1 -t "chat/users/$1/req" \
		-D publish response-topic "chat/users/$1/res/cli" -D publish correlation-data "corr-$1" -m "$2" || fail "publishing $2 as $1"
	wait "$sub"
	grep '^corr-' "$out" | head -n 1
}
# send USER TOPIC BODY: an MQTT 5 QoS 1 send that must be accepted (mosquitto_pub 2.0.11
# exits 0 on a refused PUBACK and prints "Publish N failed": look at what it says).
send() {
	local out
	out=$(mosquitto_pub -V mqttv5 "${C[@]}" -u "$1" -P "$(pw "$1")" -i "$1:pub" -q 1 -t "$2" \
		-m "{\"type\":\"msg\",\"body\":\"$3\"}" 2>&1)
	[ $? -eq 0 ] && ! echo "$out" | grep -qi "failed\|not authori" || fail "$1's send of '$3' refused: $out"
}
ok() { [ "$(jget "$1" '->{ok}')" = true ] || fail "$2: not ok: $1"; }

# --- room.create: a direct room (3.1.1), found again from the other side (MQTT 5)
a=$(req alice '{"op":"room.create","req_id":"c1","participants":["bob"]}')
ok "$a" "room.create direct"
ROOM=$(jget "$a" '->{result}{id}')
[ "$(jget "$a" '->{req_id}')" = c1 ] || fail "req_id not echoed: $a"
[ "$(jget "$a" '->{result}{kind}')" = direct ] || fail "not a direct room: $a"
[ "$(jget "$a" '->{result}{created}')" = true ] || fail "not created: $a"
a=$(req5 bob '{"op":"room.create","participants":["alice"]}')
case "$a" in "corr-bob {"*) ;; *) fail "MQTT 5 answer without its correlation data: $a" ;; esac
a=${a#* }
[ "$(jget "$a" '->{result}{id}')" = "$ROOM" ] || fail "bob's room.create gave another room: $a"
[ "$(jget "$a" '->{result}{created}')" = false ] || fail "bob's room.create created again: $a"
[ "$(sqlite3 -readonly "$DB" "SELECT count(*) FROM rooms WHERE kind='direct'")" = 1 ] || fail "more than one direct room"

# --- a group of three, with a name
a=$(req alice '{"op":"room.create","participants":["bob","carol"],"name":"Lunch"}')
ok "$a" "room.create group"
GROUP=$(jget "$a" '->{result}{id}')
[ "$(jget "$a" '->{result}{participants}')" = 3 ] || fail "group has not 3 participants: $a"

# --- send / receive in the group: bob and carol (3.1.1 and 5) receive alice's messages
MSGS=chat/rooms/$GROUP/messages
SEND=chat/rooms/$GROUP/send
stdbuf -oL mosquitto_sub "${C[@]}" -u bob -P "$(pw bob)" -i bob:sub -t 'chat/rooms/+/messages' -q 1 -C 3 -W 20 -d >"$DIR/bob.out" 2>&1 &
BOB_SUB=$!; PIDS+=($BOB_SUB)
stdbuf -oL mosquitto_sub -V mqttv5 "${C[@]}" -u carol -P "$(pw carol)" -i carol:sub -t "$MSGS" -q 1 -W 20 -d >"$DIR/carol.out" 2>&1 &
CAROL_SUB=$!; PIDS+=($CAROL_SUB)
wait_suback "$DIR/bob.out"; wait_suback "$DIR/carol.out"
for i in 1 2 3; do
	send alice "$SEND" "hello $i"
done
wait "$BOB_SUB"
[ "$(grep -c '^{' "$DIR/bob.out")" = 3 ] || fail "bob got $(grep -c '^{' "$DIR/bob.out") messages, expected 3"
for i in 1 2 3; do
	grep '^{' "$DIR/bob.out" | grep "hello $i" | grep -q '"from": *"alice"' || fail "bob missed hello $i"
done
for _ in $(seq 1 50); do [ "$(grep -c '^{' "$DIR/carol.out")" = 3 ] && break; sleep 0.1; done
[ "$(grep -c '^{' "$DIR/carol.out")" = 3 ] || fail "carol got $(grep -c '^{' "$DIR/carol.out") messages, expected 3"

# --- history: newest first, paged with before
a=$(req bob "{\"op\":\"history\",\"req_id\":\"h\",\"room\":\"$GROUP\",\"limit\":2}")
ok "$a" history
[ "$(jget "$a" '->{result}{messages}[0]{body}')" = "hello 3" ] || fail "history page 1 not newest first: $a"
[ "$(jget "$a" '->{result}{messages}[1]{body}')" = "hello 2" ] || fail "history page 1: $a"
[ "$(jget "$a" '->{result}{more}')" = true ] || fail "history page 1 says no more: $a"
OLDEST=$(jget "$a" '->{result}{messages}[1]{id}')
H2=$OLDEST
a=$(req5 bob "{\"op\":\"history\",\"room\":\"$GROUP\",\"before\":$OLDEST}")
a=${a#* }
[ "$(jget "$a" '->{result}{messages}')" = 1 ] || fail "history page 2 should hold one message: $a"
[ "$(jget "$a" '->{result}{messages}[0]{body}')" = "hello 1" ] || fail "history page 2: $a"
[ "$(jget "$a" '->{result}{more}')" = false ] || fail "history page 2 says more: $a"

# --- count and read: bob has 3 unread; read up to hello 2 leaves 1
a=$(req bob "{\"op\":\"count\",\"room\":\"$GROUP\"}")
[ "$(jget "$a" '->{result}{total}')" = 3 ] && [ "$(jget "$a" '->{result}{unread}')" = 3 ] || fail "count: $a"
a=$(req bob "{\"op\":\"read\",\"room\":\"$GROUP\",\"upto\":$H2}")
[ "$(jget "$a" '->{result}{unread}')" = 1 ] || fail "read: $a"
a=$(req bob "{\"op\":\"count\",\"room\":\"$GROUP\",\"from\":\"alice\"}")
[ "$(jget "$a" '->{result}{total}')" = 3 ] && [ "$(jget "$a" '->{result}{unread}')" = 1 ] || fail "count after read: $a"

# --- rooms.list: bob's two rooms, the group (with activity) first, its unread agreeing
a=$(req bob '{"op":"rooms.list"}')
[ "$(jget "$a" '->{result}{rooms}')" = 2 ] || fail "bob should have 2 rooms: $a"
[ "$(jget "$a" '->{result}{rooms}[0]{id}')" = "$GROUP" ] || fail "the group is not first: $a"
[ "$(jget "$a" '->{result}{rooms}[0]{unread}')" = 1 ] || fail "rooms.list unread: $a"
[ "$(jget "$a" '->{result}{rooms}[0]{last_message}{body}')" = "hello 3" ] || fail "rooms.list last_message: $a"

# --- errors: invalid, forbidden, not_found each answered
a=$(req alice 'not json')
[ "$(jget "$a" '->{error}{code}')" = invalid ] || fail "malformed JSON: $a"
a=$(req bob "{\"op\":\"room.members.remove\",\"room\":\"$GROUP\",\"users\":[\"carol\"]}")
[ "$(jget "$a" '->{error}{code}')" = forbidden ] || fail "bob removing carol: $a"
a=$(req carol "{\"op\":\"history\",\"room\":\"$ROOM\"}")
[ "$(jget "$a" '->{error}{code}')" = not_found ] || fail "carol reading alice and bob's room: $a"

# --- alice removes carol: carol's next send is refused, and she receives nothing more
a=$(req alice "{\"op\":\"room.members.remove\",\"room\":\"$GROUP\",\"users\":[\"carol\"]}")
ok "$a" "room.members.remove"
# (mosquitto_pub 2.0.11 exits 0 on a refused PUBACK; it prints the reason.)
out=$(mosquitto_pub -V mqttv5 "${C[@]}" -u carol -P "$(pw carol)" -i carol:pub -q 1 -t "$SEND" \
	-m '{"type":"msg","body":"am I still here"}' 2>&1)
echo "$out" | grep -qi "not authori" || fail "carol's send after her removal was not refused: $out"
send alice "$SEND" "after carol"
a=$(req bob "{\"op\":\"history\",\"room\":\"$GROUP\",\"limit\":1}")
[ "$(jget "$a" '->{result}{messages}[0]{body}')" = "after carol" ] || fail "the last message is not alice's: $a"
sleep 0.5
kill "$CAROL_SUB" 2>/dev/null; wait "$CAROL_SUB" 2>/dev/null
[ "$(grep -c '^{' "$DIR/carol.out")" = 3 ] || fail "carol received after her removal: $(grep '^{' "$DIR/carol.out" | tail -n 2)"
grep -q 'am I still here' "$DIR/carol.out" && fail "carol's refused message was delivered"
PIDS=()
exit 0
