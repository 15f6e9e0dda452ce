/*
 * One user cannot take what others need (issue 8, docs/architecture.md "Fair share"):
 * connections per user, subscriptions per client, the length of a filter below res/, the
 * bytes a sender may send per second and the requests a user may make per second. Each
 * limit refuses with a reason (a SUBACK 0x87, or a connection closed without
 * acknowledgement: "try again later", never the answer a wrong password gets) and a log
 * line, and leaves other users alone. And a QoS 2 send resent after a reconnect (DUP=1,
 * same packet id) is stamped once.
 *
 * Options of this env: max_connections_per_user 3, max_subscriptions 5, send_bytes_rate
 * 20000 (burst 65536), request_rate 2 (burst 5).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"

static char room[65];

static void connections_per_user(h_env *env)
{
	h_client *c[3];
	int reason = 0;
	char cid[32];
	size_t mark = h_file_size(env->broker_log);
	for(int i = 0; i < 3; i++){
		snprintf(cid, sizeof(cid), "dave:%d", i);
		c[i] = h_connect(env, "dave", h_pw("dave"), cid, H_PROTO_V5, &reason);
		H_REQUIRE(c[i]);
	}
	/* the fourth: closed without a CONNACK, in both protocol versions */
	H_CHECK(!h_connect(env, "dave", h_pw("dave"), "dave:3", H_PROTO_V5, &reason));
	H_CHECK_INT(reason, ==, -1);
	H_CHECK(!h_connect(env, "dave", h_pw("dave"), "dave:4", H_PROTO_V311, &reason));
	H_CHECK_INT(reason, ==, -1);
	H_CHECK(h_log_wait(env->broker_log, mark, "max_connections_per_user", 2000));
	/* a wrong password still says so, whatever the count */
	H_CHECK(!h_connect(env, "dave", "wrong", "dave:5", H_PROTO_V5, &reason));
	H_CHECK_INT(reason, ==, 0x87);
	/* a device reconnecting under its own client id takes its old connection's place */
	h_client *again = h_connect(env, "dave", h_pw("dave"), "dave:1", H_PROTO_V5, &reason);
	H_CHECK(again);
	h_sleep_ms(200);
	/* other users are not affected */
	h_client *erin = h_connect(env, "erin", h_pw("erin"), "erin:0", H_PROTO_V5, &reason);
	H_CHECK(erin);
	/* a closed connection frees its place */
	h_client_close(c[0]);
	h_client *fourth = NULL;
	for(int64_t until = h_now_ms() + 3000; !fourth && h_now_ms() < until;){
		h_sleep_ms(100); /* the broker handles the DISCONNECT (slower on a loaded machine) */
		fourth = h_connect(env, "dave", h_pw("dave"), "dave:3", H_PROTO_V5, &reason);
	}
	H_CHECK(fourth);
	h_client_close(fourth);
	h_client_close(again);
	h_client_close(c[2]);
	h_client_close(erin);
}

static void subscriptions_per_client(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	char filter[512];
	H_REQUIRE(alice);
	size_t mark = h_file_size(env->broker_log);
	for(int i = 0; i < 5; i++){
		snprintf(filter, sizeof(filter), "chat/users/alice/res/%d", i);
		H_CHECK_INT(h_subscribe(alice, filter, 1), ==, 1);
	}
	H_CHECK_INT(h_subscribe(alice, "chat/users/alice/res/5", 1), ==, 0x87);
	H_CHECK(h_log_wait(env->broker_log, mark, "max_subscriptions", 2000));
	h_client_close(alice);

	/* below res/: 128 bytes is the most */
	alice = h_login(env, "alice", H_PROTO_V5);
	H_REQUIRE(alice);
	memcpy(filter, "chat/users/alice/res/", 21);
	memset(filter + 21, 'x', 129);
	filter[21 + 129] = '\0';
	H_CHECK_INT(h_subscribe(alice, filter, 1), ==, 0x87);
	H_CHECK(h_log_wait(env->broker_log, mark, "over max_res_topic", 2000));
	filter[21 + 128] = '\0';
	H_CHECK_INT(h_subscribe(alice, filter, 1), ==, 1);
	/* another user's own topics are unaffected */
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	H_REQUIRE(bob);
	H_CHECK_INT(h_subscribe(bob, "chat/users/bob/res/#", 1), ==, 1);
	h_client_close(alice);
	h_client_close(bob);
}

