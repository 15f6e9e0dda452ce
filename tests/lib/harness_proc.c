/*
 * harness_proc.c: the child processes: spawn, stop, kill, run and capture (see harness.h
 * for the contract).
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


/* ------------------------------------------------------------ processes */

/* Starts argv[0] with stdout+stderr appended to logpath and stdin from /dev/null.
 * preload: add LD_PRELOAD and ASAN_OPTIONS=detect_leaks=0 (the uninstrumented broker
 * loading an instrumented plugin). Returns the pid or -1. */
pid_t hx_spawn(char *const argv[], const char *logpath, bool preload)
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
int hx_wait_exit(pid_t pid, int timeout_ms)
{
	int64_t until = hx_mono_ms() + timeout_ms;
	int status;

	for(;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if(r == pid) return status;
		if(r < 0 && errno != EINTR) return -1;
		if(hx_mono_ms() >= until) return -1;
		h_sleep_ms(20);
	}
}

bool hx_still_running(pid_t pid, int *status)
{
	return waitpid(pid, status, WNOHANG) == 0;
}

void hx_describe_status(const char *what, int status)
{
	if(WIFEXITED(status)) {
		fprintf(stderr, "harness: %s exited with status %d\n", what, WEXITSTATUS(status));
	} else if(WIFSIGNALED(status)) {
		fprintf(stderr, "harness: %s died of signal %d\n", what, WTERMSIG(status));
	}
}

/* SIGTERM, wait 10 s, then SIGKILL. Returns 0 if it exited with status 0. */
int hx_stop_child(pid_t *pidp, const char *what)
{
	int status;

	if(*pidp <= 0) return 0;
	kill(*pidp, SIGTERM);
	status = hx_wait_exit(*pidp, 10000);
	if(status == -1) {
		fprintf(stderr, "harness: %s (pid %d) ignored SIGTERM for 10 s; killing it\n", what, (int)*pidp);
		kill(*pidp, SIGKILL);
		waitpid(*pidp, &status, 0);
		*pidp = 0;
		return -1;
	}
	*pidp = 0;
	if(WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
	hx_describe_status(what, status);
	return -1;
}

int hx_kill9_child(pid_t *pidp)
{
	int status;

	if(*pidp <= 0) return -1;
	kill(*pidp, SIGKILL);
	waitpid(*pidp, &status, 0);
	*pidp = 0;
	return 0;
}

/* Runs argv to completion; stdin_data to its stdin, stdout+stderr captured into out. */
int hx_run_capture(char *const argv[], const char *stdin_data, char *out, size_t outlen)
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

