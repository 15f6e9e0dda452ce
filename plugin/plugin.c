/*
 * mqchat_plugin.so: the entry points. Options, init, cleanup, and the one table of events
 * the plugin registers (and unregisters, from the same table). Each event's handler lives
 * in its own file: auth.c, acl.c, message.c, control.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "plugin.h"

/* The plugin is built with hidden visibility; only the three entry points are exported. */
#define MQCHAT_EXPORT __attribute__((visibility("default")))

/* Mosquitto 2.0.11 has no MOSQUITTO_PLUGIN_DECLARE_VERSION; this is what it expands to. */
MQCHAT_EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

static const struct {
	int event;
	MOSQ_FUNC_generic_callback cb;
	const char *event_data;
} events[] = {
	{ MOSQ_EVT_BASIC_AUTH, auth__basic, NULL },
	{ MOSQ_EVT_ACL_CHECK, acl__check, NULL },
	{ MOSQ_EVT_MESSAGE, message__handle, NULL },
	{ MOSQ_EVT_CONTROL, control__handle, MQCHAT_CONTROL_TOPIC },
	{ MOSQ_EVT_TICK, tick__handle, NULL },
	{ MOSQ_EVT_DISCONNECT, disconnect__handle, NULL },
};
#define NEVENTS (sizeof(events) / sizeof(events[0]))

