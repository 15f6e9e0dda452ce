/*
 * The integration test harness (see harness.h for the contract): failures and small
 * helpers here; processes in harness_proc.c, the environment in harness_env.c, the
 * database in harness_db.c, MQTT clients in harness_client.c (harness_int.h between them).
 *
 * Processes: mosquitto and mqchat-bridge are fork/exec'd children with PR_SET_PDEATHSIG,
 * so a test killed by CTest's timeout does not leave them behind. Their stdout and stderr
 * go (appended, across restarts) to broker.log / bridge.log in the temp dir.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "harness_int.h"

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


int h_failures;

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

int64_t hx_mono_ms(void)
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

void hx_abstime_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if(ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int hx_write_file(const char *path, const char *text, mode_t mode)
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
char *hx_read_file_from(const char *path, size_t offset, size_t *lenp)
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

size_t hx_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

size_t h_file_size(const char *path)
{
	return hx_file_size(path);
}

char *h_file_read_from(const char *path, size_t offset)
{
	if(offset > hx_file_size(path)) offset = 0; /* the file started over */
	return hx_read_file_from(path, offset, NULL);
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

void hx_random_hex(char *out, size_t nbytes)
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

int h_free_port(void)
{
	return hx_free_port();
}

int hx_free_port(void)
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

bool hx_port_accepts(int port)
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

const char *hx_need_env(const char *name)
{
	const char *v = getenv(name);

	if(!v || !*v) {
		fprintf(stderr, "harness: $%s is not set; run the tests through ctest\n", name);
		exit(1);
	}
	return v;
}

