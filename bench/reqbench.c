/*
 * mqchat-reqbench: request round-trip times of the bridge's API (benchmark scenario 3).
 *
 *   mqchat-reqbench --port P --user U --password PW --request JSON [--requests N (2000)]
 *                   [--warmup W (100)] [--host H] [--qos Q (1)] [--label L] [--timeout-ms T]
 *
 * One MQTT 5 client (client id "<user>:bench") subscribes chat/users/<user>/res/bench and
 * sends the same request W + N times to chat/users/<user>/req, one in flight: each names
 * that response topic and carries its sequence number as correlation data; the round trip
 * is CLOCK_MONOTONIC from just before the publish to the arrival of the answer with the same
 * correlation data. The first W are not measured. Every answer must be {"ok": true, ...}:
 * a refusal is counted as an error (and the first one printed), a missing answer after
 * --timeout-ms ends the run with exit status 1.
 *
 * Output: a human line on stderr ("# label: ...") and one JSON line on stdout:
 *   {"label":..,"n":..,"errors":..,"p50_us":..,"p99_us":..,"p999_us":..,"max_us":..,
 *    "mean_us":..,"result":"<what the last answer held: messages/more or total/unread>"}
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

struct bench {
	const char *user;
	char res_topic[160];
	bool connected, subscribed, got;
	int connect_rc;
	uint64_t want_corr;   /* the correlation number the current request carries */
	uint64_t t_answer;    /* when its answer arrived */
	bool answer_ok;
	char first_error[512];
	char result[160];
	unsigned long errors;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
	fprintf(stderr, "usage: mqchat-reqbench --port P --user U --password PW --request JSON [--requests N (2000)]\n"
			"                       [--warmup W (100)] [--host H (127.0.0.1)] [--qos Q (1)] [--label L]\n"
			"                       [--timeout-ms T (5000)]\n");
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	(void)mosq;
	(void)flags;
	(void)props;
	struct bench *b = obj;
	b->connect_rc = rc;
	b->connected = rc == 0;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted,
		const mosquitto_property *props)
{
	(void)mosq;
	(void)mid;
	(void)props;
	struct bench *b = obj;
	if(n < 1 || granted[0] > 2){
		fprintf(stderr, "mqchat-reqbench: the broker refused the subscription to %s\n", b->res_topic);
		exit(1);
	}
	b->subscribed = true;
}

/* What the answer held, in a few words, for the record. */
static void describe(struct bench *b, json_t *res)
{
	json_t *msgs = json_object_get(res, "messages");
	if(json_is_array(msgs)){
		snprintf(b->result, sizeof(b->result), "%zu messages, more %s", json_array_size(msgs),
				json_is_true(json_object_get(res, "more")) ? "true" : "false");
	}else if(json_is_integer(json_object_get(res, "total"))){
		snprintf(b->result, sizeof(b->result), "total %" JSON_INTEGER_FORMAT ", unread %" JSON_INTEGER_FORMAT,
				json_integer_value(json_object_get(res, "total")), json_integer_value(json_object_get(res, "unread")));
	}else{
		snprintf(b->result, sizeof(b->result), "an answer without messages or total");
	}
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	(void)mosq;
	struct bench *b = obj;
	uint64_t now = mono_ns(), corr = 0;
	void *data = NULL;
	uint16_t len = 0;

	mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &data, &len, false);
	if(data && len == sizeof(corr)) memcpy(&corr, data, sizeof(corr));
	free(data);
	if(len != sizeof(corr) || corr != b->want_corr){
		fprintf(stderr, "mqchat-reqbench: an answer on %s with unexpected correlation data (%u bytes); ignored\n",
				msg->topic, len);
		return;
	}
	b->t_answer = now;
	b->got = true;
	json_t *j = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, NULL);
	b->answer_ok = json_is_true(json_object_get(j, "ok"));
	if(b->answer_ok){
		describe(b, json_object_get(j, "result"));
	}else{
		if(!b->errors++){
			snprintf(b->first_error, sizeof(b->first_error), "%.*s", msg->payloadlen, (const char *)msg->payload);
		}
	}
	json_decref(j);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)n + 0.999999);
	if(i < 1) i = 1;
	if(i > n) i = n;
	return (double)v[i - 1] / 1000.0;
}

