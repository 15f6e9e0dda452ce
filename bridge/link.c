/*
 * link.c: one MQTT connection of the bridge (link.h).
 */
#include <errno.h>
#include <poll.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <mqtt_protocol.h>

#include "bridge.h"
#include "link.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	(void)mosq;
	(void)props;
	struct link *l = obj;
	if(rc){
		/* logged by link_down, with the retry delay, when the loop fails next */
		snprintf(l->refusal, sizeof(l->refusal), "refused the %s connection as %s (%s)", l->name,
				l->cfg->user, mosquitto_reason_string(rc));
		return;
	}
	l->connected = true;
	l->backoff_ms = 0;
	bridge__log(BLOG_INFO, "mqtt", "%s connection up: %s:%d as %s, client id %s (%s session)", l->name,
			l->cfg->host, l->cfg->port, l->cfg->user, l->client_id, (flags & 1) ? "resumed" : "new");
	rc = mosquitto_subscribe_v5(mosq, &l->sub_mid, l->sub, 0, 0, NULL);
	if(rc){
		bridge__log(BLOG_ERROR, "mqtt", "subscribing to %s failed: %s; reconnecting", l->sub, mosquitto_strerror(rc));
		mosquitto_disconnect_v5(mosq, MQTT_RC_UNSPECIFIED, NULL);
	}
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	(void)mosq;
	struct link *l = obj;
	l->ops->message(l->obj, msg, props);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted,
		const mosquitto_property *props)
{
	(void)props;
	struct link *l = obj;
	if(mid != l->sub_mid) return;
	if(qos_count < 1 || granted[0] > 2){
		bridge__log(BLOG_ERROR, "mqtt", "broker refused the subscription to %s (reason 0x%02x): is %s the plugin's "
				"service user? disconnecting to retry", l->sub, qos_count < 1 ? 0x80 : granted[0], l->cfg->user);
		l->failure_logged = true;
		mosquitto_disconnect_v5(mosq, MQTT_RC_UNSPECIFIED, NULL);
		return;
	}
	l->ops->ready(l->obj);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason, const mosquitto_property *props)
{
	(void)mosq;
	(void)reason;
	(void)props;
	struct link *l = obj;
	if(l->ops->published) l->ops->published(l->obj, mid);
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
	(void)mosq;
	struct link *l = obj;
	if(level == MOSQ_LOG_DEBUG) bridge__log(BLOG_DEBUG, "libmosquitto", "%s: %s", l->name, str);
}

