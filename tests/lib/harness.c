/*
 * The integration test harness (see harness.h for the contract).
 *
 * Processes: mosquitto and mqchat-bridge are fork/exec'd children with PR_SET_PDEATHSIG,
 * so a test killed by CTest's timeout does not leave them behind. Their stdout and stderr
 * go (appended, across restarts) to broker.log / bridge.log in the temp dir.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

int h_failures;

#define H_ACKS 64

struct h_ack {
	int mid;
	int rc;      /* PUBACK reason code, or SUBACK first granted value */
	bool used;
};

struct h_client {
	h_env *env;
	struct mosquitto *mosq;
	char id[256];
	int protocol;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	h_msg *head, *tail;
	bool connack_seen;
	int connack_rc;
	bool connected;
	bool disconnected;      /* the connection went down after (or instead of) the CONNACK */
	struct h_ack acks[H_ACKS];
	unsigned ack_next;
	h_client *next;         /* env->clients list */
};

/* ------------------------------------------------------------ failures */

void h_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	h_failures++;
	fprintf(stderr, "%s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

void h_run_case(const char *name, void (*fn)(h_env *), h_env *env)
{
	int before = h_failures;
	int64_t t0 = h_now_ms();

	fprintf(stderr, "--- case %s\n", name);
	fn(env);
	fprintf(stderr, "--- case %s: %s (%lld ms)\n", name, h_failures == before ? "ok" : "FAILED",
			(long long)(h_now_ms() - t0));
}

/* ------------------------------------------------------------ helpers */

int64_t h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while(nanosleep(&ts, &ts) == -1 && errno == EINTR) {
	}
}

void h_topic_send(char *out, const char *room)
{
	snprintf(out, 256, "chat/rooms/%s/send", room);
}

void h_topic_messages(char *out, const char *room)
{
	snprintf(out, 256, "chat/rooms/%s/messages", room);
}