static int parse_uint(const char *key, const char *value, unsigned long long min,
		unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(value, &end, 10);
	if(errno || end == value || *end || value[0] == '-' || v < min || v > max){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_%s = '%s' is not a whole number in %llu..%llu",
				key, value, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if(s){
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

static int set_str(char **dst, const char *value)
{
	free(*dst);
	*dst = strdup(value);
	return *dst ? 0 : -1;
}

/* The numeric options: plugin_opt_<name>, parsed into the field at off (unsigned or size_t),
 * within min..max. mosquitto.conf.example explains each, with its default (set below). */
#define OPT_U(name, field, min, max) { name, offsetof(struct options, field), sizeof(((struct options *)0)->field), min, max }
static const struct num_opt {
	const char *name;
	size_t off, size;
	unsigned long long min, max;
} num_opts[] = {
	OPT_U("max_body", limits.max_body, 1, 16u << 20),
	OPT_U("max_payload", limits.max_payload, 64, 256u << 20),
	OPT_U("reload_interval_ms", reload_interval_ms, 50, 3600000),
	OPT_U("auth_hash_budget_ms", auth_hash_budget_ms, 1, 1000),
	OPT_U("unconfirmed_max_messages", unconfirmed_max_messages, 100, 100000000),
	OPT_U("unconfirmed_max_bytes", unconfirmed_max_bytes, 1u << 20, 1ULL << 40),
	OPT_U("store_window_messages", store_window_messages, 1, 65535),
	OPT_U("store_window_bytes", store_window_bytes, 65536, 1ULL << 32),
	OPT_U("send_rate", send_rate, 0, 1000000),
	OPT_U("send_burst", send_burst, 1, 1000000),
	OPT_U("send_bytes_rate", send_bytes_rate, 0, 1u << 30),
	OPT_U("send_bytes_burst", send_bytes_burst, 1, 1u << 30),
	OPT_U("request_rate", request_rate, 0, 1000000),
	OPT_U("request_burst", request_burst, 1, 1000000),
	OPT_U("max_connections_per_user", max_connections_per_user, 0, 1000000),
	OPT_U("max_subscriptions", max_subscriptions, 0, 1000000),
	OPT_U("max_res_topic", max_res_topic, 1, 65535),
	OPT_U("dedupe_window_s", dedupe_window_s, 1, 86400),
	OPT_U("dedupe_max", dedupe_max, 0, 100000000),
};

static int parse_options(struct options *o, struct mosquitto_opt *opts, int n)
{
	unsigned long long v;

	o->limits.max_body = MQC_MSG_DEFAULT_MAX_BODY;
	o->limits.max_payload = MQC_MSG_DEFAULT_MAX_PAYLOAD;
	o->reload_interval_ms = 1000;
	o->auth_hash_budget_ms = 250;
	o->clientid_policy = CLIENTID_OWNED;
	o->unconfirmed_max_messages = 200000;
	o->unconfirmed_max_bytes = 64u * 1024 * 1024;
	o->store_window_messages = 20000;
	o->store_window_bytes = 16u * 1024 * 1024;
	o->send_rate = 50;
	o->send_burst = 200;
	o->send_bytes_rate = 128u * 1024;
	o->send_bytes_burst = 1024u * 1024;
	o->request_rate = 20;
	o->request_burst = 100;
	o->max_connections_per_user = 32;
	o->max_subscriptions = 64;
	o->max_res_topic = MQC_MAX_RES_TOPIC;
	o->dedupe_window_s = 300;
	o->dedupe_max = 100000;
	if(set_str(&o->prefix, "chat")) return -1;

	for(int i = 0; i < n; i++){
		const char *k = opts[i].key, *val = opts[i].value;
		int rc = 0;
		const struct num_opt *no = NULL;
		for(size_t j = 0; j < sizeof(num_opts) / sizeof(num_opts[0]); j++){
			if(!strcmp(k, num_opts[j].name)) no = &num_opts[j];
		}
		if(no){
			if(!(rc = parse_uint(k, val, no->min, no->max, &v))){
				char *field = (char *)o + no->off;
				if(no->size == sizeof(unsigned)) *(unsigned *)field = (unsigned)v;
				else *(size_t *)field = (size_t)v;
			}
		}else if(!strcmp(k, "db_path") || !strcmp(k, "db")){
			/* A SQLite path or a PostgreSQL URI. "db" is the same option, but Mosquitto 2.0.11
			 * refuses a plugin_opt_ name shorter than three characters ("Invalid auth_opt_
			 * config option"): configurations say db_path. */
			if(o->db_path && strcmp(o->db_path, val) != 0){
				mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_db_path (or plugin_opt_db, the same option) "
						"is given twice, with different values");
				rc = -1;
			}else rc = set_str(&o->db_path, val);
		}else if(!strcmp(k, "state_dir")) rc = set_str(&o->state_dir, val);
		else if(!strcmp(k, "service_user")) rc = set_str(&o->service_user, val);
		else if(!strcmp(k, "service_password")) rc = set_str(&o->service_password, val);
		else if(!strcmp(k, "topic_prefix")) rc = set_str(&o->prefix, val);
		else if(!strcmp(k, "idlease_path")) rc = set_str(&o->idlease_path, val);
		else if(!strcmp(k, "spool_path")) rc = set_str(&o->spool_path, val);
		else if(!strcmp(k, "clientid_policy")){
			if(!strcmp(val, "owned")) o->clientid_policy = CLIENTID_OWNED;
			else if(!strcmp(val, "prefix")) o->clientid_policy = CLIENTID_PREFIX;
			else if(!strcmp(val, "any")) o->clientid_policy = CLIENTID_ANY;
			else{
				mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_clientid_policy = '%s': expected owned, prefix or any", val);
				rc = -1;
			}
		}else if(!strncmp(k, "jwt_", 4)){
			/* jwt.c reads these */
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: unknown option plugin_opt_%s", k);
			rc = -1;
		}
		if(rc) return -1;
	}

	if(o->send_bytes_rate && o->send_bytes_burst < o->limits.max_payload){
		/* else a message of max_payload bytes could never be sent */
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_send_bytes_burst (%u) must be at least "
				"plugin_opt_max_payload (%zu)", o->send_bytes_burst, o->limits.max_payload);
		return -1;
	}
	if(o->store_window_bytes > o->unconfirmed_max_bytes) o->store_window_bytes = o->unconfirmed_max_bytes;
	if(!o->db_path || !*o->db_path){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_db_path is required: the SQLite database's path or a "
				"PostgreSQL URI, postgresql://...");
		return -1;
	}
	if(!o->service_user || !mqc_name_valid(o->service_user, strlen(o->service_user))){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_service_user is required and must match [A-Za-z0-9._-]{1,64}");
		return -1;
	}
	if(!o->service_password || strlen(o->service_password) < 12){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_service_password is required (at least 12 characters)");
		return -1;
	}
	if(!mqc_name_valid(o->prefix, strlen(o->prefix))){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_topic_prefix '%s' must be one topic level of [A-Za-z0-9._-]", o->prefix);
		return -1;
	}
	/* The plugin's own files: where they are named, else in state_dir, else next to a
	 * SQLite database. A PostgreSQL database has no "next to" on this machine. */
	if(o->state_dir && !*o->state_dir){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_state_dir is empty");
		return -1;
	}
	if(!o->state_dir && mqc_db_engine_of(o->db_path) == MQC_ENGINE_PG && (!o->idlease_path || !o->spool_path)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_db_path names a PostgreSQL database, so the plugin's own "
				"files (the id lease, the spool of unconfirmed messages) cannot go next to it: set plugin_opt_state_dir "
				"to a directory on this machine the broker can write (or %s)",
				!o->idlease_path && !o->spool_path ? "plugin_opt_idlease_path and plugin_opt_spool_path"
				: !o->idlease_path ? "plugin_opt_idlease_path" : "plugin_opt_spool_path");
		return -1;
	}
	if(!o->idlease_path){
		if(o->state_dir) o->idlease_path = concat(o->state_dir, "/mqchat.idlease");
		else o->idlease_path = concat(o->db_path, ".idlease");
		if(!o->idlease_path) return -1;
	}
	if(!o->spool_path){
		if(o->state_dir) o->spool_path = concat(o->state_dir, "/mqchat.spool");
		else o->spool_path = concat(o->db_path, ".spool");
		if(!o->spool_path) return -1;
	}
	return 0;
}

