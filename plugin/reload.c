/*
 * The reload thread: everything the plugin does with the disk and the database happens
 * here, never on the broker's thread.
 *
 *  - it reads meta.acl_version; when that differs from what the broker's state reflects,
 *    it builds a new snapshot (cache__load) and offers it through st->next_cache. The
 *    broker thread swaps it in at its next callback (while an offer is untaken no new read
 *    starts) and hands the old one back through st->retired_cache, which this thread
 *    frees. SQLite: acl_version is polled every
 *    reload_interval_ms. PostgreSQL: the schema NOTIFYs mqchat_acl at every acl_version
 *    change and the thread LISTENs, so it reads acl_version as soon as one is announced;
 *    a slow poll (PG_POLL_MS) stays as a safety net for a notification that never came;
 *  - PostgreSQL going away: the broker keeps serving the last snapshot; the thread logs
 *    it once, reconnects with a backoff (up to RECONNECT_MAX_MS), logs when it is back
 *    and reloads then (changes made meanwhile were announced to no one);
 *  - every reload_interval_ms it keeps the id lease file ahead of the ids handed out (see
 *    docs/architecture.md "Messages and ids") and records the feed's state.
 *
 * The thread has its own read-only connection. It never waits for the broker.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugin.h"

#define LEASE_AHEAD_MS 10000 /* ids may run this far ahead of the last lease written */
#define SLICE_MS 50            /* the thread looks at st->stop (and waits for notifications) this often */
#define PENDING_MS 2           /* ... and at an untaken offer this often, when a reload is due */
#define PG_POLL_MS 5000        /* PostgreSQL: acl_version is read at least this often, announced or not */
#define RECONNECT_FIRST_MS 100 /* the backoff between reconnection attempts: doubling from this */
#define RECONNECT_MAX_MS 5000  /* up to this */

/* Libpq settings for the plugin's connection, unless the URI sets them: a server that
 * vanishes without closing the connection (a network partition, a machine that died) is
 * noticed within seconds (unacknowledged data, or an idle connection's keepalives), not
 * after the kernel's 15 minutes of retransmissions, which the thread (and a broker
 * stopping, which waits for the thread) would spend inside one query. */
static const char *const pg_defaults[][2] = {
	{ "keepalives_idle", "5" },
	{ "keepalives_interval", "1" },
	{ "keepalives_count", "3" },
	{ "tcp_user_timeout", "3000" },
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while(nanosleep(&ts, &ts) == -1 && errno == EINTR){}
}

uint64_t reload__read_lease(const struct mqchat *st)
{
	FILE *f = fopen(st->opt.idlease_path, "r");
	if(!f) return 0;
	unsigned long long v = 0;
	if(fscanf(f, "%llu", &v) != 1) v = 0;
	fclose(f);
	return (uint64_t)v;
}

