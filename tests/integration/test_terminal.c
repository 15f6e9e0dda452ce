/*
 * The terminal client `mqchat` (cli/main.c, issue 10) against the real broker, plugin and
 * bridge: its subcommands as plain commands (lines and --json), credentials from the
 * environment or a config file and never from argv, errors in words with a non-zero exit,
 * --help on every subcommand; and the interactive `mqchat chat ROOM` driven in tmux
 * (send-keys, capture-pane): a line typed reaches bob, bob's answer is printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

static char room[65];

/* Runs `mqchat --port P ARGS` as alice (password in the environment) and captures stdout
 * (and stderr when err_too); returns the exit status. */
static int cli(h_env *env, const char *user, const char *pw, const char *args, char *out, size_t outlen, bool err_too)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "MQCHAT_USER='%s' MQCHAT_PASSWORD='%s' '%s' --port %d %s %s", user, pw,
			getenv("MQCHAT_CLI"), env->port, args, err_too ? "2>&1" : "2>/dev/null");
	FILE *p = popen(cmd, "r");
	if(!p) return -1;
	size_t n = fread(out, 1, outlen - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void plain_commands(h_env *env)
{
	char out[16384];
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	H_REQUIRE(bob != NULL);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), "rooms", out, sizeof(out), false), ==, 0);
	H_CHECK(strstr(out, room) != NULL);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), "send", out, sizeof(out), true), !=, 0); /* no args */
	char args[512];
	snprintf(args, sizeof(args), "send %s 'hi from the terminal'", room);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), args, out, sizeof(out), false), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room, "alice", "hi from the terminal"));
	snprintf(args, sizeof(args), "history %s --limit 5", room);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), args, out, sizeof(out), false), ==, 0);
	H_CHECK(strstr(out, "alice: hi from the terminal") != NULL);
	snprintf(args, sizeof(args), "--json history %s", room);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), args, out, sizeof(out), false), ==, 0);
	json_t *j = json_loads(out, 0, NULL);
	H_CHECK(j && json_is_array(json_object_get(j, "messages")));
	json_decref(j);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), "contacts", out, sizeof(out), false), ==, 0);
	H_CHECK(strstr(out, "bob") != NULL);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), "room create bob carol --name Team", out, sizeof(out), false), ==, 0);
	H_CHECK(out[0] == 'r' && strlen(out) >= 22);
	/* errors in words, non-zero */
	H_CHECK_INT(cli(env, "alice", "wrong-password", "rooms", out, sizeof(out), true), !=, 0);
	H_CHECK(strstr(out, "wrong user, password or token") != NULL);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), "send rNoSuchRoomAtAll00000 hi", out, sizeof(out), true), !=, 0);
	H_CHECK(strstr(out, "refused") != NULL);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), "history rNoSuchRoomAtAll00000", out, sizeof(out), true), !=, 0);
	H_CHECK(strstr(out, "not_found") != NULL);
	H_CHECK_INT(cli(env, "alice", h_pw("alice"), "--password x rooms", out, sizeof(out), true), !=, 0);
	H_CHECK(strstr(out, "never taken from the command line") != NULL);
	static const char *const subs[] = { "rooms", "contacts", "history", "send", "listen", "room", "chat", NULL };
	for(int i = 0; subs[i]; i++){
		snprintf(args, sizeof(args), "%s --help", subs[i]);
		if(cli(env, "alice", h_pw("alice"), args, out, sizeof(out), false) != 0 || !strstr(out, "usage: mqchat")){
			h_fail(__FILE__, __LINE__, "mqchat %s --help", subs[i]);
		}
	}
	h_client_close(bob);
}

static int tmux(const char *args, char *out, size_t outlen)
{
	char cmd[3 * H_PATH_MAX];
	snprintf(cmd, sizeof(cmd), "tmux %s 2>&1", args);
	FILE *p = popen(cmd, "r");
	if(!p) return -1;
	size_t n = out ? fread(out, 1, outlen - 1, p) : 0;
	if(out) out[n] = '\0';
	return pclose(p);
}

static bool pane_shows(const char *session, const char *needle, int ms)
{
	char args[256], out[16384];
	snprintf(args, sizeof(args), "capture-pane -p -t %s", session);
	for(int64_t until = h_now_ms() + ms; h_now_ms() < until; h_sleep_ms(100)){
		if(tmux(args, out, sizeof(out)) == 0 && strstr(out, needle)) return true;
	}
	return false;
}

static void interactive_chat_in_tmux(h_env *env)
{
	char conf[H_PATH_MAX + 32], session[64], args[2 * H_PATH_MAX + 256];
	/* the secret in a config file (0600), not in the command tmux shows */
	snprintf(conf, sizeof(conf), "%s/mqchat.conf", env->dir);
	FILE *f = fopen(conf, "w");
	H_REQUIRE(f != NULL);
	fprintf(f, "# mqchat config\nuser = alice\npassword = %s\nport = %d\n", h_pw("alice"), env->port);
	fclose(f);
	snprintf(session, sizeof(session), "mqchat-test-%d", (int)getpid());
	snprintf(args, sizeof(args), "new-session -d -s %s -x 140 -y 40 \"'%s' --config '%s' chat %s\"", session,
			getenv("MQCHAT_CLI"), conf, room);
	H_REQUIRE_INT(tmux(args, NULL, 0), ==, 0);
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	H_REQUIRE(bob != NULL);
	H_CHECK(pane_shows(session, "-- in ", 10000));
	H_CHECK(pane_shows(session, "alice: hi from the terminal", 1000)); /* the history it printed first */
	snprintf(args, sizeof(args), "send-keys -t %s 'hello from tmux' Enter", session);
	H_CHECK_INT(tmux(args, NULL, 0), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room, "alice", "hello from tmux"));
	char topic[256];
	h_topic_send(topic, room);
	H_CHECK_INT(h_publish_str(bob, topic, "{\"type\":\"msg\",\"body\":\"hello back from bob\"}", 1), ==, 0);
	H_CHECK(pane_shows(session, "bob: hello back from bob", 10000));
	snprintf(args, sizeof(args), "send-keys -t %s C-d", session);
	tmux(args, NULL, 0);
	h_sleep_ms(300);
	snprintf(args, sizeof(args), "kill-session -t %s", session);
	tmux(args, NULL, 0);
	h_client_close(bob);
}

int main(void)
{
	h_env *env = h_env_new("terminal");
	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(!getenv("MQCHAT_CLI") || h_room_create(env, room, "alice", "bob", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_start(env);
	H_RUN(env, plain_commands);
	H_RUN(env, interactive_chat_in_tmux);
	return h_env_finish(env);
}