static void options_free(struct options *o)
{
	free(o->db_path);
	free(o->service_user);
	if(o->service_password){
		memset(o->service_password, 0, strlen(o->service_password));
		free(o->service_password);
	}
	free(o->prefix);
	free(o->state_dir);
	free(o->idlease_path);
	free(o->spool_path);
}

static void state_free(struct mqchat *st)
{
	if(!st) return;
	reload__stop(st);
	cache__free(st->cache);
	plugin__ctl_log_clear(st);
	free(st->ctl_log.items);
	token__log_clear(st);
	free(st->tok_log.items);
	jwt__free(st->jwt);
	plugin__pending_clear(st);
	feed__live_close(&st->feed);
	feed__free(&st->feed);
	qos2__free(&st->qos2);
	limits__dedupe_free(&st->dedupe);
	limits__free(st);
	free(st->req_cid);
	free(st->hot);
	tick__free(st);
	auth__owners_free(&st->owners);
	auth__free(st);
	options_free(&st->opt);
	free(st);
}

/* At start: the messages the last clean stop left unconfirmed (the spool), and what the
 * reload thread last recorded of a run that did not stop cleanly (feed.c). */
static int spool_open(struct mqchat *st)
{
	char reason[512], state[4096];
	uint64_t epoch, last, first;
	int n = feed__spool_load(&st->feed, st->opt.spool_path, reason, sizeof(reason));
	if(n < 0){
		/* Refusing to start would keep the broker down; starting without them loses them. */
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: LOST: %s; its messages are not replayed. Moving it aside "
				"to %s.bad", reason, st->opt.spool_path);
		snprintf(state, sizeof(state), "%s.bad", st->opt.spool_path);
		rename(st->opt.spool_path, state);
	}else if(n > 0){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: loaded %d unconfirmed messages from %s (the last stop); "
				"the bridge gets them first", n, st->opt.spool_path);
	}
	uint64_t lepoch, llast, lfirst;
	snprintf(state, sizeof(state), "%s.live", st->opt.spool_path);
	bool live = feed__live_read(state, &lepoch, &llast, &lfirst) == 0;
	snprintf(state, sizeof(state), "%s.state", st->opt.spool_path);
	bool checked = feed__state_read(state, &epoch, &last, &first) == 0;
	if(live && lepoch != st->feed.spool_epoch && (!checked || lepoch == epoch || epoch == st->feed.spool_epoch)){
		/* the live record is of the same run as the last check, or of a later one */
		st->feed.crashed_epoch = lepoch;
		st->feed.crashed_first = lfirst;
		st->feed.crashed_last = llast;
		st->feed.crashed_exact = true;
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: the previous broker run (epoch %" PRIu64 ") did not stop "
				"cleanly: it had stamped up to seq %" PRIu64 " and kept %" PRIu64 " not confirmed stored; the bridge's "
				"watermark will say how many are lost", lepoch, llast, llast >= lfirst ? llast - lfirst + 1 : 0);
	}else if(checked && epoch != st->feed.spool_epoch){
		st->feed.crashed_epoch = epoch;
		st->feed.crashed_first = first;
		st->feed.crashed_last = last;
		if(last >= first){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: the previous broker run (epoch %" PRIu64 ") did not stop "
					"cleanly: about %" PRIu64 " messages it had acknowledged were not confirmed stored at its last "
					"check; the bridge's watermark will say how many are lost", epoch, last - first + 1);
		}
	}
	/* This run's live record (after the spool: its messages are this epoch's first). */
	snprintf(state, sizeof(state), "%s.live", st->opt.spool_path);
	if(feed__live_open(&st->feed, state)){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: cannot map %s: %s; a broker crash will be counted from "
				"the reload thread's last check only", state, strerror(errno));
	}
	return 0;
}

