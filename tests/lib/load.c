/*
 * load.c: a steady chat load counted by message (load.h).
 *
 * Threads: the load thread creates and (re)sends messages and owns the clients' life
 * cycle; each client's libmosquitto thread runs its callbacks; the lag thread reads the
 * database. l->mu guards the message table and every sender's in-flight state.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mqtt_protocol.h>
#include <pthread.h>

#include "dbconn.h"
#include "load.h"
#include "mqchat_store.h"

#include <mosquitto.h>

#define INFLIGHT 32
#define RECONNECT_MS 200

struct lmsg {
	int64_t acked_ms;  /* 0: not acknowledged yet */
	int64_t stored_ms; /* 0: not seen in the database (lag thread) */
};

struct sender {
	h_load *l;
	char user[MQC_NAME_MAX + 1];
	char topic[256];
	char cid[128];
	struct mosquitto *mosq;
	int gen;                  /* bumped at every new client, so ids never repeat */
	bool up, dead;            /* connected / the connection went down (destroy and redo) */
	int64_t retry_at;
	int mids[INFLIGHT];       /* in flight: mid -> message index */
	long idx[INFLIGHT];
	int ninflight;
	int early[INFLIGHT];      /* acknowledged before publish() returned its mid */
	int nearly;
	long *resend;             /* message indexes to send again */
	size_t nresend, cresend;
};

struct h_load {
	h_load_opts o;
	char tag[48];
	struct sender *s;
	int ns;
	struct lmsg *msgs;
	long nmsgs, cmsgs;
	pthread_mutex_t mu;
	pthread_t thread, lag_thread;
	bool lag_started;
	atomic_bool stop_new, stop_all;
	long attempts, refusals, failed_acks;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while(nanosleep(&ts, &ts) == -1 && errno == EINTR){}
}

static int resend_push(struct sender *s, long i)
{
	if(s->nresend == s->cresend){
		size_t c = s->cresend ? s->cresend * 2 : 64;
		long *r = realloc(s->resend, c * sizeof(*r));
		if(!r) return -1;
		s->resend = r;
		s->cresend = c;
	}
	s->resend[s->nresend++] = i;
	return 0;
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	(void)mosq;
	(void)flags;
	(void)props;
	struct sender *s = obj;
	pthread_mutex_lock(&s->l->mu);
	if(rc == 0) s->up = true;
	else s->dead = true;
	pthread_mutex_unlock(&s->l->mu);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
	(void)mosq;
	(void)rc;
	(void)props;
	struct sender *s = obj;
	h_load *l = s->l;
	pthread_mutex_lock(&l->mu);
	if(s->ninflight) l->refusals++;
	for(int i = 0; i < s->ninflight; i++) resend_push(s, s->idx[i]);
	s->ninflight = 0;
	s->nearly = 0;
	s->up = false;
	s->dead = true;
	pthread_mutex_unlock(&l->mu);
}

/* With l->mu held: the message of mid on this connection is acknowledged (or refused). */
static bool settle(struct sender *s, int mid, int reason)
{
	h_load *l = s->l;
	for(int i = 0; i < s->ninflight; i++){
		if(s->mids[i] != mid) continue;
		long m = s->idx[i];
		if(reason >= 0x80){
			l->failed_acks++;
			resend_push(s, m); /* e.g. refused for a reason that may pass: try again */
		}else if(!l->msgs[m].acked_ms){
			l->msgs[m].acked_ms = now_ms();
		}
		s->mids[i] = s->mids[s->ninflight - 1];
		s->idx[i] = s->idx[s->ninflight - 1];
		s->ninflight--;
		return true;
	}
	return false;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason, const mosquitto_property *props)
{
	(void)mosq;
	(void)props;
	struct sender *s = obj;
	pthread_mutex_lock(&s->l->mu);
	if(!settle(s, mid, reason) && s->nearly < INFLIGHT) s->early[s->nearly++] = reason >= 0x80 ? -mid : mid;
	pthread_mutex_unlock(&s->l->mu);
}