/* Write-to-temp, fsync, rename: a crash leaves the old lease or the new one. */
int reload__write_lease(const struct mqchat *st, uint64_t lease)
{
	char tmp[4096];
	if(snprintf(tmp, sizeof(tmp), "%s.tmp", st->opt.idlease_path) >= (int)sizeof(tmp)) return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	if(fd < 0) return -1;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", lease);
	if(write(fd, buf, (size_t)n) != n || fsync(fd) != 0){
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if(rename(tmp, st->opt.idlease_path) != 0){
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void keep_lease_ahead(struct mqchat *st)
{
	uint64_t last = atomic_load(&st->last_id);
	uint64_t lease = atomic_load(&st->lease_id);
	int64_t now = mqc_now_ms();
	int64_t base = mqc_id_to_ms(last) > now ? mqc_id_to_ms(last) : now;
	/* Renew when less than half the lead is left. */
	if(lease > mqc_id_from_ms(base + LEASE_AHEAD_MS / 2)) return;
	uint64_t next = mqc_id_from_ms(base + LEASE_AHEAD_MS);
	if(reload__write_lease(st, next) == 0){
		atomic_store(&st->lease_id, next);
	}else{
		plugin__log_repeated(&st->lease_log, MOSQ_LOG_ERR, "mqchat: cannot write id lease %s: %s; retrying "
				"every %u ms", st->opt.idlease_path, strerror(errno), st->opt.reload_interval_ms);
	}
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An error message on one line (libpq's run over several): line breaks and the indents
 * after them become one space. */
static const char *one_line(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	for(const char *p = in; *p && o + 1 < outlen; p++){
		if(*p == '\n' || *p == '\r' || *p == '\t'){
			if(o && out[o - 1] != ' ') out[o++] = ' ';
		}else{
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return out;
}

static const char *db_err(struct mqchat *st, char *out, size_t outlen)
{
	return one_line(mqc_db_errmsg(st->reload_db), out, outlen);
}

static int64_t read_acl_version(mqc_db *db)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_ACL_VERSION);
	int64_t v = -1;
	if(s && mqc_step(s) == MQC_ROW) v = mqc_col_int64(s, 0);
	mqc_reset(s);
	return v;
}

enum reload_result {
	RELOAD_DONE,    /* nothing changed, or a new snapshot is offered */
	RELOAD_PENDING, /* the broker has not taken the last one yet: look again in PENDING_MS */
	RELOAD_FAILED,  /* logged; tried again at the next poll */
	RELOAD_LOST,    /* the connection is gone (PostgreSQL): not logged, the caller reconnects */
};

/* force: loads even if acl_version did not move (after a reconnection: the server may
 * not be the one the snapshot was read from). */
static enum reload_result reload_once(struct mqchat *st, bool force)
{
	char reason[512], line[512];

	/* No read while an offer is untaken: the broker clears its log of control updates
	 * when it takes an offer, so a read that overlapped the offer would miss the updates
	 * replayed onto the old one (a revocation or a removal lost until the next change). */
	if(atomic_load(&st->next_cache)) return RELOAD_PENDING;
	int64_t v = read_acl_version(st->reload_db);
	if(v < 0){
		if(mqc_db_fault_last(st->reload_db) == MQC_DBF_LOST) return RELOAD_LOST;
		plugin__log_repeated(&st->reload_log, MOSQ_LOG_WARNING, "mqchat: reading acl_version from %s failed: %s; "
				"retrying", st->db_name, db_err(st, line, sizeof(line)));
		return RELOAD_FAILED;
	}
	if(v == atomic_load(&st->known_acl_version) && !force) return RELOAD_DONE;

	/* reading is raised before ctl_seq is sampled: while it is up, the broker keeps every
	 * control update in its log, so the ones this read may have missed are replayed. */
	atomic_store(&st->reading, true);
	uint64_t seq = atomic_load(&st->ctl_seq);
	struct cache *c = cache__load(st->reload_db, reason, sizeof(reason));
	if(!c){
		atomic_store(&st->reading, false);
		if(mqc_db_fault_last(st->reload_db) == MQC_DBF_LOST) return RELOAD_LOST;
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: reloading %s failed: %s; keeping the current snapshot",
				st->db_name, one_line(reason, line, sizeof(line)));
		return RELOAD_FAILED;
	}
	c->ctl_seq = seq;
	mosquitto_log_printf(MOSQ_LOG_DEBUG, "mqchat: read a snapshot of %s at acl_version %lld",
			st->db_name, (long long)c->acl_version);
	atomic_store(&st->next_cache, c);
	atomic_store(&st->reading, false);
	return RELOAD_DONE;
}

/* What a crash would lose, for the next start (feed.c), and the spool once its messages
 * are confirmed: both only when something changed. */
static void keep_feed_state(struct mqchat *st, uint64_t *written_last, uint64_t *written_first)
{
	char path[4096];
	uint64_t last = atomic_load(&st->feed.pub_last), first = atomic_load(&st->feed.pub_first);
	if(atomic_exchange(&st->feed.spool_consumed, false)) unlink(st->opt.spool_path);
	if(last == *written_last && first == *written_first) return;
	snprintf(path, sizeof(path), "%s.state", st->opt.spool_path);
	if(feed__state_write(path, st->feed.epoch, last, first) == 0){
		*written_last = last;
		*written_first = first;
	}else{
		plugin__log_repeated(&st->state_log, MOSQ_LOG_WARNING, "mqchat: cannot write %s: %s (a broker crash "
				"could then not say how many messages it lost)", path, strerror(errno));
	}
}

/* What the reload thread knows of its connection (its own, on its stack). */
struct watch {
	bool pg;            /* PostgreSQL: notifications, and a connection that can be lost */
	bool listening;     /* LISTEN mqchat_acl is in effect: a change wakes the thread at once */
	bool lost;          /* the connection is gone: reconnecting, the last snapshot serves */
	bool due;           /* a reload is asked for (announced, polled, reconnected) and not done */
	bool force;         /* ... even if acl_version did not move */
	int64_t next_poll;  /* mono_ms of the next read of acl_version without a notification */
	int64_t lost_at, retry_at;
	unsigned backoff_ms, attempts;
};

static unsigned poll_ms(const struct mqchat *st, const struct watch *w)
{
	if(!w->listening) return st->opt.reload_interval_ms;
	return st->opt.reload_interval_ms > PG_POLL_MS ? st->opt.reload_interval_ms : PG_POLL_MS;
}

static void db_lost(struct mqchat *st, struct watch *w, int64_t now)
{
	char line[512];

	w->lost = true;
	w->lost_at = now;
	w->retry_at = now; /* the first attempt at once: a server restart is over quickly */
	w->backoff_ms = RECONNECT_FIRST_MS;
	w->attempts = 0;
	mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: lost the database %s (%s); serving the last snapshot "
			"(acl_version %lld) meanwhile, reconnecting", st->db_name, db_err(st, line, sizeof(line)),
			(long long)atomic_load(&st->known_acl_version));
}

static void db_listen(struct mqchat *st, struct watch *w, int64_t now)
{
	char line[512];

	if(mqc_db_listen(st->reload_db) == 0){
		w->listening = true;
		return;
	}
	if(mqc_db_fault_last(st->reload_db) == MQC_DBF_LOST){
		db_lost(st, w, now);
		return;
	}
	/* e.g. a hot standby, where LISTEN is refused */
	mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: cannot listen for changes on database %s: %s; polling "
			"acl_version every %u ms instead", st->db_name, db_err(st, line, sizeof(line)), st->opt.reload_interval_ms);
}

static void db_reconnect(struct mqchat *st, struct watch *w)
{
	w->attempts++;
	if(mqc_db_reconnect(st->reload_db) != 0){
		w->retry_at = mono_ms() + w->backoff_ms;
		w->backoff_ms = w->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : w->backoff_ms * 2;
		return;
	}
	int64_t now = mono_ms();
	w->lost = false;
	w->due = w->force = true;
	w->next_poll = now + poll_ms(st, w);
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: the database is back (%s, after %.1f s, %u attempt%s); "
			"reloading (changes made meanwhile were not announced)", st->db_name, (double)(now - w->lost_at) / 1000.0,
			w->attempts, w->attempts == 1 ? "" : "s");
	/* mqc_db_reconnect listens again where it listened; a LISTEN refused before may work now */
	if(w->pg && !w->listening) db_listen(st, w, now);
}

static void *reload_main(void *arg)
{
	struct mqchat *st = arg;
	struct watch w = { .pg = mqc_db_engine(st->reload_db) == MQC_ENGINE_PG };
	uint64_t written_last = UINT64_MAX, written_first = UINT64_MAX;
	int64_t now = mono_ms();
	int64_t next_files = now + st->opt.reload_interval_ms;

	keep_feed_state(st, &written_last, &written_first);
	if(w.pg) db_listen(st, &w, now);
	w.next_poll = now + poll_ms(st, &w);
	while(!atomic_load(&st->stop)){
		/* Due but offered and not taken yet: look again soon, not a slice later (a change
		 * right after another waited 50 ms here: 4 of 5 admin changes took 51-54 ms). */
		int slice = w.due && !w.lost ? PENDING_MS : SLICE_MS;
		if(w.listening && !w.lost){
			int n = mqc_db_wait(st->reload_db, slice);
			if(n > 0) w.due = true; /* whatever it says: acl_version is read below */
			else if(n < 0) db_lost(st, &w, mono_ms());
		}else{
			sleep_ms(slice);
		}
		if(atomic_load(&st->stop)) break;
		cache__free(atomic_exchange(&st->retired_cache, NULL));
		now = mono_ms();
		if(w.lost){
			if(now >= w.retry_at) db_reconnect(st, &w);
		}else{
			if(now >= w.next_poll) w.due = true;
			if(w.due){
				switch(reload_once(st, w.force)){
				case RELOAD_PENDING:
					break; /* still due; the next wait is PENDING_MS */
				case RELOAD_DONE:
					w.due = w.force = false;
					w.next_poll = mono_ms() + poll_ms(st, &w);
					break;
				case RELOAD_FAILED:
					w.due = false; /* force stays: the next load must not be skipped */
					w.next_poll = mono_ms() + st->opt.reload_interval_ms;
					break;
				case RELOAD_LOST:
					db_lost(st, &w, mono_ms());
					break;
				}
			}
		}
		now = mono_ms();
		if(now >= next_files){
			keep_lease_ahead(st);
			keep_feed_state(st, &written_last, &written_first);
			next_files = now + st->opt.reload_interval_ms;
		}
	}
	return NULL;
}

/* The URI with the pg_defaults it does not set itself (malloc'd), and what was added. */
static char *pg_where(const char *uri, char *added, size_t addedlen)
{
	const char *q = strchr(uri, '?');
	bool first = !q || q[1] == '\0'; /* no parameter yet: the first one needs no '&' */
	size_t n = 0;

	added[0] = '\0';
	for(size_t i = 0; i < sizeof(pg_defaults) / sizeof(pg_defaults[0]); i++){
		bool set = false;
		size_t klen = strlen(pg_defaults[i][0]);
		for(const char *p = q; p && !set; p = strchr(p + 1, '&')){
			set = !strncmp(p + 1, pg_defaults[i][0], klen) && p[1 + klen] == '=';
		}
		if(set) continue;
		n += (size_t)snprintf(n < addedlen ? added + n : NULL, n < addedlen ? addedlen - n : 0, "%s%s=%s",
				first ? (q ? "" : "?") : "&", pg_defaults[i][0], pg_defaults[i][1]);
		first = false;
	}
	if(n >= addedlen) return NULL;
	char *w = malloc(strlen(uri) + n + 1);
	if(w){
		strcpy(w, uri);
		strcat(w, added);
	}
	return w;
}

/* Removes the first copy of cut from s (the settings added to the URI, from log lines). */
static void cut_out(char *s, const char *cut)
{
	char *p = *cut ? strstr(s, cut) : NULL;
	if(p) memmove(p, p + strlen(cut), strlen(p + strlen(cut)) + 1);
}

int reload__start(struct mqchat *st, char *reason, size_t reasonlen)
{
	char added[256] = "";
	char *where = st->opt.db_path;
	int rc;

	if(mqc_db_engine_of(st->opt.db_path) == MQC_ENGINE_PG
			&& !(where = pg_where(st->opt.db_path, added, sizeof(added)))){
		snprintf(reason, reasonlen, "out of memory");
		return -1;
	}
	/* PostgreSQL down at start: refused, like a SQLite file that cannot be opened. Without
	 * a first snapshot the plugin can let no one in, and a broker that is up but refuses
	 * every login looks healthy and tells every client its password is wrong; a broker
	 * that does not start says why, and its supervisor starts it again. */
	rc = mqc_db_open(where, MQC_OPEN_READONLY, 1000, &st->reload_db, reason, reasonlen);
	if(where != st->opt.db_path) free(where);
	if(rc){
		cut_out(reason, added);
		char line[512];
		snprintf(reason, reasonlen, "%s", one_line(reason, line, sizeof(line)));
		return -1;
	}
	snprintf(st->db_name, sizeof(st->db_name), "%s", mqc_db_name(st->reload_db));
	cut_out(st->db_name, added);

	/* The first snapshot is loaded before the broker accepts anyone (start-up is the one
	 * time the broker thread may wait on the disk or the network). */
	char why[512];
	st->cache = cache__load(st->reload_db, why, sizeof(why));
	if(!st->cache){
		char line[512];
		snprintf(reason, reasonlen, "database %s: %s", st->db_name, one_line(why, line, sizeof(line)));
		return -1;
	}
	atomic_store(&st->known_acl_version, st->cache->acl_version);

	uint64_t floor = st->cache->max_msg_id;
	uint64_t lease = reload__read_lease(st);
	if(lease > floor) floor = lease;
	mqc_idgen_init(&st->ids, floor);
	atomic_store(&st->last_id, floor);
	uint64_t first_lease = mqc_id_from_ms(mqc_now_ms() + LEASE_AHEAD_MS);
	if(first_lease <= floor) first_lease = floor + mqc_id_from_ms(MQC_ID_EPOCH_MS + LEASE_AHEAD_MS);
	if(reload__write_lease(st, first_lease)){
		snprintf(reason, reasonlen, "cannot write id lease %s: %s (the directory must be writable by mosquitto)",
				st->opt.idlease_path, strerror(errno));
		return -1;
	}
	atomic_store(&st->lease_id, first_lease);

	if(pthread_create(&st->reload_thread, NULL, reload_main, st) != 0){
		snprintf(reason, reasonlen, "cannot start the reload thread");
		return -1;
	}
	st->thread_started = true;
	return 0;
}

void reload__stop(struct mqchat *st)
{
	if(st->thread_started){
		atomic_store(&st->stop, true);
		pthread_join(st->reload_thread, NULL);
		st->thread_started = false;
	}
	cache__free(atomic_exchange(&st->retired_cache, NULL));
	cache__free(atomic_exchange(&st->next_cache, NULL));
	if(st->reload_db){
		mqc_db_close(st->reload_db);
		st->reload_db = NULL;
	}
}