/* At a clean stop: what the bridge has not confirmed goes to the spool, also when that is
 * nothing: the spool's epoch tells the next start that this run stopped cleanly. */
static void spool_close(struct mqchat *st)
{
	char reason[512];
	struct feed *f = &st->feed;
	if(feed__spool_save(f, st->opt.spool_path, reason, sizeof(reason))){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: LOST: %zu messages the bridge had not confirmed stored%s: %s",
				f->count, f->count ? "" : " (none)", reason);
		return;
	}
	if(f->count){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: saved %zu messages the bridge had not confirmed stored to %s; "
				"the next start sends them", f->count, st->opt.spool_path);
	}
}

MQCHAT_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *opts, int opt_count)
{
	char reason[512];
	size_t registered = 0;
	struct mqchat *st = calloc(1, sizeof(*st));
	if(!st) return MOSQ_ERR_NOMEM;
	st->identifier = identifier;

	if(parse_options(&st->opt, opts, opt_count)) goto fail;
	if(jwt__init(opts, opt_count, &st->jwt)) goto fail;

	if(mqc_topics_init(&st->topics, st->opt.prefix)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_topic_prefix '%s' must be one topic level of "
				"[A-Za-z0-9._-], at most %d characters", st->opt.prefix, MQC_TOPIC_PREFIX_MAX);
		goto fail;
	}
	st->prefix_len = strlen(st->opt.prefix);
	st->dedupe.max = st->opt.dedupe_max;
	st->dedupe.window_s = st->opt.dedupe_window_s;
	st->qos2.window_s = st->opt.dedupe_window_s;
	st->feed.max_messages = st->opt.unconfirmed_max_messages;
	st->feed.max_bytes = st->opt.unconfirmed_max_bytes;
	st->feed.window_messages = st->opt.store_window_messages;
	st->feed.window_bytes = st->opt.store_window_bytes;
	if(feed__init(&st->feed)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: no randomness for the feed's epoch");
		goto fail;
	}
	if(RAND_bytes(st->auth_key, sizeof(st->auth_key)) != 1){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: no randomness for the credential cache key");
		goto fail;
	}

	if(spool_open(st)) goto fail;
	if(reload__start(st, reason, sizeof(reason))){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: cannot start: %s", reason);
		goto fail;
	}

	for(registered = 0; registered < NEVENTS; registered++){
		if(mosquitto_callback_register(identifier, events[registered].event, events[registered].cb,
					events[registered].event_data, st) != MOSQ_ERR_SUCCESS){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: cannot register callback for event %d",
					events[registered].event);
			goto fail;
		}
	}

	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"mqchat: loaded %s (schema %d): %u users, %zu rooms, acl_version %lld, ids from %llu",
			st->db_name, mqc_schema_version_of(mqc_db_engine(st->reload_db)), st->cache->nusers, st->cache->rooms.len,
			(long long)st->cache->acl_version, (unsigned long long)st->ids.last);
	*userdata = st;
	return MOSQ_ERR_SUCCESS;

