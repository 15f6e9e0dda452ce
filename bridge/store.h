/*
 * The store connection (store.c): takes the plugin's messages in order into ingest's
 * batches and confirms what the writer committed. Main thread only.
 */
#ifndef MQCHAT_BRIDGE_STORE_H
#define MQCHAT_BRIDGE_STORE_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "ingest.h"
#include "link.h"

struct store {
	struct link link;
	const struct bridge_config *cfg;
	struct ingest *ing;
	bool subscribed;         /* the SUBACK came: hello was sent */
	int64_t hello_at;        /* when hello was sent, 0: not on this connection */
	bool feeding;            /* the plugin answered hello: its messages are taken */
	uint64_t epoch;          /* the plugin's */
	uint64_t next;           /* the seq taken next */
	bool resend_pending;
	uint64_t resend_from;
	int64_t resend_at, last_data_at;
	uint64_t acked_epoch, acked_seq; /* the last "stored" sent on this connection */
	uint64_t gaps, dups;
	struct log_repeat gap_log, hello_log;
};

int store__init(struct store *s, const struct bridge_config *cfg, struct ingest *ing);
void store__free(struct store *s);
/* One iteration of the main loop: connect, pump the batches, confirm, poll (also extra_fd,
 * whose revents go to *extra_revents), read. Sleeps at most max_wait_ms. */
void store__step(struct store *s, int extra_fd, short *extra_revents, int64_t max_wait_ms);
/* Confirms what is committed and disconnects cleanly. */
void store__stop(struct store *s);

#endif