static void bytes_per_sender(h_env *env)
{
	char send[256];
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	H_REQUIRE(alice && bob);
	h_topic_send(send, room);
	size_t n = 16030; /* a body of 16,000 bytes */
	char *big = malloc(n + 64);
	H_REQUIRE(big);
	int off = snprintf(big, n + 64, "{\"type\":\"msg\",\"body\":\"");
	memset(big + off, 'b', n - (size_t)off - 3);
	memcpy(big + n - 3, "\"}", 3);
	h_sleep_ms(1100); /* past the 20-a-second limit on refusal lines the cases before used */
	size_t mark = h_file_size(env->broker_log);
	int accepted = 0, closed = 0;
	int64_t t0 = h_now_ms();
	for(int i = 0; i < 8 && !closed; i++){
		int rc = h_publish(alice, send, big, (int)strlen(big), 1, false, NULL);
		if(rc == 0) accepted++;
		else if(rc == -2) closed = 1;
	}
	/* the burst (65536 bytes) takes four of 16,030; the fifth closes the connection,
	 * unless the loop was slow enough (a loaded machine) for the 20,000 bytes/s refill to
	 * pay for one more */
	int64_t extra = (h_now_ms() - t0) * 20000 / 1000 / 16030;
	H_CHECK_INT(accepted, >=, 4);
	H_CHECK_INT(accepted, <=, 4 + extra);
	H_CHECK_INT(closed, ==, 1);
	H_CHECK(h_log_wait(env->broker_log, mark, "over send_bytes_rate", 2000));
	H_CHECK_INT(h_drain(bob, 1000), ==, accepted);
	/* someone else sends as usual */
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	H_REQUIRE(carol);
	H_CHECK_INT(h_publish_str(carol, send, "{\"type\":\"msg\",\"body\":\"small\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room, "carol", "small"));
	free(big);
	h_client_close(alice);
	h_client_close(bob);
	h_client_close(carol);
}

static void requests_per_user(h_env *env)
{
	h_client *erin = h_login(env, "erin", H_PROTO_V5);
	H_REQUIRE(erin);
	H_REQUIRE_INT(h_subscribe(erin, "chat/users/erin/res", 1), ==, 1);
	h_sleep_ms(1100); /* past the 20-a-second limit on refusal lines */
	size_t mark = h_file_size(env->broker_log);
	int acked = 0, closed = 0;
	int64_t t0 = h_now_ms();
	for(int i = 0; i < 20 && !closed; i++){
		int rc = h_publish_str(erin, "chat/users/erin/req", "{\"op\":\"contacts.list\"}", 1);
		if(rc == 0) acked++;
		else if(rc == -2) closed = 1;
	}
	/* burst 5, and what 2/s refilled while the loop ran (one more on a quick machine) */
	H_CHECK_INT(acked, >=, 5);
	H_CHECK_INT(acked, <=, 6 + (h_now_ms() - t0) * 2 / 1000);
	H_CHECK_INT(closed, ==, 1);
	H_CHECK(h_log_wait(env->broker_log, mark, "over request_rate", 2000));
	/* (answers still on their way when the connection closed are lost to a clean session) */
	h_client_close(erin);
	/* QoS 0 requests over the rate are dropped, the connection stays */
	erin = h_login(env, "erin", H_PROTO_V5);
	H_REQUIRE(erin);
	H_REQUIRE_INT(h_subscribe(erin, "chat/users/erin/res", 1), ==, 1);
	h_sleep_ms(2600); /* the bucket refills */
	/* Answers to the first burst that the bridge sent after that session closed come to
	 * this one (same topic): not this burst's. (Seen on PostgreSQL, whose answers are a
	 * few ms slower: 9 counted of 8 allowed.) */
	h_drain(erin, 0);
	t0 = h_now_ms();
	for(int i = 0; i < 30; i++) h_publish_str(erin, "chat/users/erin/req", "{\"op\":\"contacts.list\"}", 0);
	int64_t spent = h_now_ms() - t0;
	int answers = h_drain(erin, 1500);
	H_CHECK_INT(answers, >=, 5);
	H_CHECK_INT(answers, <=, 8 + spent * 2 / 1000);
	H_CHECK(h_client_connected(erin));
	h_client_close(erin);
}

/* ------------------------------------------------------------------ QoS 2 by hand */

/* A bare MQTT 3.1.1 client: libmosquitto would not let a test resend a PUBLISH. */
static int raw_connect(h_env *env, const char *user, const char *cid, bool clean, int *session_present)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)env->port) };
	struct timeval tv = { 5, 0 };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if(connect(fd, (struct sockaddr *)&a, sizeof(a))){
		close(fd);
		return -1;
	}
	unsigned char p[512];
	const char *pw = h_pw(user);
	size_t n = 2, cl = strlen(cid), ul = strlen(user), pl = strlen(pw);
	memcpy(p + n, "\x00\x04MQTT\x04", 7);
	n += 7;
	p[n++] = (unsigned char)(0x80 | 0x40 | (clean ? 0x02 : 0));
	p[n++] = 0;
	p[n++] = 60;
	p[n++] = 0; p[n++] = (unsigned char)cl; memcpy(p + n, cid, cl); n += cl;
	p[n++] = 0; p[n++] = (unsigned char)ul; memcpy(p + n, user, ul); n += ul;
	p[n++] = 0; p[n++] = (unsigned char)pl; memcpy(p + n, pw, pl); n += pl;
	p[0] = 0x10;
	p[1] = (unsigned char)(n - 2);
	unsigned char ack[4];
	if(write(fd, p, n) != (ssize_t)n || recv(fd, ack, 4, MSG_WAITALL) != 4 || ack[0] != 0x20 || ack[3] != 0){
		close(fd);
		return -1;
	}
	*session_present = ack[2] & 1;
	return fd;
}

