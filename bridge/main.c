/*
 * mqchat-bridge: the entry point. Options, signals, the database, and the threads
 * (docs/architecture.md "The bridge's threads"):
 *
 *   main thread     the store connection (store.c): the plugin's messages into ingest's
 *                   batches, "stored" confirmations after each commit
 *   request thread  the request connection (serve.c): answers, controls, events
 *   writer          commits batches (ingest.c)
 *   checkpointer    copies the WAL back (ingest.c; SQLite only)
 *
 * SIGTERM/SIGINT: the request thread answers what it holds and disconnects, the batches
 * are committed and confirmed, then the store connection disconnects. SIGUSR1: timing
 * report (requests: serve.c; writer commits: here).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "mqchat_store.h"

#include "bridge.h"
#include "config.h"
#include "ingest.h"
#include "serve.h"
#include "stats.h"
#include "store.h"

#define DB_BUSY_MS 5000
#define LOOP_MAX_WAIT_MS 1000

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t stats_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void on_stats_signal(int sig)
{
	(void)sig;
	stats_signal = 1;
}

static void sleep_ms(int64_t ms)
{
	if(ms <= 0) return;
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL); /* a signal cuts it short, which is what we want */
}

static void writer_report(struct ingest *ing)
{
	struct ingest_stats is;
	ingest__stats_take(ing, &is);
	if(!is.commit_ns.n) return;
	bridge__log(BLOG_INFO, "stats", "writer commits n=%" PRIu64 " messages=%" PRIu64 " size p50=%.0f p99=%.0f max=%" PRIu64
			" time p50=%.1fms p99=%.1fms max=%.1fms", is.commit_ns.n, is.messages,
			stat_quantile(&is.commit_size, 0.50), stat_quantile(&is.commit_size, 0.99), is.commit_size.max_ns,
			stat_quantile(&is.commit_ns, 0.50) / 1e6, stat_quantile(&is.commit_ns, 0.99) / 1e6, (double)is.commit_ns.max_ns / 1e6);
}

/* SIGTERM/SIGINT: commit, confirm, disconnect cleanly. Returns the exit status. */
static int shutdown_cleanly(struct store *s, struct serve *sv, struct ingest *ing)
{
	int status = 0;
	serve__stop(sv);
	bridge__log(BLOG_INFO, "bridge", "signal: committing %zu waiting messages and disconnecting", ingest__pending(ing));
	for(int attempt = 0; attempt < 5; attempt++){
		if(ingest__flush(ing) == 0) break;
		sleep_ms(200);
	}
	if(ingest__pending(ing)) status = 1;
	store__stop(s);
	writer_report(ing);
	bridge__log(BLOG_INFO, "bridge", "stopped%s", status ? " with messages not stored (the plugin sends them again)" : "");
	return status;
}

int main(int argc, char **argv)
{
	struct bridge_config cfg = { 0 };
	struct store store = { 0 };
	struct serve serve = { 0 };
	struct ingest *ing = NULL;
	mqc_db *db = NULL;
	char reason[512];
	int status = 1;

	serve.wake_fd = -1;
	int rc = config__load(&cfg, argc, argv);
	if(rc){
		config__free(&cfg);
		return rc > 0 ? 0 : 2;
	}
	mosquitto_lib_init();
	bridge__log_set_level(cfg.log_level);

	struct sigaction sa = { 0 };
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_stats_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if(!cfg.password){
		bridge__log(BLOG_WARN, "config", "no password (password-file or $MQCHAT_BRIDGE_PASSWORD): "
				"connecting as %s without one", cfg.user);
	}
	if(mqc_db_open(cfg.db_path, MQC_OPEN_READWRITE, DB_BUSY_MS, &db, reason, sizeof(reason))){
		bridge__log(BLOG_ERROR, "bridge", "%s; exiting", reason);
		goto done;
	}
	if(!(ing = ingest__new(db, cfg.db_path, cfg.batch_max, cfg.batch_ms))) goto done;
	if(store__init(&store, &cfg, ing)) goto done;
	if(serve__start(&serve, &cfg, cfg.db_path, ing)) goto done;

	uint64_t epoch, seq;
	ingest__watermark(ing, &epoch, &seq);
	bridge__log(BLOG_INFO, "bridge", "database %s, stored up to seq %" PRIu64 " of the plugin's epoch %" PRIu64
			"; broker %s:%d, prefix %s, batches of up to %d messages or %d ms", mqc_db_name(db), seq, epoch, cfg.host,
			cfg.port, cfg.prefix, cfg.batch_max, cfg.batch_ms);
	while(!stop_signal){
		if(stats_signal){
			stats_signal = 0;
			serve__stats(&serve);
			writer_report(ing);
		}
		store__step(&store, -1, NULL, LOOP_MAX_WAIT_MS);
	}
	status = shutdown_cleanly(&store, &serve, ing);

done:
	serve__stop(&serve);
	store__free(&store);
	mosquitto_lib_cleanup();
	ingest__free(ing);
	mqc_db_close(db);
	config__free(&cfg);
	return status;
}