fail:
	while(registered-- > 0){
		mosquitto_callback_unregister(identifier, events[registered].event, events[registered].cb,
				events[registered].event_data);
	}
	state_free(st);
	return MOSQ_ERR_UNKNOWN;
}

MQCHAT_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)opts;
	(void)opt_count;
	struct mqchat *st = userdata;
	if(!st) return MOSQ_ERR_SUCCESS;
	for(size_t i = 0; i < NEVENTS; i++){
		mosquitto_callback_unregister(st->identifier, events[i].event, events[i].cb, events[i].event_data);
	}
	reload__stop(st); /* first: it deletes a consumed spool */
	spool_close(st);
	state_free(st);
	return MOSQ_ERR_SUCCESS;
}

/* ------------------------------------------------------------------ shared helpers */

void plugin__ctl_log_clear(struct mqchat *st)
{
	for(size_t i = 0; i < st->ctl_log.len; i++) room_update__free(&st->ctl_log.items[i]);
	st->ctl_log.len = 0;
}

/* Drops the rooms whose last message is confirmed from st->hot. */
static void hot_prune(struct mqchat *st)
{
	size_t k = 0;
	for(size_t i = 0; i < st->nhot; i++){
		if(st->hot[i]->last_seq >= st->feed.first_seq) st->hot[k++] = st->hot[i];
	}
	st->nhot = k;
}

void plugin__room_stamped(struct mqchat *st, struct cache_room *room, uint64_t seq)
{
	bool hot = room->last_seq >= st->feed.first_seq;
	room->last_seq = seq;
	if(hot) return;
	if(st->nhot == st->hot_cap) hot_prune(st);
	if(st->nhot == st->hot_cap){
		size_t cap = st->hot_cap ? st->hot_cap * 2 : 256;
		struct cache_room **h = realloc(st->hot, cap * sizeof(*h));
		if(!h) return; /* its mark is lost at the next swap: a request may not wait for it */
		st->hot = h;
		st->hot_cap = cap;
	}
	st->hot[st->nhot++] = room;
}

