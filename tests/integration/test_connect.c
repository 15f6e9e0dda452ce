/*
 * CONNECT (issue 2): wrong password, unknown user, anonymous client, a username with '/'
 * or '+' (or otherwise outside [A-Za-z0-9._-]{1,64}), a disabled user and a client id
 * belonging to another user are all refused at CONNECT; the right ones are accepted.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void on_connack_rc(struct mosquitto *m, void *obj, int rc)
{
	(void)m;
	*(int *)obj = rc;
}

static void refused(h_env *env, const char *what, const char *user, const char *pw, const char *cid)
{
	const int protos[2] = { H_PROTO_V311, H_PROTO_V5 };

	for(int i = 0; i < 2; i++) {
		int reason = 0;
		h_client *c = h_connect(env, user, pw, cid, protos[i], &reason);
		if(c) {
			h_fail(__FILE__, __LINE__, "%s (MQTT %s) was accepted at CONNECT", what, i ? "5" : "3.1.1");
			h_client_close(c);
		} else if(reason <= 0) {
			/* A refusal is a CONNACK with a failure code; a closed or refused TCP
			 * connection means the broker is gone, not that it said no. */
			h_fail(__FILE__, __LINE__, "%s (MQTT %s): no CONNACK refusal (%d): is the broker alive?", what,
					i ? "5" : "3.1.1", reason);
		}
	}
}

static void accepted(h_env *env, const char *what, const char *user, const char *pw, const char *cid)
{
	int reason = -1;
	h_client *c = h_connect(env, user, pw, cid, H_PROTO_V5, &reason);

	if(!c) h_fail(__FILE__, __LINE__, "%s was refused: CONNACK %d", what, reason);
	h_client_close(c);
}

static void good_logins(h_env *env)
{
	accepted(env, "alice, client id alice", "alice", h_pw("alice"), "alice");
	accepted(env, "alice, client id alice:phone", "alice", h_pw("alice"), "alice:phone");
	/* A reconnect (the verified-credential cache) is accepted too. */
	accepted(env, "alice again", "alice", h_pw("alice"), "alice:phone");
}

static void bad_credentials(h_env *env)
{
	refused(env, "a wrong password", "bob", "not-bobs-password", "bob");
	refused(env, "an empty password", "bob", "", "bob");
	refused(env, "no password", "bob", NULL, "bob");
	refused(env, "an unknown user", "mallory", "whatever-123", "mallory");
	refused(env, "an anonymous client", NULL, NULL, "anon-1");
}

static void bad_usernames(h_env *env)
{
	char longname[80];

	memset(longname, 'a', 65);
	longname[65] = '\0';
	refused(env, "username with /", "ali/ce", h_pw("alice"), "ali/ce");
	refused(env, "username with +", "ali+ce", h_pw("alice"), "x");
	refused(env, "username with #", "ali#ce", h_pw("alice"), "y");
	refused(env, "username with a leading $", "$alice", h_pw("alice"), "z");
	refused(env, "username with a space", "al ice", h_pw("alice"), "w");
	refused(env, "a 65-character username", longname, h_pw("alice"), "v");
	refused(env, "the service user with a user's password", H_SERVICE_USER, h_pw("alice"), H_SERVICE_USER);
}

static void foreign_client_id(h_env *env)
{
	/* Taking over another user's session by its client id is refused. */
	refused(env, "alice with client id bob", "alice", h_pw("alice"), "bob");
	refused(env, "alice with client id bob:phone", "alice", h_pw("alice"), "bob:phone");
	refused(env, "alice with the bridge's id", "alice", h_pw("alice"), H_SERVICE_USER);
	refused(env, "alice with the bridge's request id", "alice", h_pw("alice"), H_SERVICE_USER ":req");
}

/* The CONNACK code of a CONNECT with clean session (or not), or -1 without one. */
static int raw_connect(h_env *env, const char *user, const char *cid, bool clean)
{
	int reason = 0;
	h_client *c = NULL;
	if(clean && cid){
		c = h_connect(env, user, h_pw(user), cid, H_PROTO_V311, &reason);
		h_client_close(c);
		return c ? 0 : reason;
	}
	struct mosquitto *m = mosquitto_new(cid, clean, &reason); /* NULL cid: libmosquitto makes one up */
	reason = -1;
	mosquitto_username_pw_set(m, user, h_pw(user));
	mosquitto_connect_callback_set(m, on_connack_rc);
	if(mosquitto_connect(m, "127.0.0.1", env->port, 30) == MOSQ_ERR_SUCCESS){
		int64_t until = h_now_ms() + 3000;
		while(reason == -1 && h_now_ms() < until && mosquitto_loop(m, 50, 1) == MOSQ_ERR_SUCCESS){}
	}
	mosquitto_disconnect(m);
	mosquitto_destroy(m);
	return reason;
}

/* Any client id works (issue 10): MQTT.js's default "mqttjs_" + 8 hex digits, an app's
 * own "my-app-1234", a broker-made one; but never to take over, kick or read another
 * user's session. */