int link__init(struct link *l, const char *name, const struct bridge_config *cfg, const char *client_id,
		const char *sub, const struct link_ops *ops, void *obj)
{
	memset(l, 0, sizeof(*l));
	l->name = name;
	l->cfg = cfg;
	l->ops = ops;
	l->obj = obj;
	l->rand_state = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)l;
	if(!(l->client_id = strdup(client_id)) || !(l->sub = strdup(sub))) goto nomem;
	l->mosq = mosquitto_new(l->client_id, false, l);
	if(!l->mosq) goto nomem;
	mosquitto_int_option(l->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	/* Without it an answer waits behind the PUBACK of its request for the broker's delayed
	 * ACK (Nagle): every request took 40 ms more (measured by bench/scenario3.sh). */
	mosquitto_int_option(l->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if(mosquitto_username_pw_set(l->mosq, cfg->user, cfg->password)) goto nomem;
	if(mosquitto_property_add_int32(&l->connect_props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0xFFFFFFFFu)) goto nomem;
	/* Receive Maximum: how many QoS 1 messages the broker may send before our PUBACKs. Its
	 * default (max_inflight_messages, 20) starved the bridge under load: 800 msg/s while
	 * clients published 40,000 msg/s (bench/scenario2.sh). mosquitto 2.0 takes the
	 * client's value instead. The plugin's store window keeps what is in flight below it. */
	if(mosquitto_property_add_int16(&l->connect_props, MQTT_PROP_RECEIVE_MAXIMUM, (uint16_t)cfg->receive_maximum)) goto nomem;
	mosquitto_connect_v5_callback_set(l->mosq, on_connect);
	mosquitto_subscribe_v5_callback_set(l->mosq, on_subscribe);
	mosquitto_message_v5_callback_set(l->mosq, on_message);
	mosquitto_publish_v5_callback_set(l->mosq, on_publish);
	if(bridge__log_enabled(BLOG_DEBUG)) mosquitto_log_callback_set(l->mosq, on_log);
	return 0;
nomem:
	bridge__log(BLOG_ERROR, "mqtt", "out of memory setting up the %s connection", name);
	link__free(l);
	return -1;
}

void link__free(struct link *l)
{
	if(l->mosq) mosquitto_destroy(l->mosq);
	mosquitto_property_free_all(&l->connect_props);
	free(l->client_id);
	free(l->sub);
	l->mosq = NULL;
	l->client_id = NULL;
	l->sub = NULL;
}

/* Picks the next attempt's time; logs `failure` (the whole sentence) with the delay, or
 * only the delay when failure is NULL (already logged). */
static void schedule_reconnect(struct link *l, const char *failure)
{
	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
	if(l->backoff_ms > BACKOFF_MAX_MS) l->backoff_ms = BACKOFF_MAX_MS;
	/* jitter: between half and all of the backoff, so restarted bridges do not march in step */
	int64_t delay = l->backoff_ms / 2 + (int64_t)(rand_r(&l->rand_state) % (unsigned)(l->backoff_ms / 2 + 1));
	l->next_connect_at = bridge__mono_ms() + delay;
	if(failure){
		bridge__log(BLOG_WARN, "mqtt", "%s; retrying in %" PRId64 " ms", failure, delay);
	}else{
		bridge__log(BLOG_INFO, "mqtt", "%s connection: retrying in %" PRId64 " ms", l->name, delay);
	}
}

static void link_down(struct link *l, int rc)
{
	bool was_up = l->connected;
	char why[128], msg[512];
	snprintf(why, sizeof(why), "%s", rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	size_t wl = strlen(why);
	if(wl && why[wl - 1] == '.') why[wl - 1] = '\0';
	mosquitto_disconnect(l->mosq); /* closes the socket if libmosquitto left it open */
	l->tcp_up = l->connected = false;
	if(l->refusal[0]){
		snprintf(msg, sizeof(msg), "broker %s:%d %s", l->cfg->host, l->cfg->port, l->refusal);
	}else{
		snprintf(msg, sizeof(msg), "%s the %s connection to %s:%d: %s", was_up ? "lost" : "failed to open",
				l->name, l->cfg->host, l->cfg->port, why);
	}
	schedule_reconnect(l, l->failure_logged ? NULL : msg);
	l->failure_logged = false;
	l->refusal[0] = '\0';
	l->ops->lost(l->obj);
}

void link__maybe_connect(struct link *l)
{
	if(l->tcp_up || bridge__mono_ms() < l->next_connect_at) return;
	int rc = mosquitto_connect_bind_v5(l->mosq, l->cfg->host, l->cfg->port, l->cfg->keepalive, NULL, l->connect_props);
	if(rc != MOSQ_ERR_SUCCESS){
		char msg[512];
		snprintf(msg, sizeof(msg), "cannot open the %s connection to %s:%d: %s", l->name, l->cfg->host, l->cfg->port,
				rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		schedule_reconnect(l, msg);
		return;
	}
	l->tcp_up = true;
	l->failure_logged = false;
}

int link__fd(struct link *l, bool reading, short *events)
{
	int sock = l->tcp_up ? mosquitto_socket(l->mosq) : -1;
	*events = 0;
	if(sock < 0) return -1;
	if(reading) *events |= POLLIN;
	if(mosquitto_want_write(l->mosq)) *events |= POLLOUT;
	return sock;
}

int64_t link__timeout_ms(const struct link *l)
{
	if(l->tcp_up) return -1;
	int64_t d = l->next_connect_at - bridge__mono_ms();
	return d < 0 ? 0 : d;
}

void link__io(struct link *l, short revents, bool reading, int burst, bool (*keep_reading)(void *obj))
{
	int rc = MOSQ_ERR_SUCCESS;
	if(!l->tcp_up) return;
	/* An error or hang-up is reported even while not reading: read then too, so
	 * libmosquitto sees it and the loop does not spin on it. */
	if((reading && (revents & POLLIN)) || (revents & (POLLHUP | POLLERR | POLLNVAL))){
		rc = mosquitto_loop_read(l->mosq, 1);
		/* libmosquitto 2.0.11's loop reads one packet per call: read on while the socket
		 * has bytes waiting (perf: most of the bridge's time was in the kernel). */
		int sock = mosquitto_socket(l->mosq), avail = 0;
		for(int n = 0; rc == MOSQ_ERR_SUCCESS && n < burst && sock >= 0; n++){
			if(keep_reading && !keep_reading(l->obj)) break;
			if(ioctl(sock, FIONREAD, &avail) != 0 || avail <= 0) break;
			rc = mosquitto_loop_read(l->mosq, 1);
		}
	}
	if(rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(l->mosq)) rc = mosquitto_loop_write(l->mosq, 1);
	if(rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_misc(l->mosq);
	if(rc != MOSQ_ERR_SUCCESS) link_down(l, rc);
}

int link__publish_json(struct link *l, const char *topic, const json_t *j, const mosquitto_property *props, int *mid)
{
	char *s = json_dumps(j, JSON_COMPACT);
	if(!s){
		bridge__log(BLOG_ERROR, "mqtt", "out of memory serialising a message for %s; dropped", topic);
		return -1;
	}
	int rc = mosquitto_publish_v5(l->mosq, mid, topic, (int)strlen(s), s, 1, false, props);
	if(rc != MOSQ_ERR_SUCCESS){
		bridge__log(BLOG_ERROR, "mqtt", "publishing to %s on the %s connection failed: %s; dropped", topic, l->name,
				mosquitto_strerror(rc));
	}else{
		/* answers are not logged: a token.create answer carries a secret shown only once */
		if(strstr(topic, "/res")) bridge__log(BLOG_DEBUG, "mqtt", "published to %s: an answer of %zu bytes", topic, strlen(s));
		else bridge__log(BLOG_DEBUG, "mqtt", "published to %s: %s", topic, s);
	}
	free(s);
	return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

void link__disconnect(struct link *l, int wait_ms)
{
	if(!l->tcp_up) return;
	mosquitto_disconnect_v5(l->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
	int64_t until = bridge__mono_ms() + wait_ms;
	while(bridge__mono_ms() < until && mosquitto_loop(l->mosq, 100, 1) == MOSQ_ERR_SUCCESS){
	}
	l->tcp_up = l->connected = false;
}