static int raw_publish_qos2(int fd, const char *topic, const char *payload, uint16_t mid, bool dup)
{
	unsigned char p[1024];
	size_t tl = strlen(topic), pl = strlen(payload), n = 0;
	size_t rl = 2 + tl + 2 + pl;
	p[n++] = (unsigned char)(0x34 | (dup ? 0x08 : 0));
	p[n++] = (unsigned char)(rl & 0x7f) | (rl > 127 ? 0x80 : 0);
	if(rl > 127) p[n++] = (unsigned char)(rl >> 7);
	p[n++] = (unsigned char)(tl >> 8); p[n++] = (unsigned char)tl; memcpy(p + n, topic, tl); n += tl;
	p[n++] = (unsigned char)(mid >> 8); p[n++] = (unsigned char)mid;
	memcpy(p + n, payload, pl);
	n += pl;
	return write(fd, p, n) == (ssize_t)n ? 0 : -1;
}

/* Reads one 4-byte ack packet (PUBREC 0x50, PUBCOMP 0x70) for mid. */
static int raw_expect(int fd, unsigned char type, uint16_t mid)
{
	unsigned char a[4];
	if(recv(fd, a, 4, MSG_WAITALL) != 4) return -1;
	return a[0] == type && a[1] == 2 && a[2] == (mid >> 8) && a[3] == (mid & 0xff) ? 0 : -1;
}

