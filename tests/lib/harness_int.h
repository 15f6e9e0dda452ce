/*
 * harness_int.h: what the harness's files share (tests/lib: harness.c failures and small
 * helpers, harness_proc.c processes, harness_env.c the environment, harness_db.c the
 * database, harness_client.c MQTT clients). Tests include harness.h only.
 */
#ifndef MQCHAT_HARNESS_INT_H
#define MQCHAT_HARNESS_INT_H

#include "harness.h"

#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>


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

int64_t hx_mono_ms(void);
void hx_abstime_in(struct timespec *ts, int ms);
int hx_write_file(const char *path, const char *text, mode_t mode);
char *hx_read_file_from(const char *path, size_t offset, size_t *lenp);
size_t hx_file_size(const char *path);
void hx_random_hex(char *out, size_t nbytes);
int hx_free_port(void);
bool hx_port_accepts(int port);
const char *hx_need_env(const char *name);
pid_t hx_spawn(char *const argv[], const char *logpath, bool preload);
int hx_wait_exit(pid_t pid, int timeout_ms);
bool hx_still_running(pid_t pid, int *status);
void hx_describe_status(const char *what, int status);
int hx_stop_child(pid_t *pidp, const char *what);
int hx_kill9_child(pid_t *pidp);
int hx_run_capture(char *const argv[], const char *stdin_data, char *out, size_t outlen);
int hx_write_conf(h_env *env);
int hx_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw);
bool hx_find_room_id(const char *text, char *id);
long long hx_db_int_va(h_env *env, const char *sql, va_list ap);
int hx_pg_create(h_env *env, const char *test_name);

void hx_pg_drop(h_env *env);
void hx_client_free(h_client *c);
int hx_wait_ack(h_client *c, int mid, int timeout_ms);

#endif