static void client_drop(struct sender *s)
{
	if(!s->mosq) return;
	mosquitto_disconnect(s->mosq);
	mosquitto_loop_stop(s->mosq, true);
	mosquitto_destroy(s->mosq);
	s->mosq = NULL;
}

/* Load thread: a fresh client for s (ids never repeat: a persistent session could resend). */
static void client_start(struct sender *s)
{
	h_load *l = s->l;
	client_drop(s);
	snprintf(s->cid, sizeof(s->cid), "%s:load-%s-%d", s->user, l->tag, s->gen++);
	s->mosq = mosquitto_new(s->cid, true, s);
	if(!s->mosq) return;
	mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(s->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_username_pw_set(s->mosq, s->user, l->o.password(s->user));
	mosquitto_connect_v5_callback_set(s->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(s->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(s->mosq, on_publish);
	pthread_mutex_lock(&l->mu);
	for(int i = 0; i < s->ninflight; i++) resend_push(s, s->idx[i]);
	s->ninflight = 0;
	s->nearly = 0;
	s->up = s->dead = false;
	pthread_mutex_unlock(&l->mu);
	if(mosquitto_connect_bind_v5(s->mosq, "127.0.0.1", l->o.port, 30, NULL, NULL) != MOSQ_ERR_SUCCESS
			|| mosquitto_loop_start(s->mosq) != MOSQ_ERR_SUCCESS){
		pthread_mutex_lock(&l->mu);
		s->dead = true;
		pthread_mutex_unlock(&l->mu);
	}
}

/* Load thread: publishes message m on s. False if s cannot take it now. */
static bool send_one(struct sender *s, long m)
{
	h_load *l = s->l;
	char payload[256];
	int mid = 0;
	snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"%s-%ld\",\"client_msg_id\":\"%s-%ld\"}",
			l->tag, m, l->tag, m);
	int rc = mosquitto_publish_v5(s->mosq, &mid, s->topic, (int)strlen(payload), payload, l->o.qos, false, NULL);
	pthread_mutex_lock(&l->mu);
	l->attempts++;
	/* dead: the connection went down while publishing, and on_disconnect already moved the
	 * in-flight ones; recording this one would leave it waiting for a PUBACK that never
	 * comes (and a later client reusing its mid would settle the wrong message) */
	if(rc != MOSQ_ERR_SUCCESS || s->dead){
		resend_push(s, m);
		pthread_mutex_unlock(&l->mu);
		return false;
	}
	s->mids[s->ninflight] = mid;
	s->idx[s->ninflight] = m;
	s->ninflight++;
	for(int i = 0; i < s->nearly; i++){
		if(s->early[i] == mid || s->early[i] == -mid){
			settle(s, mid, s->early[i] < 0 ? 0x80 : 0);
			s->early[i] = s->early[--s->nearly];
			break;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return true;
}

static long new_message(h_load *l)
{
	pthread_mutex_lock(&l->mu);
	if(l->nmsgs == l->cmsgs){
		long c = l->cmsgs ? l->cmsgs * 2 : 4096;
		struct lmsg *n = realloc(l->msgs, (size_t)c * sizeof(*n));
		if(!n){
			pthread_mutex_unlock(&l->mu);
			return -1;
		}
		memset(n + l->cmsgs, 0, (size_t)(c - l->cmsgs) * sizeof(*n));
		l->msgs = n;
		l->cmsgs = c;
	}
	long m = l->nmsgs++;
	pthread_mutex_unlock(&l->mu);
	return m;
}

static void *load_main(void *arg)
{
	h_load *l = arg;
	double next_at = (double)now_ms(), step = 1000.0 / (l->o.rate > 0 ? l->o.rate : 1);
	int rr = 0;
	while(!atomic_load(&l->stop_all)){
		int64_t now = now_ms();
		for(int i = 0; i < l->ns; i++){
			struct sender *s = &l->s[i];
			pthread_mutex_lock(&l->mu);
			bool dead = s->dead || !s->mosq;
			pthread_mutex_unlock(&l->mu);
			if(dead && now >= s->retry_at){
				client_start(s);
				s->retry_at = now + RECONNECT_MS;
			}
		}
		/* resends first, then new messages at the rate */
		for(int i = 0; i < l->ns; i++){
			struct sender *s = &l->s[i];
			for(;;){
				pthread_mutex_lock(&l->mu);
				bool can = s->up && !s->dead && s->ninflight < INFLIGHT && s->nresend;
				long m = can ? s->resend[--s->nresend] : -1;
				pthread_mutex_unlock(&l->mu);
				if(m < 0 || !send_one(s, m)) break;
			}
		}
		/* Messages go to the senders in strict turn, so each sends rate / senders a second
		 * (within its own limits); one that cannot take its turn now (not connected, its
		 * window full) keeps the message for when it can. */
		while(!atomic_load(&l->stop_new) && (double)now >= next_at){
			struct sender *s = &l->s[rr++ % l->ns];
			long m = new_message(l);
			if(m < 0) break;
			pthread_mutex_lock(&l->mu);
			bool can = s->up && !s->dead && s->ninflight < INFLIGHT && !s->nresend;
			if(!can) resend_push(s, m);
			pthread_mutex_unlock(&l->mu);
			if(can) send_one(s, m);
			next_at += step;
		}
		/* after a stop (nobody connected) the rate resumes, it does not burst to catch up */
		if((double)now - next_at > 1000.0) next_at = (double)now;
		sleep_ms(1);
	}
	for(int i = 0; i < l->ns; i++) client_drop(&l->s[i]);
	return NULL;
}

struct lag_scan { h_load *l; int64_t now; long long last; };

static int lag_row(void *arg, int ncols, const char *const *cols)
{
	struct lag_scan *ls = arg;
	(void)ncols;
	ls->last = cols[0] ? strtoll(cols[0], NULL, 10) : ls->last;
	const char *cmid = cols[1];
	const char *dash = cmid ? strrchr(cmid, '-') : NULL;
	long m = dash ? strtol(dash + 1, NULL, 10) : -1;
	pthread_mutex_lock(&ls->l->mu);
	if(m >= 0 && m < ls->l->nmsgs && !ls->l->msgs[m].stored_ms) ls->l->msgs[m].stored_ms = ls->now;
	pthread_mutex_unlock(&ls->l->mu);
	return 0;
}

static void *lag_main(void *arg)
{
	h_load *l = arg;
	char like[64], last[24];
	struct lag_scan ls = { .l = l };
	snprintf(like, sizeof(like), "%s-%%", l->tag);
	while(!atomic_load(&l->stop_all)){
		snprintf(last, sizeof(last), "%lld", ls.last);
		ls.now = now_ms();
		if(dbc_rows(l->o.db, lag_row, &ls, "SELECT id, client_msg_id FROM messages WHERE id > CAST(?1 AS INTEGER)"
					" AND client_msg_id LIKE ?2 ORDER BY id LIMIT 20000", last, like, (char *)NULL)) sleep_ms(100);
		sleep_ms(5);
	}
	return NULL;
}

h_load *h_load_start(const h_load_opts *o)
{
	static atomic_int runs;
	h_load *l = calloc(1, sizeof(*l));
	if(!l) return NULL;
	l->o = *o;
	if(!l->o.qos) l->o.qos = 1;
	snprintf(l->tag, sizeof(l->tag), "%s%dp%d", o->tag ? o->tag : "load", atomic_fetch_add(&runs, 1), (int)getpid());
	pthread_mutex_init(&l->mu, NULL);
	while(o->users[l->ns]) l->ns++;
	l->s = calloc((size_t)l->ns, sizeof(*l->s));
	if(!l->s){
		free(l);
		return NULL;
	}
	for(int i = 0; i < l->ns; i++){
		l->s[i].l = l;
		snprintf(l->s[i].user, sizeof(l->s[i].user), "%s", o->users[i]);
		snprintf(l->s[i].topic, sizeof(l->s[i].topic), "chat/rooms/%s/send", o->rooms ? o->rooms[i] : o->room);
		l->s[i].dead = true;
	}
	if(pthread_create(&l->thread, NULL, load_main, l) != 0){
		free(l->s);
		free(l);
		return NULL;
	}
	if(o->measure_lag) l->lag_started = pthread_create(&l->lag_thread, NULL, lag_main, l) == 0;
	return l;
}

static long unacked(h_load *l)
{
	long n = 0;
	pthread_mutex_lock(&l->mu);
	for(long i = 0; i < l->nmsgs; i++) n += !l->msgs[i].acked_ms;
	pthread_mutex_unlock(&l->mu);
	return n;
}

void h_load_stop(h_load *l, int drain_ms)
{
	atomic_store(&l->stop_new, true);
	int64_t until = now_ms() + drain_ms;
	while(unacked(l) && now_ms() < until) sleep_ms(20);
	/* the lag thread sees the last rows before it stops */
	sleep_ms(l->o.measure_lag ? 500 : 0);
	atomic_store(&l->stop_all, true);
	pthread_join(l->thread, NULL);
	if(l->lag_started) pthread_join(l->lag_thread, NULL);
	l->lag_started = false;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void h_load_result_get(h_load *l, h_load_result *r)
{
	memset(r, 0, sizeof(*r));
	r->lag_p50_ms = r->lag_p99_ms = r->lag_max_ms = -1;
	pthread_mutex_lock(&l->mu);
	double *lags = l->nmsgs ? malloc((size_t)l->nmsgs * sizeof(*lags)) : NULL;
	for(long i = 0; i < l->nmsgs; i++){
		if(l->msgs[i].acked_ms) r->acked++;
		else r->unacked++;
		if(lags && l->msgs[i].acked_ms && l->msgs[i].stored_ms){
			double d = (double)(l->msgs[i].stored_ms - l->msgs[i].acked_ms);
			lags[r->lag_samples++] = d < 0 ? 0 : d;
		}
	}
	r->attempts = l->attempts;
	r->refusals = l->refusals;
	r->failed_acks = l->failed_acks;
	pthread_mutex_unlock(&l->mu);
	if(r->lag_samples){
		qsort(lags, (size_t)r->lag_samples, sizeof(*lags), cmp_d);
		r->lag_p50_ms = lags[(r->lag_samples - 1) / 2];
		r->lag_p99_ms = lags[(long)((double)(r->lag_samples - 1) * 0.99)];
		r->lag_max_ms = lags[r->lag_samples - 1];
	}
	free(lags);
}

struct count_scan { int *count; long n; };

static int count_row(void *arg, int ncols, const char *const *cols)
{
	struct count_scan *cs = arg;
	(void)ncols;
	const char *cmid = cols[0];
	const char *dash = cmid ? strrchr(cmid, '-') : NULL;
	long m = dash ? strtol(dash + 1, NULL, 10) : -1;
	if(m >= 0 && m < cs->n) cs->count[m] = cols[1] ? atoi(cols[1]) : 0;
	return 0;
}

int h_load_check(h_load *l, int timeout_ms, long *missing, long *dups)
{
	char like[64];
	int64_t until = now_ms() + timeout_ms;
	long n = l->nmsgs;
	struct count_scan cs = { .count = calloc((size_t)(n ? n : 1), sizeof(int)), .n = n };
	*missing = *dups = -1;
	snprintf(like, sizeof(like), "%s-%%", l->tag);
	if(!cs.count) goto done;
	for(;;){
		memset(cs.count, 0, (size_t)(n ? n : 1) * sizeof(int));
		if(dbc_rows(l->o.db, count_row, &cs, "SELECT client_msg_id, count(*) FROM messages WHERE client_msg_id LIKE ?1"
					" GROUP BY client_msg_id", like, (char *)NULL)) goto done;
		*missing = *dups = 0;
		for(long i = 0; i < n; i++){
			if(l->msgs[i].acked_ms && !cs.count[i]) (*missing)++;
			if(cs.count[i] > 1) (*dups)++;
		}
		if(!*missing || now_ms() >= until) break;
		sleep_ms(200);
	}
done:
	free(cs.count);
	return *missing == 0 && *dups == 0 ? 0 : -1;
}

void h_load_free(h_load *l)
{
	if(!l) return;
	if(!atomic_load(&l->stop_all)) h_load_stop(l, 0);
	for(int i = 0; i < l->ns; i++) free(l->s[i].resend);
	free(l->s);
	free(l->msgs);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