void plugin__swap_if_ready(struct mqchat *st)
{
	if(!atomic_load_explicit(&st->next_cache, memory_order_relaxed)) return;
	struct cache *next = atomic_exchange(&st->next_cache, NULL);
	if(!next) return;
	struct cache *old = st->cache;

	/* Control updates newer than the snapshot's read are replayed; cache__apply ignores
	 * the ones the snapshot already reflects (by room version). */
	for(size_t i = 0; i < st->ctl_log.len; i++){
		if(cache__apply(next, &st->ctl_log.items[i]) < 0){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: out of memory replaying room %s onto a new snapshot",
					st->ctl_log.items[i].room);
		}
	}
	plugin__ctl_log_clear(st);
	token__replay(st, next);

	/* Users disabled or deleted since the old snapshot lose their connections and their
	 * cached credentials; so do users whose password changed (a lost device: the change
	 * also revoked their tokens, and none of the user's sessions may outlive it; the
	 * cached MAC binds the stored hash, auth.c credential_mac, so it stops matching). */
	for(uint32_t i = 0; i < old->nusers; i++){
		struct cache_user *ou = old->users_by_idx[i];
		if(!ou->pwhash) continue;
		struct cache_user *nu = cache__user(next, ou->name, strlen(ou->name));
		bool gone = !nu || (nu->disabled && !ou->disabled);
		bool pw_changed = nu && nu->pwhash && strcmp(nu->pwhash, ou->pwhash) != 0;
		if(gone || pw_changed) auth__forget(st, ou->name);
		/* Not kicked here: this may run inside that very client's CONNECT, and a kick
		 * frees the context the broker is still using. acl.c refuses everything to a
		 * disabled user from now on; the tick disconnects it. */
		if((gone && !ou->disabled) || (pw_changed && !nu->disabled)){
			if(pw_changed && !gone){
				mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: the password of %s changed: closing its sessions",
						ou->name);
			}
			tick__kick_later(st, ou->name);
		}
	}

	/* A send the ACL check let through and MOSQ_EVT_MESSAGE has not stamped yet holds its
	 * room of the old snapshot, which the reload thread frees once it is handed back: the
	 * new snapshot's room, or none. (MESSAGE swaps first, so without this the stamp put a
	 * room of a freed snapshot into st->hot, and hot_prune read it: a broker SIGSEGV seen
	 * in it.pg.test_api_membership, where PostgreSQL's NOTIFY makes swaps land mid-send.) */
	if(st->pending.room){
		st->pending.room = cache__room(next, st->pending.room->id, strlen(st->pending.room->id));
	}
	/* Requests are marked with their room's last seq while it is unconfirmed (message.c):
	 * the new snapshot's rooms take it over. */
	hot_prune(st);
	for(size_t i = 0; i < st->nhot; i++){
		struct cache_room *nr = cache__room(next, st->hot[i]->id, strlen(st->hot[i]->id));
		if(nr) nr->last_seq = st->hot[i]->last_seq;
		st->hot[i] = nr;
	}
	size_t k = 0;
	for(size_t i = 0; i < st->nhot; i++) if(st->hot[i]) st->hot[k++] = st->hot[i];
	st->nhot = k;

	st->cache = next;
	token__after_swap(st);
	int64_t known = atomic_load(&st->known_acl_version);
	if(next->acl_version > known) atomic_store(&st->known_acl_version, next->acl_version);
	/* The thread frees it; if it has not taken the previous one yet, free it here. */
	cache__free(atomic_exchange(&st->retired_cache, old));
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: membership reloaded: %u users, %zu rooms, acl_version %lld",
			next->nusers, next->rooms.len, (long long)next->acl_version);
}

void plugin__log_repeated(struct log_repeat *lr, int level, const char *fmt, ...)
{
	int64_t now = mqc_now_ms();
	if(lr->last_ms && now - lr->last_ms < LOG_REPEAT_MS){
		lr->suppressed++;
		return;
	}
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if(lr->suppressed){
		mosquitto_log_printf(level, "%s (%u more times in the last %.0f s)", line, lr->suppressed,
				(double)(now - lr->last_ms) / 1000.0);
	}else{
		mosquitto_log_printf(level, "%s", line);
	}
	lr->last_ms = now;
	lr->suppressed = 0;
}

void plugin__log_client(struct mqchat *st, const char *fmt, ...)
{
	int64_t now = mqc_now_ms();
	if(now - st->log_window_ms >= 1000){
		if(st->log_suppressed){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: %u more refusals not logged in the last second",
					st->log_suppressed);
		}
		st->log_window_ms = now;
		st->log_lines = 0;
		st->log_suppressed = 0;
	}
	if(st->log_lines >= 20){
		st->log_suppressed++;
		return;
	}
	st->log_lines++;
	char line[1024], safe[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* These lines quote client input (JSON member names, topics): control bytes are
	 * escaped, so a client cannot forge log lines or send terminal escapes. */
	size_t o = 0;
	for(const unsigned char *c = (const unsigned char *)line; *c && o + 5 < sizeof(safe); c++){
		if(*c < 0x20 || *c == 0x7f) o += (size_t)snprintf(safe + o, sizeof(safe) - o, "\\x%02x", *c);
		else safe[o++] = (char)*c;
	}
	safe[o] = '\0';
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: %s", safe);
}
