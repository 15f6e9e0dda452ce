/*
 * One MQTT 5 connection of the bridge to the broker (libmosquitto), driven by its owner's
 * poll() loop: connect with backoff and jitter, reconnect after a loss, log why.
 *
 * The bridge has two, each used by one thread only (docs/architecture.md "The bridge's
 * threads"): the store connection (store.c, the main thread) and the request connection
 * (serve.c, the request thread). libmosquitto's own thread is not used: its callbacks run
 * inside link__io, on the owner's thread.
 */
#ifndef MQCHAT_BRIDGE_LINK_H
#define MQCHAT_BRIDGE_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <mosquitto.h>

#include "config.h"

/* What the owner is told, on its own thread, from inside link__io. */
struct link_ops {
	void (*ready)(void *obj);   /* CONNACK accepted and the link's subscription granted */
	void (*message)(void *obj, const struct mosquitto_message *msg, const mosquitto_property *props);
	void (*published)(void *obj, int mid); /* may be NULL */
	void (*lost)(void *obj);    /* the connection went down (also before ready) */
};

struct link {
	const char *name;       /* "store" or "requests", for log lines */
	const struct bridge_config *cfg;
	char *client_id;
	struct mosquitto *mosq;
	mosquitto_property *connect_props;
	const struct link_ops *ops;
	void *obj;
	char *sub;              /* subscribed at QoS 0 on every connect */
	int sub_mid;
	bool tcp_up;            /* a connection exists (CONNACK may still be pending) */
	bool connected;         /* CONNACK accepted */
	bool failure_logged;    /* this attempt's failure was already logged */
	char refusal[160];      /* why the broker refused this attempt's CONNECT, or "" */
	int64_t backoff_ms, next_connect_at;
	unsigned rand_state;
};

/* Sets up (does not connect). The session is persistent (clean start off, expiry
 * 0xFFFFFFFF) and asks for Receive Maximum --receive-maximum. sub: the filter subscribed
 * at every connect (a refusal disconnects and retries). 0, or -1 (logged). */
int link__init(struct link *l, const char *name, const struct bridge_config *cfg, const char *client_id,
		const char *sub, const struct link_ops *ops, void *obj);
void link__free(struct link *l);

/* Connects when due (call once per loop iteration). */
void link__maybe_connect(struct link *l);
/* The socket to poll (-1 when none) and the events to ask for. */
int link__fd(struct link *l, bool reading, short *events);
/* The most the owner may sleep in poll() before link__maybe_connect has work. -1: none. */
int64_t link__timeout_ms(const struct link *l);
/* One pass of libmosquitto's I/O for what poll() reported on link__fd (revents 0: only
 * timers). While reading, packets already in the socket are read on, up to burst: under
 * load that saves a poll() and a wake-up per message. keep_reading (may be NULL) is asked
 * before each further packet. Handles a lost connection itself (ops->lost, reconnect). */
void link__io(struct link *l, short revents, bool reading, int burst, bool (*keep_reading)(void *obj));

/* Publishes j (compact JSON) at QoS 1. 0, or -1 (logged: the message is dropped). */
int link__publish_json(struct link *l, const char *topic, const json_t *j, const mosquitto_property *props, int *mid);
/* A clean MQTT disconnect, waiting up to wait_ms for what is queued to go out. */
void link__disconnect(struct link *l, int wait_ms);

#endif