static int raw_pubrel(int fd, uint16_t mid)
{
	unsigned char p[4] = { 0x62, 2, (unsigned char)(mid >> 8), (unsigned char)mid };
	return write(fd, p, 4) == 4 ? 0 : -1;
}

static void qos2_resend_stamped_once(h_env *env)
{
	char send[256];
	const char *body = "{\"type\":\"msg\",\"body\":\"exactly once\"}";
	int sp = 0;
	h_topic_send(send, room);
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	H_REQUIRE(bob);

	int fd = raw_connect(env, "alice", "alice:q2", false, &sp);
	H_REQUIRE(fd >= 0);
	H_REQUIRE_INT(raw_publish_qos2(fd, send, body, 7, false), ==, 0);
	H_CHECK_INT(raw_expect(fd, 0x50, 7), ==, 0);
	close(fd); /* as if the PUBREC never arrived: the client will send the PUBLISH again */
	json_decref(H_EXPECT_CHAT(bob, room, "alice", "exactly once"));

	fd = raw_connect(env, "alice", "alice:q2", false, &sp);
	H_REQUIRE(fd >= 0);
	H_CHECK_INT(sp, ==, 1);
	H_REQUIRE_INT(raw_publish_qos2(fd, send, body, 7, true), ==, 0);
	H_CHECK_INT(raw_expect(fd, 0x50, 7), ==, 0);
	H_REQUIRE_INT(raw_pubrel(fd, 7), ==, 0);
	H_CHECK_INT(raw_expect(fd, 0x70, 7), ==, 0);
	H_CHECK_NO_MESSAGE(bob, 1000);
	H_CHECK_INT(h_db_wait_int(env, 1, 5000, "SELECT count(*) FROM messages WHERE body = 'exactly once'", (char *)NULL), ==, 1);

	/* Released: the same bytes again are a new message, on this connection or the next. */
	H_REQUIRE_INT(raw_publish_qos2(fd, send, body, 8, false), ==, 0);
	H_CHECK_INT(raw_expect(fd, 0x50, 8), ==, 0);
	H_REQUIRE_INT(raw_pubrel(fd, 8), ==, 0);
	H_CHECK_INT(raw_expect(fd, 0x70, 8), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room, "alice", "exactly once"));
	close(fd);
	fd = raw_connect(env, "alice", "alice:q2", false, &sp);
	H_REQUIRE(fd >= 0);
	H_REQUIRE_INT(raw_publish_qos2(fd, send, body, 9, false), ==, 0);
	H_CHECK_INT(raw_expect(fd, 0x50, 9), ==, 0);
	H_REQUIRE_INT(raw_pubrel(fd, 9), ==, 0);
	H_CHECK_INT(raw_expect(fd, 0x70, 9), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room, "alice", "exactly once"));
	H_CHECK_INT(h_db_wait_int(env, 3, 5000, "SELECT count(*) FROM messages WHERE body = 'exactly once'", (char *)NULL), ==, 3);
	close(fd);
	h_client_close(bob);
}

int main(void)
{
	h_env *env = h_env_new("fair_share");
	const char *users[] = { "alice", "bob", "carol", "dave", "erin" };
	for(size_t i = 0; i < 5; i++) h_user(env, users[i]);
	if(h_room_create(env, room, "alice", "bob", "carol", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_plugin_opt(env, "max_connections_per_user", "3");
	h_env_plugin_opt(env, "max_subscriptions", "5");
	h_env_plugin_opt(env, "send_bytes_rate", "20000");
	h_env_plugin_opt(env, "send_bytes_burst", "65536");
	h_env_plugin_opt(env, "request_rate", "2");
	h_env_plugin_opt(env, "request_burst", "5");
	h_env_start(env);
	H_RUN(env, connections_per_user);
	H_RUN(env, subscriptions_per_client);
	H_RUN(env, bytes_per_sender);
	H_RUN(env, requests_per_user);
	H_RUN(env, qos2_resend_stamped_once);
	return h_env_finish(env);
}