static void any_client_id_owned(h_env *env)
{
	int reason = 0;
	h_client *a = h_connect(env, "alice", h_pw("alice"), "mqttjs_1a2b3c4d", H_PROTO_V5, &reason);
	H_REQUIRE(a != NULL);
	accepted(env, "alice with an app's id", "alice", h_pw("alice"), "my-app-1234");
	accepted(env, "alice with an id made up of another's name", "alice", h_pw("alice"), "alicex");
	h_sleep_ms(1100); /* past the 20-a-second limit on refusal lines the cases before used */
	size_t mark = h_file_size(env->broker_log);
	/* held by alice: bob cannot have it, and alice is not kicked by his try */
	refused(env, "bob with alice's connected mqttjs_ id", "bob", h_pw("bob"), "mqttjs_1a2b3c4d");
	H_CHECK(h_log_wait(env->broker_log, mark, "is in use by another user right now", 1000));
	h_sleep_ms(200);
	H_CHECK(h_client_connected(a));
	h_client_close(a);
	/* and not after she left either, in this broker run */
	refused(env, "bob with alice's earlier id", "bob", h_pw("bob"), "mqttjs_1a2b3c4d");
	refused(env, "bob with alice's earlier app id", "bob", h_pw("bob"), "my-app-1234");
	H_CHECK(h_log_wait(env->broker_log, mark, "was taken by another user earlier", 1000));
	/* alice herself gets it back */
	accepted(env, "alice with her own earlier id", "alice", h_pw("alice"), "mqttjs_1a2b3c4d");
	/* a persistent session outside the user's namespace is refused (its owner could not be
	 * known after a restart); inside it, fine */
	H_CHECK_INT(raw_connect(env, "bob", "bobs-app", false), ==, 5);
	H_CHECK(h_log_wait(env->broker_log, mark, "a persistent session", 1000));
	H_CHECK_INT(raw_connect(env, "bob", "bob:persistent", false), ==, 0);
	H_CHECK_INT(raw_connect(env, "alice", "bob:persistent", true), ==, 5);
	H_CHECK_INT(raw_connect(env, "alice", "bob:persistent", false), ==, 5);
	/* no client id of its own: libmosquitto's random default */
	H_CHECK_INT(raw_connect(env, "bob", NULL, true), ==, 0);
}

static void disabled_user(h_env *env)
{
	/* Disabled after the broker started: refused within the reload interval. */
	accepted(env, "erin before being disabled", "erin", h_pw("erin"), "erin");
	H_REQUIRE_INT(h_admin(env, NULL, NULL, 0, "--db", env->db, "user", "disable", "erin", (char *)NULL), ==, 0);
	int64_t until = h_now_ms() + 5000;
	bool refused_now = false;
	while(h_now_ms() < until && !refused_now) {
		int reason;
		h_client *c = h_connect(env, "erin", h_pw("erin"), "erin", H_PROTO_V5, &reason);
		refused_now = c == NULL && reason > 0;
		if(!c && reason <= 0) break; /* no CONNACK at all: the broker is gone */
		h_client_close(c);
		if(!refused_now) h_sleep_ms(200);
	}
	if(!refused_now) h_fail(__FILE__, __LINE__, "erin, disabled with mqchat-admin, could still connect after 5 s");
	refused(env, "a disabled user", "erin", h_pw("erin"), "erin");
}

/* A password changed with mqchat-admin: the old one, cached by the plugin after a good
 * login, stops working within the reload interval; the new one works. */
static void changed_password(h_env *env)
{
	const char *newpw = "fresh-password-for-frank";
	accepted(env, "frank before the change (caches his credential)", "frank", h_pw("frank"), "frank");
	char input[128];
	snprintf(input, sizeof(input), "%s\n", newpw);
	H_REQUIRE_INT(h_admin(env, input, NULL, 0, "--db", env->db, "user", "passwd", "frank", "--iterations", "1000",
			(char *)NULL), ==, 0);
	int64_t until = h_now_ms() + 5000;
	bool refused_now = false;
	while(h_now_ms() < until && !refused_now) {
		int reason;
		h_client *c = h_connect(env, "frank", h_pw("frank"), "frank", H_PROTO_V5, &reason);
		refused_now = c == NULL && reason > 0;
		if(!c && reason <= 0) break;
		h_client_close(c);
		if(!refused_now) h_sleep_ms(200);
	}
	if(!refused_now) h_fail(__FILE__, __LINE__, "frank's old password still worked 5 s after the change");
	h_sleep_ms(1100); /* past the per-user backoff the wrong (old) password started */
	accepted(env, "frank with the new password", "frank", newpw, "frank");
	refused(env, "frank with the old password", "frank", h_pw("frank"), "frank");
}

int main(void)
{
	h_env *env = h_env_new("connect");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "erin");
	h_user(env, "frank");
	h_env_start(env);

	H_RUN(env, good_logins);
	H_RUN(env, bad_credentials);
	H_RUN(env, bad_usernames);
	H_RUN(env, foreign_client_id);
	H_RUN(env, any_client_id_owned);
	H_RUN(env, disabled_user);
	H_RUN(env, changed_password);
	return h_env_finish(env);
}