/* Runs mosquitto_loop until *flag or the deadline; 0, or -1 (printed). */
static int loop_until(struct mosquitto *mosq, bool *flag, uint64_t deadline, const char *what)
{
	while(!*flag){
		int rc = mosquitto_loop(mosq, 100, 1);
		if(rc != MOSQ_ERR_SUCCESS){
			fprintf(stderr, "mqchat-reqbench: connection lost waiting for %s: %s\n", what, mosquitto_strerror(rc));
			return -1;
		}
		if(mono_ns() > deadline){
			fprintf(stderr, "mqchat-reqbench: no %s within the timeout\n", what);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *password = NULL, *request = NULL, *label = "reqbench";
	int port = 0, qos = 1;
	unsigned long n = 2000, warmup = 100, timeout_ms = 5000;
	struct bench b = { 0 };
	struct mosquitto *mosq = NULL;
	uint64_t *rtt = NULL;
	char req_topic[160], client_id[160];
	int status = 1;

	for(int i = 1; i < argc; i++){
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if(!v){
			usage();
			return 2;
		}
		if(!strcmp(a, "--host")) host = v;
		else if(!strcmp(a, "--port")) port = atoi(v);
		else if(!strcmp(a, "--user")) b.user = v;
		else if(!strcmp(a, "--password")) password = v;
		else if(!strcmp(a, "--request")) request = v;
		else if(!strcmp(a, "--label")) label = v;
		else if(!strcmp(a, "--qos")) qos = atoi(v);
		else if(!strcmp(a, "--requests")) n = strtoul(v, NULL, 10);
		else if(!strcmp(a, "--warmup")) warmup = strtoul(v, NULL, 10);
		else if(!strcmp(a, "--timeout-ms")) timeout_ms = strtoul(v, NULL, 10);
		else{
			fprintf(stderr, "mqchat-reqbench: unknown option %s\n", a);
			usage();
			return 2;
		}
		i++;
	}
	if(!b.user || !password || !request || port < 1 || port > 65535 || n < 1 || qos < 0 || qos > 2
			|| strlen(b.user) > 64){
		fprintf(stderr, "mqchat-reqbench: --port, --user (at most 64 characters), --password and --request are "
				"required; --requests >= 1; --qos 0..2\n");
		usage();
		return 2;
	}
	json_t *check = json_loads(request, 0, NULL);
	if(!json_is_object(check)){
		fprintf(stderr, "mqchat-reqbench: --request is not a JSON object: %s\n", request);
		json_decref(check);
		return 2;
	}
	json_decref(check);
	snprintf(b.res_topic, sizeof(b.res_topic), "chat/users/%s/res/bench", b.user);
	snprintf(req_topic, sizeof(req_topic), "chat/users/%s/req", b.user);
	snprintf(client_id, sizeof(client_id), "%s:bench", b.user);
	rtt = malloc(n * sizeof(*rtt));
	if(!rtt){
		fprintf(stderr, "mqchat-reqbench: out of memory for %lu samples\n", n);
		return 1;
	}

	mosquitto_lib_init();
	mosq = mosquitto_new(client_id, true, &b);
	if(!mosq) goto done;
	mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_username_pw_set(mosq, b.user, password);
	mosquitto_connect_v5_callback_set(mosq, on_connect);
	mosquitto_subscribe_v5_callback_set(mosq, on_subscribe);
	mosquitto_message_v5_callback_set(mosq, on_message);
	int rc = mosquitto_connect_bind_v5(mosq, host, port, 60, NULL, NULL);
	if(rc){
		fprintf(stderr, "mqchat-reqbench: cannot connect to %s:%d: %s\n", host, port,
				rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		goto done;
	}
	uint64_t timeout_ns = (uint64_t)timeout_ms * 1000000u;
	b.connect_rc = -1;
	while(!b.connected){
		if(mosquitto_loop(mosq, 100, 1) != MOSQ_ERR_SUCCESS || b.connect_rc > 0){
			fprintf(stderr, "mqchat-reqbench: %s:%d refused %s: %s\n", host, port, b.user,
					b.connect_rc > 0 ? mosquitto_reason_string(b.connect_rc) : "connection lost");
			goto done;
		}
	}
	if(mosquitto_subscribe_v5(mosq, NULL, b.res_topic, qos, 0, NULL)
			|| loop_until(mosq, &b.subscribed, mono_ns() + timeout_ns, "SUBACK")){
		goto done;
	}

	for(uint64_t i = 0; i < warmup + n; i++){
		mosquitto_property *props = NULL;
		if(mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, b.res_topic)
				|| mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, &i, sizeof(i))){
			fprintf(stderr, "mqchat-reqbench: out of memory for properties\n");
			goto done;
		}
		b.want_corr = i;
		b.got = false;
		uint64_t t0 = mono_ns();
		rc = mosquitto_publish_v5(mosq, NULL, req_topic, (int)strlen(request), request, qos, false, props);
		mosquitto_property_free_all(&props);
		if(rc){
			fprintf(stderr, "mqchat-reqbench: publishing request %" PRIu64 " failed: %s\n", i, mosquitto_strerror(rc));
			goto done;
		}
		char what[64];
		snprintf(what, sizeof(what), "answer to request %" PRIu64, i);
		if(loop_until(mosq, &b.got, t0 + timeout_ns, what)) goto done;
		if(i >= warmup) rtt[i - warmup] = b.t_answer - t0;
		else if(!b.answer_ok) b.errors--; /* warm-up refusals are reported, not counted */
	}

	qsort(rtt, n, sizeof(*rtt), cmp_u64);
	double sum = 0;
	for(unsigned long i = 0; i < n; i++) sum += (double)rtt[i];
	fprintf(stderr, "# %s: %lu requests, %lu errors, round trip p50/p99/p99.9/max %.0f/%.0f/%.0f/%.0f us; last answer: %s\n",
			label, n, b.errors, pct(rtt, n, 0.5), pct(rtt, n, 0.99), pct(rtt, n, 0.999), (double)rtt[n - 1] / 1000.0,
			b.result);
	if(b.first_error[0]) fprintf(stderr, "# %s: first refusal: %s\n", label, b.first_error);
	json_t *out = json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:s}", "label", label, "n", (json_int_t)n,
			"errors", (json_int_t)b.errors, "p50_us", pct(rtt, n, 0.5), "p99_us", pct(rtt, n, 0.99),
			"p999_us", pct(rtt, n, 0.999), "max_us", (double)rtt[n - 1] / 1000.0, "mean_us", sum / (double)n / 1000.0,
			"result", b.result);
	char *s = out ? json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	if(s) printf("%s\n", s);
	free(s);
	json_decref(out);
	status = b.errors ? 1 : 0;
	mosquitto_disconnect_v5(mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
done:
	if(mosq) mosquitto_destroy(mosq);
	mosquitto_lib_cleanup();
	free(rtt);
	return status;
}
