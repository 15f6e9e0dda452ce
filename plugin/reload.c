/*
 * The reload thread: everything the plugin does with the disk happens here, never on the
 * broker's thread.
 *
 *  - every reload_interval_ms it reads meta.acl_version; when that differs from what the
 *    broker's state reflects, it builds a new snapshot (cache__load) and offers it through
 *    st->next_cache. The broker thread swaps it in at its next callback and hands the old
 *    one back through st->retired_cache, which this thread frees;
 *  - it keeps the id lease file ahead of the ids handed out (see docs/architecture.md
 *    "Messages and ids").
 *
 * The thread has its own read-only SQLite connection. It never waits for the broker.
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

static int64_t read_acl_version(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;
	if(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'acl_version'", -1, &s, NULL) == SQLITE_OK
			&& sqlite3_step(s) == SQLITE_ROW){
		v = sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	return v;
}

static void reload_once(struct mqchat *st)
{
	char reason[512];

	struct cache *old = atomic_exchange(&st->retired_cache, NULL);
	cache__free(old);

	if(atomic_load(&st->next_cache)) return; /* the last one is not taken yet */
	int64_t v = read_acl_version(st->reload_db);
	if(v < 0){
		plugin__log_repeated(&st->reload_log, MOSQ_LOG_WARNING, "mqchat: reading acl_version from %s failed: %s; "
				"retrying", st->opt.db_path, sqlite3_errmsg(st->reload_db));
		return;
	}
	if(v == atomic_load(&st->known_acl_version)) return;

	/* reading is raised before ctl_seq is sampled: while it is up, the broker keeps every
	 * control update in its log, so the ones this read may have missed are replayed. */
	atomic_store(&st->reading, true);
	uint64_t seq = atomic_load(&st->ctl_seq);
	struct cache *c = cache__load(st->reload_db, reason, sizeof(reason));
	if(!c){
		atomic_store(&st->reading, false);
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: reloading %s failed: %s; keeping the current snapshot",
				st->opt.db_path, reason);
		return;
	}
	c->ctl_seq = seq;
	atomic_store(&st->next_cache, c);
	atomic_store(&st->reading, false);
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

static void *reload_main(void *arg)
{
	struct mqchat *st = arg;
	uint64_t written_last = UINT64_MAX, written_first = UINT64_MAX;
	keep_feed_state(st, &written_last, &written_first);
	while(!atomic_load(&st->stop)){
		for(unsigned slept = 0; slept < st->opt.reload_interval_ms && !atomic_load(&st->stop); slept += 50){
			sleep_ms(50);
		}
		if(atomic_load(&st->stop)) break;
		reload_once(st);
		keep_lease_ahead(st);
		keep_feed_state(st, &written_last, &written_first);
	}
	return NULL;
}

int reload__start(struct mqchat *st, char *reason, size_t reasonlen)
{
	if(mqc_db_open(st->opt.db_path, MQC_OPEN_READONLY, 1000, &st->reload_db, reason, reasonlen)) return -1;

	/* The first snapshot is loaded before the broker accepts anyone (start-up is the one
	 * time the broker thread may wait on the disk). */
	st->cache = cache__load(st->reload_db, reason, reasonlen);
	if(!st->cache) return -1;
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
		sqlite3_close(st->reload_db);
		st->reload_db = NULL;
	}
}