static void abstime_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if(ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	size_t len = strlen(text), off = 0;

	if(fd < 0) {
		fprintf(stderr, "harness: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	while(off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if(n < 0) {
			if(errno == EINTR) continue;
			fprintf(stderr, "harness: cannot write %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	close(fd);
	return 0;
}

/* Reads a whole file (NUL-terminated) from offset; NULL if it cannot be read. */
static char *read_file_from(const char *path, size_t offset, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, len = 0;

	if(!f) return NULL;
	if(offset && fseek(f, (long)offset, SEEK_SET) != 0) {
		fclose(f);
		return NULL;
	}
	for(;;) {
		if(cap - len < 4097) {
			char *nb = realloc(buf, cap ? cap * 2 : 8192);
			if(!nb) break;
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		if(n == 0) break;
		len += n;
	}
	fclose(f);
	if(buf) buf[len] = '\0';
	if(lenp) *lenp = len;
	return buf;
}

static size_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

size_t h_file_size(const char *path)
{
	return file_size(path);
}

char *h_file_read_from(const char *path, size_t offset)
{
	if(offset > file_size(path)) offset = 0; /* the file started over */
	return read_file_from(path, offset, NULL);
}

bool h_log_wait(const char *path, size_t offset, const char *needle, int timeout_ms)
{
	int64_t until = h_now_ms() + timeout_ms;
	for(;;) {
		char *s = h_file_read_from(path, offset);
		bool found = s && strstr(s, needle);
		free(s);
		if(found) return true;
		if(h_now_ms() >= until) return false;
		h_sleep_ms(20);
	}
}

bool h_log_contains(const char *path, const char *needle)
{
	return h_log_wait(path, 0, needle, 0);
}

static void random_hex(char *out, size_t nbytes)
{
	unsigned char b[64];
	int fd = open("/dev/urandom", O_RDONLY);
	ssize_t got = fd >= 0 ? read(fd, b, nbytes) : -1;

	if(fd >= 0) close(fd);
	if(got != (ssize_t)nbytes) {
		/* Only uniqueness matters for a test secret; fall back to time and pid. */
		for(size_t i = 0; i < nbytes; i++) b[i] = (unsigned char)(rand() ^ getpid() ^ (int)i);
	}
	for(size_t i = 0; i < nbytes; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

json_t *h_run_json(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	if(!p) return NULL;
	char line[16384] = "", last[16384] = "";
	while(fgets(line, sizeof(line), p)) memcpy(last, line, sizeof(last));
	int st = pclose(p);
	if(st != 0) fprintf(stderr, "harness: '%.200s' exited with status %d\n", cmd, st);
	fprintf(stderr, "  %s", last);
	return json_loads(last, 0, NULL);
}

static int free_port(void);
int h_free_port(void)
{
	return free_port();
}

static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if(fd < 0) return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0
			&& getsockname(fd, (struct sockaddr *)&sa, &sl) == 0) {
		port = ntohs(sa.sin_port);
	}
	close(fd);
	return port;
}

static bool port_accepts(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	if(fd < 0) return false;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static const char *need_env(const char *name)
{
	const char *v = getenv(name);

	if(!v || !*v) {
		fprintf(stderr, "harness: $%s is not set; run the tests through ctest\n", name);
		exit(1);
	}
	return v;
}

/* ------------------------------------------------------------ processes */

/* Starts argv[0] with stdout+stderr appended to logpath and stdin from /dev/null.
 * preload: add LD_PRELOAD and ASAN_OPTIONS=detect_leaks=0 (the uninstrumented broker
 * loading an instrumented plugin). Returns the pid or -1. */
static pid_t spawn(char *const argv[], const char *logpath, bool preload)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if(pid < 0) {
		fprintf(stderr, "harness: fork for %s failed: %s\n", argv[0], strerror(errno));
		return -1;
	}
	if(pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDONLY);
		if(fd < 0 || nul < 0) _exit(126);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if(getppid() != parent) _exit(125);
		if(preload) {
			const char *lib = getenv("MQCHAT_ASAN_PRELOAD");
			if(lib && *lib) {
				setenv("LD_PRELOAD", lib, 1);
				setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
			}
		}
		execv(argv[0], argv);
		dprintf(2, "harness: exec %s failed: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* Waits up to timeout_ms for pid to exit. Returns its wait status, or -1 if it did not. */
static int wait_exit(pid_t pid, int timeout_ms)
{
	int64_t until = mono_ms() + timeout_ms;
	int status;

	for(;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if(r == pid) return status;
		if(r < 0 && errno != EINTR) return -1;
		if(mono_ms() >= until) return -1;
		h_sleep_ms(20);
	}
}

static bool still_running(pid_t pid, int *status)
{
	return waitpid(pid, status, WNOHANG) == 0;
}

static void describe_status(const char *what, int status)
{
	if(WIFEXITED(status)) {
		fprintf(stderr, "harness: %s exited with status %d\n", what, WEXITSTATUS(status));
	} else if(WIFSIGNALED(status)) {
		fprintf(stderr, "harness: %s died of signal %d\n", what, WTERMSIG(status));
	}
}

/* SIGTERM, wait 10 s, then SIGKILL. Returns 0 if it exited with status 0. */
static int stop_child(pid_t *pidp, const char *what)
{
	int status;

	if(*pidp <= 0) return 0;
	kill(*pidp, SIGTERM);
	status = wait_exit(*pidp, 10000);
	if(status == -1) {
		fprintf(stderr, "harness: %s (pid %d) ignored SIGTERM for 10 s; killing it\n", what, (int)*pidp);
		kill(*pidp, SIGKILL);
		waitpid(*pidp, &status, 0);
		*pidp = 0;
		return -1;
	}
	*pidp = 0;
	if(WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
	describe_status(what, status);
	return -1;
}

static int kill9_child(pid_t *pidp)
{
	int status;

	if(*pidp <= 0) return -1;
	kill(*pidp, SIGKILL);
	waitpid(*pidp, &status, 0);
	*pidp = 0;
	return 0;
}

/* Runs argv to completion; stdin_data to its stdin, stdout+stderr captured into out. */
static int run_capture(char *const argv[], const char *stdin_data, char *out, size_t outlen)
{
	int in[2], op[2], status;
	size_t used = 0;
	pid_t pid;

	if(pipe(in) < 0) return -1;
	if(pipe(op) < 0) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	pid = fork();
	if(pid < 0) {
		close(in[0]); close(in[1]); close(op[0]); close(op[1]);
		return -1;
	}
	if(pid == 0) {
		/* (a pipe end may already be 0, 1 or 2 if the test had one of those closed) */
		dup2(in[0], 0);
		dup2(op[1], 1);
		dup2(op[1], 2);
		if(in[0] > 2) close(in[0]);
		if(in[1] > 2) close(in[1]);
		if(op[0] > 2) close(op[0]);
		if(op[1] > 2) close(op[1]);
		execv(argv[0], argv);
		dprintf(2, "harness: exec %s failed: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(op[1]);
	if(stdin_data) {
		size_t len = strlen(stdin_data), off = 0;
		signal(SIGPIPE, SIG_IGN);
		while(off < len) {
			ssize_t n = write(in[1], stdin_data + off, len - off);
			if(n <= 0) break;
			off += (size_t)n;
		}
	}
	close(in[1]);
	for(;;) {
		char tmp[4096];
		ssize_t n = read(op[0], tmp, sizeof(tmp));
		if(n < 0 && errno == EINTR) continue;
		if(n <= 0) break;
		if(out && used + 1 < outlen) {
			size_t k = (size_t)n < outlen - 1 - used ? (size_t)n : outlen - 1 - used;
			memcpy(out + used, tmp, k);
			used += k;
		}
	}
	if(out && outlen) out[used] = '\0';
	close(op[0]);
	while(waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ------------------------------------------------------------ the environment */

static int write_conf(h_env *env)
{
	char buf[8 * H_PATH_MAX];
	/* Started as root, mosquitto switches to the user named here (default "mosquitto",
	 * which cannot read our 0700 temp dir): keep it as whoever runs the tests. */
	struct passwd *pw = getpwuid(getuid());
	const char *me = pw && pw->pw_name ? pw->pw_name : "root";

	snprintf(buf, sizeof(buf),
			"# generated by tests/lib/harness.c\n"
			"user %s\n"
			"listener %d 127.0.0.1\n"
			"allow_anonymous false\n"
			"per_listener_settings false\n"
			/* as mosquitto.conf.example: a small per-session queue (the bridge needs
			 * none: the plugin keeps what it has not confirmed) */
			"max_queued_messages 1000\n"
			"max_queued_bytes 16777216\n"
			"set_tcp_nodelay true\n"
			"persistence_location %s/\n"
			"log_dest stderr\n"
			"log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
			"log_timestamp_format %%H:%%M:%%S\n"
			"plugin %s\n"
			"plugin_opt_db_path %s\n"
			"plugin_opt_service_user %s\n"
			"plugin_opt_service_password %s\n"
			"%s%s%s",
			me, env->port, env->dir, env->plugin, env->db, H_SERVICE_USER, env->service_password, env->extra_opts,
			strstr(env->broker_extra, "persistence true") ? "" : "persistence false\n", env->broker_extra);
	return write_file(env->conf, buf, 0600);
}

void h_env_plugin_opt(h_env *env, const char *key, const char *value)
{
	size_t used = strlen(env->extra_opts);

	snprintf(env->extra_opts + used, sizeof(env->extra_opts) - used, "plugin_opt_%s %s\n", key, value);
}

void h_env_no_limits(h_env *env)
{
	h_env_plugin_opt(env, "send_rate", "0");
	h_env_plugin_opt(env, "send_bytes_rate", "0");
	h_env_plugin_opt(env, "request_rate", "0");
}

void h_env_broker_conf(h_env *env, const char *line)
{
	size_t used = strlen(env->broker_extra);

	snprintf(env->broker_extra + used, sizeof(env->broker_extra) - used, "%s\n", line);
}

void h_env_bridge_arg(h_env *env, const char *flag, const char *value)
{
	for(int i = 0; i + 1 < 8; i += 2) {
		if(env->bridge_args[i][0]) continue;
		snprintf(env->bridge_args[i], sizeof(env->bridge_args[i]), "%s", flag);
		snprintf(env->bridge_args[i + 1], sizeof(env->bridge_args[i + 1]), "%s", value);
		return;
	}
	h_fail(__FILE__, __LINE__, "h_env_bridge_arg: at most four flags");
}

h_env *h_env_new(const char *test_name)
{
	h_env *env = calloc(1, sizeof(*env));
	const char *tmp = getenv("TMPDIR");
	char pw[80];

	if(!env) exit(1);
	signal(SIGPIPE, SIG_IGN);
	mosquitto_lib_init();
	env->admin = need_env("MQCHAT_ADMIN");
	env->plugin = need_env("MQCHAT_PLUGIN");
	env->bridge = need_env("MQCHAT_BRIDGE");

	snprintf(env->dir, sizeof(env->dir), "%s/mqchat-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", test_name);
	if(!mkdtemp(env->dir)) {
		fprintf(stderr, "harness: mkdtemp %s: %s\n", env->dir, strerror(errno));
		exit(1);
	}
	snprintf(env->db, sizeof(env->db), "%s/chat.db", env->dir);
	snprintf(env->conf, sizeof(env->conf), "%s/mosquitto.conf", env->dir);
	snprintf(env->broker_log, sizeof(env->broker_log), "%s/broker.log", env->dir);
	snprintf(env->bridge_log, sizeof(env->bridge_log), "%s/bridge.log", env->dir);
	snprintf(env->bridge_pwfile, sizeof(env->bridge_pwfile), "%s/service.pw", env->dir);
	random_hex(env->service_password, 16);
	snprintf(pw, sizeof(pw), "%s\n", env->service_password);

	env->port = free_port();
	if(env->port <= 0) {
		fprintf(stderr, "harness: no free loopback port\n");
		goto fail;
	}
	if(write_file(env->bridge_pwfile, pw, 0600)) goto fail;
	if(h_admin(env, NULL, NULL, 0, "--db", env->db, "init", (char *)NULL) != 0) {
		fprintf(stderr, "harness: mqchat-admin init failed for %s\n", env->db);
		goto fail;
	}
	fprintf(stderr, "harness: %s in %s, port %d\n", test_name, env->dir, env->port);
	return env;
fail:
	fprintf(stderr, "harness: setup failed; keeping %s\n", env->dir);
	exit(1);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

void h_dump_logs(const h_env *env)
{
	const char *paths[2] = { env->broker_log, env->bridge_log };

	for(int i = 0; i < 2; i++) {
		size_t len = 0;
		char *text = read_file_from(paths[i], 0, &len);
		fprintf(stderr, "===== %s (%zu bytes)\n", paths[i], len);
		if(text) {
			/* The tail is what matters; cap the output at 64 KiB. */
			const char *start = len > 65536 ? text + len - 65536 : text;
			fputs(start, stderr);
		}
		fprintf(stderr, "===== end of %s\n", paths[i]);
		free(text);
	}
}

int h_env_finish(h_env *env)
{
	while(env->clients) h_client_close(env->clients);
	if(h_bridge_stop(env)) h_fail(__FILE__, __LINE__, "the bridge did not exit cleanly on SIGTERM");
	if(h_broker_stop(env)) h_fail(__FILE__, __LINE__, "mosquitto did not exit cleanly on SIGTERM");
	mosquitto_lib_cleanup();
	if(h_failures) {
		h_dump_logs(env);
		fprintf(stderr, "FAILED: %d check(s); kept %s\n", h_failures, env->dir);
		free(env);
		return 1;
	}
	nftw(env->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	fprintf(stderr, "PASSED\n");
	free(env);
	return 0;
}

int h_admin(h_env *env, const char *stdin_data, char *out, size_t outlen, ...)
{
	char *argv[32];
	char buf[16384];
	int argc = 0, rc;
	va_list ap;

	argv[argc++] = (char *)env->admin;
	va_start(ap, outlen);
	for(const char *a; argc < 31 && (a = va_arg(ap, const char *)) != NULL;) argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	rc = run_capture(argv, stdin_data, buf, sizeof(buf));
	if(rc != 0) {
		fprintf(stderr, "harness: mqchat-admin");
		for(int i = 1; i < argc; i++) fprintf(stderr, " %s", argv[i]);
		fprintf(stderr, " -> exit %d:\n%s\n", rc, buf);
	}
	if(out && outlen) snprintf(out, outlen, "%s", buf);
	return rc;
}

int h_user_add(h_env *env, const char *name, const char *password)
{
	char pw[512];

	snprintf(pw, sizeof(pw), "%s\n", password);
	return h_admin(env, pw, NULL, 0, "--db", env->db, "user", "add", name, "--iterations", "1000",
			(char *)NULL) == 0 ? 0 : -1;
}

const char *h_pw(const char *name)
{
	static char bufs[8][128];
	static unsigned next;
	char *b = bufs[next++ % 8];

	snprintf(b, 128, "pw-%s-s3cret", name);
	return b;
}

void h_user(h_env *env, const char *name)
{
	if(h_user_add(env, name, h_pw(name)) == 0) return;
	fprintf(stderr, "harness: cannot add user %s; keeping %s\n", name, env->dir);
	exit(1);
}

h_client *h_login(h_env *env, const char *name, int protocol)
{
	static unsigned n;
	char cid[128];
	int reason;
	h_client *c;

	snprintf(cid, sizeof(cid), "%s:%u", name, ++n);
	/* A right password can still be turned away for a moment: the plugin spends at most
	 * its hash budget on password checks and closes the rest without a CONNACK ("try
	 * again later", docs/logging-in.md), as real clients retry when many log in at once.
	 * Up to 5 s of retries on that; a CONNACK refusal (wrong setup) fails at once. */
	for(int attempt = 0; attempt < 50; attempt++) {
		c = h_connect(env, name, h_pw(name), cid, protocol, &reason);
		if(c || reason != -1) break;
		h_sleep_ms(100);
	}
	if(!c) fprintf(stderr, "harness: %s (client id %s) could not connect: CONNACK %d\n", name, cid, reason);
	return c;
}

/* A room id in the admin tool's output: the last token of 22 characters "r" + base62. */
static bool find_room_id(const char *text, char *id)
{
	bool found = false;
	const char *p = text;

	while(*p) {
		size_t n = 0;
		while(p[n] && (p[n] == '_' || p[n] == '-' || p[n] == '.' || (p[n] >= '0' && p[n] <= '9')
				|| (p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z'))) n++;
		if(n == 22 && p[0] == 'r') {
			memcpy(id, p, n);
			id[n] = '\0';
			found = true;
		}
		p += n ? n : 1;
	}
	return found;
}

h_client *h_room_listener(h_env *env, const char *name, const char *room, int protocol)
{
	char topic[256];
	h_client *c = h_login(env, name, protocol);

	if(!c) return NULL;
	h_topic_messages(topic, room);
	if(h_subscribe(c, topic, 1) != 1) {
		fprintf(stderr, "harness: %s could not subscribe to %s\n", name, topic);
		return NULL; /* the env closes c */
	}
	return c;
}

int h_room_create(h_env *env, char *id, ...)
{
	char *argv[40];
	char out[4096];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)env->admin;
	argv[argc++] = "--db";
	argv[argc++] = env->db;
	argv[argc++] = "room";
	argv[argc++] = "create";
	va_start(ap, id);
	for(const char *a; argc < 39 && (a = va_arg(ap, const char *)) != NULL;) argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	if(run_capture(argv, NULL, out, sizeof(out)) != 0 || !find_room_id(out, id)) {
		fprintf(stderr, "harness: mqchat-admin room create failed or printed no room id:\n%s\n", out);
		return -1;
	}
	return 0;
}

int h_broker_start(h_env *env)
{
	char *argv[] = { "/usr/sbin/mosquitto", "-c", env->conf, NULL };
	const char *bin = getenv("MQCHAT_MOSQUITTO");
	int64_t until;
	int status;

	if(bin && *bin) argv[0] = (char *)bin;
	else if(access(argv[0], X_OK) != 0) argv[0] = "/usr/bin/mosquitto";
	if(env->broker_pid > 0) return 0;
	if(write_conf(env)) return -1;
	env->broker_pid = spawn(argv, env->broker_log, true);
	if(env->broker_pid < 0) {
		env->broker_pid = 0;
		return -1;
	}
	until = mono_ms() + 20000;
	while(mono_ms() < until) {
		if(!still_running(env->broker_pid, &status)) {
			describe_status("mosquitto", status);
			fprintf(stderr, "harness: mosquitto exited during start-up (see %s)\n", env->broker_log);
			env->broker_pid = 0;
			return -1;
		}
		if(port_accepts(env->port)) return 0;
		h_sleep_ms(25);
	}
	fprintf(stderr, "harness: mosquitto did not accept on port %d within 20 s\n", env->port);
	return -1;
}

int h_broker_stop(h_env *env)
{
	return stop_child(&env->broker_pid, "mosquitto");
}

int h_broker_kill9(h_env *env)
{
	return kill9_child(&env->broker_pid);
}

int h_broker_restart(h_env *env)
{
	int rc = h_broker_stop(env);

	return h_broker_start(env) || rc ? -1 : 0;
}

int h_bridge_start(h_env *env)
{
	char port[16];
	char *argv[24] = { (char *)env->bridge, "--host", "127.0.0.1", "--port", port, "--db", env->db,
		"--user", H_SERVICE_USER, "--password-file", env->bridge_pwfile, NULL };
	int64_t until;
	int status;
	int argc = 11;

	for(int i = 0; i < 8 && env->bridge_args[i][0]; i++) argv[argc++] = env->bridge_args[i];
	argv[argc] = NULL;

	if(env->bridge_pid > 0) return 0;
	snprintf(port, sizeof(port), "%d", env->port);
	env->bridge_log_mark = file_size(env->bridge_log);
	env->bridge_pid = spawn(argv, env->bridge_log, false);
	if(env->bridge_pid < 0) {
		env->bridge_pid = 0;
		return -1;
	}
	until = mono_ms() + 20000;
	while(mono_ms() < until) {
		char *text = read_file_from(env->bridge_log, env->bridge_log_mark, NULL);
		bool ready = text && strstr(text, "bridge: ready");
		free(text);
		if(ready) return 0;
		if(!still_running(env->bridge_pid, &status)) {
			describe_status("mqchat-bridge", status);
			fprintf(stderr, "harness: mqchat-bridge exited during start-up (see %s)\n", env->bridge_log);
			env->bridge_pid = 0;
			return -1;
		}
		h_sleep_ms(25);
	}
	fprintf(stderr, "harness: mqchat-bridge did not log \"bridge: ready\" within 20 s\n");
	return -1;
}

int h_bridge_stop(h_env *env)
{
	return stop_child(&env->bridge_pid, "mqchat-bridge");
}

int h_bridge_kill9(h_env *env)
{
	return kill9_child(&env->bridge_pid);
}

int h_bridge_restart(h_env *env)
{
	int rc = h_bridge_stop(env);

	return h_bridge_start(env) || rc ? -1 : 0;
}

void h_env_start(h_env *env)
{
	if(h_broker_start(env) == 0 && h_bridge_start(env) == 0) return;
	h_failures++;
	h_env_finish(env);
	exit(1);
}

/* ------------------------------------------------------------ the database */

/* Prepares sql on a fresh connection (read-only unless rw) and binds the va_list text parameters. */
static sqlite3_stmt *db_prepare_mode(h_env *env, sqlite3 **dbp, const char *sql, va_list ap, bool rw)
{
	sqlite3_stmt *st = NULL;
	int i = 1;

	*dbp = NULL;
	if(sqlite3_open_v2(env->db, dbp, rw ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: open %s read-only: %s\n", env->db, sqlite3_errmsg(*dbp));
		goto fail;
	}
	sqlite3_busy_timeout(*dbp, 5000);
	if(sqlite3_prepare_v2(*dbp, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: prepare \"%s\": %s\n", sql, sqlite3_errmsg(*dbp));
		goto fail;
	}
	for(const char *a; (a = va_arg(ap, const char *)) != NULL; i++) {
		sqlite3_bind_text(st, i, a, -1, SQLITE_TRANSIENT);
	}
	return st;
fail:
	sqlite3_finalize(st);
	sqlite3_close(*dbp);
	*dbp = NULL;
	return NULL;
}

static sqlite3_stmt *db_prepare(h_env *env, sqlite3 **dbp, const char *sql, va_list ap)
{
	return db_prepare_mode(env, dbp, sql, ap, false);
}

static long long db_int_va(h_env *env, const char *sql, va_list ap)
{
	sqlite3 *db;
	sqlite3_stmt *st = db_prepare(env, &db, sql, ap);
	long long v = -1;
	int rc;

	if(!st) return -1;
	rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) {
		v = sqlite3_column_int64(st, 0);
	} else {
		fprintf(stderr, "harness: \"%s\" returned no row (%s)\n", sql, sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

int h_db_exec(h_env *env, const char *sql, ...)
{
	va_list ap;
	sqlite3 *db;
	va_start(ap, sql);
	sqlite3_stmt *st = db_prepare_mode(env, &db, sql, ap, true);
	va_end(ap);
	if(!st) return -1;
	int rc = sqlite3_step(st);
	if(rc != SQLITE_DONE) fprintf(stderr, "harness: \"%s\" failed: %s\n", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc == SQLITE_DONE ? 0 : -1;
}

void *h_db_lock(h_env *env)
{
	sqlite3 *db = NULL;
	if(sqlite3_open_v2(env->db, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: opening %s to lock it: %s\n", env->db, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 10000);
	if(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: BEGIN IMMEDIATE on %s: %s\n", env->db, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

void h_db_unlock(void *lock)
{
	if(!lock) return;
	sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(lock);
}

bool h_sanitized(void)
{
	return getenv("MQCHAT_ASAN_PRELOAD") != NULL;
}

long h_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if(!f) return -1;
	while(fgets(line, sizeof(line), f)) {
		if(!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
	}
	fclose(f);
	return kb;
}

long long h_db_int(h_env *env, const char *sql, ...)
{
	va_list ap;
	long long v;

	va_start(ap, sql);
	v = db_int_va(env, sql, ap);
	va_end(ap);
	return v;
}

long long h_db_wait_int(h_env *env, long long want, int timeout_ms, const char *sql, ...)
{
	int64_t until = mono_ms() + timeout_ms;
	long long v;

	for(;;) {
		va_list ap;
		va_start(ap, sql);
		v = db_int_va(env, sql, ap);
		va_end(ap);
		if(v == want || mono_ms() >= until) return v;
		h_sleep_ms(50);
	}
}

int h_db_text(h_env *env, char *out, size_t outlen, const char *sql, ...)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	va_list ap;
	int rc, ret = -1;

	va_start(ap, sql);
	st = db_prepare(env, &db, sql, ap);
	va_end(ap);
	if(!st) return -1;
	rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(out, outlen, "%s", t ? (const char *)t : "");
		ret = 0;
	} else if(rc == SQLITE_DONE) {
		ret = 1;
	} else {
		fprintf(stderr, "harness: \"%s\": %s\n", sql, sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ret;
}

/* ------------------------------------------------------------ clients */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	h_client *c = obj;

	(void)flags; (void)props;
	pthread_mutex_lock(&c->mu);
	c->connack_seen = true;
	c->connack_rc = rc;
	c->connected = rc == 0;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	/* A refused client must not reconnect: make the network loop end. */
	if(rc != 0) mosquitto_disconnect(mosq);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
	h_client *c = obj;

	(void)mosq; (void)rc; (void)props;
	pthread_mutex_lock(&c->mu);
	c->connected = false;
	c->disconnected = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void record_ack(h_client *c, int mid, int rc)
{
	pthread_mutex_lock(&c->mu);
	c->acks[c->ack_next % H_ACKS] = (struct h_ack){ .mid = mid, .rc = rc, .used = true };
	c->ack_next++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason, const mosquitto_property *props)
{
	(void)mosq; (void)props;
	record_ack(obj, mid, reason);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted,
		const mosquitto_property *props)
{
	(void)mosq; (void)props;
	record_ack(obj, mid, qos_count > 0 ? granted[0] : -1);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	h_client *c = obj;
	h_msg *m = calloc(1, sizeof(*m));

	(void)mosq; (void)props;
	if(!m) return;
	m->topic = strdup(msg->topic);
	m->payload = malloc((size_t)msg->payloadlen + 1);
	if(!m->topic || !m->payload) {
		h_msg_free(m);
		return;
	}
	if(msg->payloadlen) memcpy(m->payload, msg->payload, (size_t)msg->payloadlen);
	m->payload[msg->payloadlen] = '\0';
	m->len = msg->payloadlen;
	m->qos = msg->qos;
	m->retain = msg->retain;
	pthread_mutex_lock(&c->mu);
	if(c->tail) c->tail->next = m;
	else c->head = m;
	c->tail = m;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void client_free(h_client *c)
{
	h_msg *m = c->head;

	while(m) {
		h_msg *n = m->next;
		h_msg_free(m);
		m = n;
	}
	if(c->mosq) mosquitto_destroy(c->mosq);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

h_client *h_connect(h_env *env, const char *user, const char *password, const char *client_id,
		int protocol, int *reason)
{
	h_client *c = calloc(1, sizeof(*c));
	struct timespec ts;
	int rc, dummy;

	if(!reason) reason = &dummy;
	*reason = -1;
	if(!c) return NULL;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->env = env;
	c->protocol = protocol;
	snprintf(c->id, sizeof(c->id), "%s", client_id ? client_id : user ? user : "h-anon");
	c->mosq = mosquitto_new(c->id, true, c);
	if(!c->mosq) goto fail;
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION,
			protocol == H_PROTO_V5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
	/* as real clients do (MQTT.js, paho): no Nagle delay on small packets */
	mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if(user && mosquitto_username_pw_set(c->mosq, user, password)) goto fail;
	mosquitto_connect_v5_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(c->mosq, on_publish);
	mosquitto_subscribe_v5_callback_set(c->mosq, on_subscribe);
	mosquitto_message_v5_callback_set(c->mosq, on_message);
	rc = mosquitto_connect_bind_v5(c->mosq, "127.0.0.1", env->port, 30, NULL, NULL);
	if(rc) {
		fprintf(stderr, "harness: connect %s to port %d: %s\n", c->id, env->port, mosquitto_strerror(rc));
		goto fail;
	}
	if(mosquitto_loop_start(c->mosq)) goto fail;
	abstime_in(&ts, 10000);
	pthread_mutex_lock(&c->mu);
	while(!c->connack_seen && !c->disconnected) {
		if(pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
	}
	if(c->connack_seen) *reason = c->connack_rc;
	rc = c->connack_seen && c->connack_rc == 0;
	pthread_mutex_unlock(&c->mu);
	if(!rc) {
		mosquitto_disconnect(c->mosq);
		mosquitto_loop_stop(c->mosq, false);
		goto fail;
	}
	*reason = 0;
	c->next = env->clients;
	env->clients = c;
	return c;
fail:
	client_free(c);
	return NULL;
}

void h_client_close(h_client *c)
{
	h_client **pp;

	if(!c) return;
	for(pp = &c->env->clients; *pp; pp = &(*pp)->next) {
		if(*pp == c) {
			*pp = c->next;
			break;
		}
	}
	mosquitto_disconnect(c->mosq);
	mosquitto_loop_stop(c->mosq, false);
	client_free(c);
}

bool h_client_connected(h_client *c)
{
	bool up;

	pthread_mutex_lock(&c->mu);
	up = c->connected;
	pthread_mutex_unlock(&c->mu);
	return up;
}

/* Waits for the ack of mid. Returns its code, -2 if the connection dropped first, -1 on timeout. */
static int wait_ack(h_client *c, int mid, int timeout_ms)
{
	struct timespec ts;
	int ret = -1;

	abstime_in(&ts, timeout_ms);
	pthread_mutex_lock(&c->mu);
	for(;;) {
		bool found = false;
		for(int i = 0; i < H_ACKS; i++) {
			if(c->acks[i].used && c->acks[i].mid == mid) {
				ret = c->acks[i].rc;
				c->acks[i].used = false;
				found = true;
				break;
			}
		}
		if(found) break;
		if(!c->connected) {
			ret = -2;
			break;
		}
		if(pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

int h_subscribe(h_client *c, const char *filter, int qos)
{
	int mid = 0, rc;

	rc = mosquitto_subscribe_v5(c->mosq, &mid, filter, qos, 0, NULL);
	if(rc) {
		fprintf(stderr, "harness: subscribe %s as %s: %s\n", filter, c->id, mosquitto_strerror(rc));
		return -1;
	}
	return wait_ack(c, mid, 10000);
}

int h_publish(h_client *c, const char *topic, const void *payload, int len, int qos, bool retain,
		const mosquitto_property *props)
{
	int mid = 0, rc;

	rc = mosquitto_publish_v5(c->mosq, &mid, topic, len, payload, qos, retain,
			c->protocol == H_PROTO_V5 ? props : NULL);
	if(rc) {
		fprintf(stderr, "harness: publish %s as %s: %s\n", topic, c->id, mosquitto_strerror(rc));
		return -1;
	}
	if(qos == 0) return 0;
	rc = wait_ack(c, mid, 10000);
	/* Success codes below 0x80 (e.g. 0x10 "no matching subscribers", which every send
	 * gets: nobody subscribes to a send topic) all mean accepted. */
	return rc >= 0 && rc < 0x80 ? 0 : rc;
}

int h_publish_raw_rc(h_client *c, const char *topic, const char *payload)
{
	int mid = 0, rc;

	rc = mosquitto_publish_v5(c->mosq, &mid, topic, (int)strlen(payload), payload, 1, false, NULL);
	if(rc) {
		fprintf(stderr, "harness: publish %s as %s: %s\n", topic, c->id, mosquitto_strerror(rc));
		return -1;
	}
	return wait_ack(c, mid, 10000);
}

int h_publish_str(h_client *c, const char *topic, const char *payload, int qos)
{
	return h_publish(c, topic, payload, (int)strlen(payload), qos, false, NULL);
}

h_msg *h_wait_message(h_client *c, int timeout_ms)
{
	struct timespec ts;
	h_msg *m;

	abstime_in(&ts, timeout_ms);
	pthread_mutex_lock(&c->mu);
	while(!c->head) {
		if(pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
	}
	m = c->head;
	if(m) {
		c->head = m->next;
		if(!c->head) c->tail = NULL;
		m->next = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	return m;
}

json_t *h_wait_json(h_client *c, int timeout_ms, char *topic_out)
{
	h_msg *m = h_wait_message(c, timeout_ms);
	json_error_t err;
	json_t *j;

	if(!m) return NULL;
	if(topic_out) snprintf(topic_out, 256, "%s", m->topic);
	j = json_loadb(m->payload, (size_t)m->len, 0, &err);
	if(!j || !json_is_object(j)) {
		fprintf(stderr, "harness: %s got a non-JSON payload on %s: %s\n", c->id, m->topic, m->payload);
		json_decref(j);
		j = NULL;
	}
	h_msg_free(m);
	return j;
}

json_t *h_expect_chat_at(const char *file, int line, h_client *c, const char *room, const char *from,
		const char *body, int timeout_ms)
{
	char topic[256], want[256];
	json_t *j = h_wait_json(c, timeout_ms, topic);
	const char *f, *b, *r;

	if(!j) {
		h_fail(file, line, "%s: no chat message from %s in room %s within %d ms", c->id, from, room, timeout_ms);
		return NULL;
	}
	h_topic_messages(want, room);
	f = json_string_value(json_object_get(j, "from"));
	b = json_string_value(json_object_get(j, "body"));
	r = json_string_value(json_object_get(j, "room"));
	if(strcmp(topic, want) || !f || strcmp(f, from) || !r || strcmp(r, room) || (body && (!b || strcmp(b, body)))) {
		char *text = json_dumps(j, JSON_COMPACT);
		h_fail(file, line, "%s: expected a message from %s in %s (body \"%s\"), got on %s: %s", c->id, from,
				room, body ? body : "*", topic, text ? text : "?");
		free(text);
		json_decref(j);
		return NULL;
	}
	return j;
}

h_msg *h_expect_no_message(h_client *c, int window_ms)
{
	h_msg *m = h_wait_message(c, window_ms);

	if(m) fprintf(stderr, "harness: %s got an unexpected message on %s: %.300s\n", c->id, m->topic, m->payload);
	return m;
}

int h_drain(h_client *c, int settle_ms)
{
	int n = 0;
	h_msg *m;

	while((m = h_wait_message(c, settle_ms)) != NULL) {
		h_msg_free(m);
		n++;
	}
	return n;
}

void h_msg_free(h_msg *m)
{
	if(!m) return;
	free(m->topic);
	free(m->payload);
	free(m);
}

/* ------------------------------------------------------------ MQTT 5 correlation data (appended) */

#include <mqtt_protocol.h>

/* A received message with its correlation data in the same allocation: h_msg_free's
 * free(m) releases all of it, so these messages need no other free function. */
struct h_msg_corr {
	h_msg m;            /* first: an h_msg * to this struct is the struct */
	int corr_len;       /* -1: none */
	unsigned char corr[];
};

static void on_message_corr(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	h_client *c = obj;
	void *corr = NULL;
	uint16_t corr_len = 0;
	struct h_msg_corr *mc;

	(void)mosq;
	if(!mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corr_len, false)) corr = NULL;
	mc = calloc(1, sizeof(*mc) + (corr ? corr_len : 0));
	if(!mc) {
		free(corr);
		return;
	}
	mc->corr_len = corr ? corr_len : -1;
	if(corr && corr_len) memcpy(mc->corr, corr, corr_len);
	free(corr);
	mc->m.topic = strdup(msg->topic);
	mc->m.payload = malloc((size_t)msg->payloadlen + 1);
	if(!mc->m.topic || !mc->m.payload) {
		h_msg_free(&mc->m);
		return;
	}
	if(msg->payloadlen) memcpy(mc->m.payload, msg->payload, (size_t)msg->payloadlen);
	mc->m.payload[msg->payloadlen] = '\0';
	mc->m.len = msg->payloadlen;
	mc->m.qos = msg->qos;
	mc->m.retain = msg->retain;
	mc->m.corr_kept = true;
	pthread_mutex_lock(&c->mu);
	if(c->tail) c->tail->next = &mc->m;
	else c->head = &mc->m;
	c->tail = &mc->m;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void h_client_keep_correlation(h_client *c)
{
	mosquitto_message_v5_callback_set(c->mosq, on_message_corr);
}

int h_msg_correlation(const h_msg *m, char *out, size_t outlen)
{
	size_t n;

	/* only a message received after h_client_keep_correlation has the block after it */
	if(!m->corr_kept) return -1;
	const struct h_msg_corr *mc = (const struct h_msg_corr *)m;
	if(mc->corr_len < 0) return -1;
	if(outlen) {
		n = (size_t)mc->corr_len < outlen - 1 ? (size_t)mc->corr_len : outlen - 1;
		memcpy(out, mc->corr, n);
		out[n] = '\0';
	}
	return mc->corr_len;
}
