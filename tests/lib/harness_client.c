/*
 * harness_client.c: MQTT clients: connect, subscribe, publish, wait, correlation data
 * (see harness.h for the contract).
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


/* ------------------------------------------------------------ clients */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	h_client *c = obj;

	(void)flags; (void)props;
	pthread_mutex_lock(&c->mu);
	c->connack_seen = true;
	c->connack_rc = rc;
	c->connected = rc == 0;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	/* A refused client must not reconnect: make the network loop end. */
	if(rc != 0) mosquitto_disconnect(mosq);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
	h_client *c = obj;

	(void)mosq; (void)rc; (void)props;
	pthread_mutex_lock(&c->mu);
	c->connected = false;
	c->disconnected = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void record_ack(h_client *c, int mid, int rc)
{
	pthread_mutex_lock(&c->mu);
	c->acks[c->ack_next % H_ACKS] = (struct h_ack){ .mid = mid, .rc = rc, .used = true };
	c->ack_next++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason, const mosquitto_property *props)
{
	(void)mosq; (void)props;
	record_ack(obj, mid, reason);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted,
		const mosquitto_property *props)
{
	(void)mosq; (void)props;
	record_ack(obj, mid, qos_count > 0 ? granted[0] : -1);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	h_client *c = obj;
	h_msg *m = calloc(1, sizeof(*m));

	(void)mosq; (void)props;
	if(!m) return;
	m->topic = strdup(msg->topic);
	m->payload = malloc((size_t)msg->payloadlen + 1);
	if(!m->topic || !m->payload) {
		h_msg_free(m);
		return;
	}
	if(msg->payloadlen) memcpy(m->payload, msg->payload, (size_t)msg->payloadlen);
	m->payload[msg->payloadlen] = '\0';
	m->len = msg->payloadlen;
	m->qos = msg->qos;
	m->retain = msg->retain;
	pthread_mutex_lock(&c->mu);
	if(c->tail) c->tail->next = m;
	else c->head = m;
	c->tail = m;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void hx_client_free(h_client *c)
{
	h_msg *m = c->head;

	while(m) {
		h_msg *n = m->next;
		h_msg_free(m);
		m = n;
	}
	if(c->mosq) mosquitto_destroy(c->mosq);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

h_client *h_connect(h_env *env, const char *user, const char *password, const char *client_id,
		int protocol, int *reason)
{
	h_client *c = calloc(1, sizeof(*c));
	struct timespec ts;
	int rc, dummy;

	if(!reason) reason = &dummy;
	*reason = -1;
	if(!c) return NULL;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->env = env;
	c->protocol = protocol;
	snprintf(c->id, sizeof(c->id), "%s", client_id ? client_id : user ? user : "h-anon");
	/* An empty id is libmosquitto's to make up: mosquitto_new("") fails in 2.0.11 after
	 * zeroing its socket pair fields, and its cleanup then closes fd 0 (our stdin). */
	c->mosq = mosquitto_new(c->id[0] ? c->id : NULL, true, c);
	if(!c->mosq) goto fail;
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION,
			protocol == H_PROTO_V5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
	/* as real clients do (MQTT.js, paho): no Nagle delay on small packets */
	mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if(user && mosquitto_username_pw_set(c->mosq, user, password)) goto fail;
	mosquitto_connect_v5_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(c->mosq, on_publish);
	mosquitto_subscribe_v5_callback_set(c->mosq, on_subscribe);
	mosquitto_message_v5_callback_set(c->mosq, on_message);
	rc = mosquitto_connect_bind_v5(c->mosq, "127.0.0.1", env->port, 30, NULL, NULL);
	if(rc) {
		fprintf(stderr, "harness: connect %s to port %d: %s\n", c->id, env->port, mosquitto_strerror(rc));
		goto fail;
	}
	if(mosquitto_loop_start(c->mosq)) goto fail;
	hx_abstime_in(&ts, 10000);
	pthread_mutex_lock(&c->mu);
	while(!c->connack_seen && !c->disconnected) {
		if(pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
	}
	if(c->connack_seen) *reason = c->connack_rc;
	rc = c->connack_seen && c->connack_rc == 0;
	pthread_mutex_unlock(&c->mu);
	if(!rc) {
		mosquitto_disconnect(c->mosq);
		mosquitto_loop_stop(c->mosq, false);
		goto fail;
	}
	*reason = 0;
	c->next = env->clients;
	env->clients = c;
	return c;
fail:
	hx_client_free(c);
	return NULL;
}

void h_client_close(h_client *c)
{
	h_client **pp;

	if(!c) return;
	for(pp = &c->env->clients; *pp; pp = &(*pp)->next) {
		if(*pp == c) {
			*pp = c->next;
			break;
		}
	}
	mosquitto_disconnect(c->mosq);
	mosquitto_loop_stop(c->mosq, false);
	hx_client_free(c);
}

bool h_client_connected(h_client *c)
{
	bool up;

	pthread_mutex_lock(&c->mu);
	up = c->connected;
	pthread_mutex_unlock(&c->mu);
	return up;
}

/* Waits for the ack of mid. Returns its code, -2 if the connection dropped first, -1 on timeout. */
int hx_wait_ack(h_client *c, int mid, int timeout_ms)
{
	struct timespec ts;
	int ret = -1;

	hx_abstime_in(&ts, timeout_ms);
	pthread_mutex_lock(&c->mu);
	for(;;) {
		bool found = false;
		for(int i = 0; i < H_ACKS; i++) {
			if(c->acks[i].used && c->acks[i].mid == mid) {
				ret = c->acks[i].rc;
				c->acks[i].used = false;
				found = true;
				break;
			}
		}
		if(found) break;
		if(!c->connected) {
			ret = -2;
			break;
		}
		if(pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

int h_subscribe(h_client *c, const char *filter, int qos)
{
	int mid = 0, rc;

	rc = mosquitto_subscribe_v5(c->mosq, &mid, filter, qos, 0, NULL);
	if(rc) {
		fprintf(stderr, "harness: subscribe %s as %s: %s\n", filter, c->id, mosquitto_strerror(rc));
		return -1;
	}
	return hx_wait_ack(c, mid, 10000);
}

int h_publish(h_client *c, const char *topic, const void *payload, int len, int qos, bool retain,
		const mosquitto_property *props)
{
	int mid = 0, rc;

	rc = mosquitto_publish_v5(c->mosq, &mid, topic, len, payload, qos, retain,
			c->protocol == H_PROTO_V5 ? props : NULL);
	if(rc) {
		fprintf(stderr, "harness: publish %s as %s: %s\n", topic, c->id, mosquitto_strerror(rc));
		return -1;
	}
	if(qos == 0) return 0;
	rc = hx_wait_ack(c, mid, 10000);
	/* Success codes below 0x80 (e.g. 0x10 "no matching subscribers", which every send
	 * gets: nobody subscribes to a send topic) all mean accepted. */
	return rc >= 0 && rc < 0x80 ? 0 : rc;
}

int h_publish_raw_rc(h_client *c, const char *topic, const char *payload)
{
	int mid = 0, rc;

	rc = mosquitto_publish_v5(c->mosq, &mid, topic, (int)strlen(payload), payload, 1, false, NULL);
	if(rc) {
		fprintf(stderr, "harness: publish %s as %s: %s\n", topic, c->id, mosquitto_strerror(rc));
		return -1;
	}
	return hx_wait_ack(c, mid, 10000);
}

int h_publish_str(h_client *c, const char *topic, const char *payload, int qos)
{
	return h_publish(c, topic, payload, (int)strlen(payload), qos, false, NULL);
}

h_msg *h_wait_message(h_client *c, int timeout_ms)
{
	struct timespec ts;
	h_msg *m;

	hx_abstime_in(&ts, timeout_ms);
	pthread_mutex_lock(&c->mu);
	while(!c->head) {
		if(pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
	}
	m = c->head;
	if(m) {
		c->head = m->next;
		if(!c->head) c->tail = NULL;
		m->next = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	return m;
}

json_t *h_wait_json(h_client *c, int timeout_ms, char *topic_out)
{
	h_msg *m = h_wait_message(c, timeout_ms);
	json_error_t err;
	json_t *j;

	if(!m) return NULL;
	if(topic_out) snprintf(topic_out, 256, "%s", m->topic);
	j = json_loadb(m->payload, (size_t)m->len, 0, &err);
	if(!j || !json_is_object(j)) {
		fprintf(stderr, "harness: %s got a non-JSON payload on %s: %s\n", c->id, m->topic, m->payload);
		json_decref(j);
		j = NULL;
	}
	h_msg_free(m);
	return j;
}

json_t *h_expect_chat_at(const char *file, int line, h_client *c, const char *room, const char *from,
		const char *body, int timeout_ms)
{
	char topic[256], want[256];
	json_t *j = h_wait_json(c, timeout_ms, topic);
	const char *f, *b, *r;

	if(!j) {
		h_fail(file, line, "%s: no chat message from %s in room %s within %d ms", c->id, from, room, timeout_ms);
		return NULL;
	}
	h_topic_messages(want, room);
	f = json_string_value(json_object_get(j, "from"));
	b = json_string_value(json_object_get(j, "body"));
	r = json_string_value(json_object_get(j, "room"));
	if(strcmp(topic, want) || !f || strcmp(f, from) || !r || strcmp(r, room) || (body && (!b || strcmp(b, body)))) {
		char *text = json_dumps(j, JSON_COMPACT);
		h_fail(file, line, "%s: expected a message from %s in %s (body \"%s\"), got on %s: %s", c->id, from,
				room, body ? body : "*", topic, text ? text : "?");
		free(text);
		json_decref(j);
		return NULL;
	}
	return j;
}

h_msg *h_expect_no_message(h_client *c, int window_ms)
{
	h_msg *m = h_wait_message(c, window_ms);

	if(m) fprintf(stderr, "harness: %s got an unexpected message on %s: %.300s\n", c->id, m->topic, m->payload);
	return m;
}

int h_drain(h_client *c, int settle_ms)
{
	int n = 0;
	h_msg *m;

	while((m = h_wait_message(c, settle_ms)) != NULL) {
		h_msg_free(m);
		n++;
	}
	return n;
}

void h_msg_free(h_msg *m)
{
	if(!m) return;
	free(m->topic);
	free(m->payload);
	free(m);
}

/* ------------------------------------------------------------ MQTT 5 correlation data (appended) */

#include <mqtt_protocol.h>

/* A received message with its correlation data in the same allocation: h_msg_free's
 * free(m) releases all of it, so these messages need no other free function. */
struct h_msg_corr {
	h_msg m;            /* first: an h_msg * to this struct is the struct */
	int corr_len;       /* -1: none */
	unsigned char corr[];
};

static void on_message_corr(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	h_client *c = obj;
	void *corr = NULL;
	uint16_t corr_len = 0;
	struct h_msg_corr *mc;

	(void)mosq;
	if(!mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corr_len, false)) corr = NULL;
	mc = calloc(1, sizeof(*mc) + (corr ? corr_len : 0));
	if(!mc) {
		free(corr);
		return;
	}
	mc->corr_len = corr ? corr_len : -1;
	if(corr && corr_len) memcpy(mc->corr, corr, corr_len);
	free(corr);
	mc->m.topic = strdup(msg->topic);
	mc->m.payload = malloc((size_t)msg->payloadlen + 1);
	if(!mc->m.topic || !mc->m.payload) {
		h_msg_free(&mc->m);
		return;
	}
	if(msg->payloadlen) memcpy(mc->m.payload, msg->payload, (size_t)msg->payloadlen);
	mc->m.payload[msg->payloadlen] = '\0';
	mc->m.len = msg->payloadlen;
	mc->m.qos = msg->qos;
	mc->m.retain = msg->retain;
	mc->m.corr_kept = true;
	pthread_mutex_lock(&c->mu);
	if(c->tail) c->tail->next = &mc->m;
	else c->head = &mc->m;
	c->tail = &mc->m;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void h_client_keep_correlation(h_client *c)
{
	mosquitto_message_v5_callback_set(c->mosq, on_message_corr);
}

int h_msg_correlation(const h_msg *m, char *out, size_t outlen)
{
	size_t n;

	/* only a message received after h_client_keep_correlation has the block after it */
	if(!m->corr_kept) return -1;
	const struct h_msg_corr *mc = (const struct h_msg_corr *)m;
	if(mc->corr_len < 0) return -1;
	if(outlen) {
		n = (size_t)mc->corr_len < outlen - 1 ? (size_t)mc->corr_len : outlen - 1;
		memcpy(out, mc->corr, n);
		out[n] = '\0';
	}
	return mc->corr_len;
}

