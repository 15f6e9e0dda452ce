/*
 * MOSQ_EVT_BASIC_AUTH: username/password at CONNECT (docs/architecture.md "Identity and
 * authentication").
 *
 * The password hash is deliberately slow and runs on the broker's only thread, so its cost
 * is bounded three ways: a verified-credential cache makes a known user's reconnect one
 * HMAC; a per-user backoff refuses repeated wrong passwords without hashing; a global
 * budget caps slow hashing at auth_hash_budget_ms per second.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "plugin.h"

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 60000

struct auth_entry {
	char *name;
	unsigned char mac[32]; /* credential_mac() of the last verified password */
	bool has_mac;
	unsigned fails;        /* wrong passwords in a row */
	int64_t next_try_ms;   /* no slow hash for this user before this time */
};

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct auth_entry *entry_get(struct mqchat *st, const char *name, bool create)
{
	size_t len = strlen(name);
	struct auth_entry *e = strmap__get(&st->auth, name, len);
	if(e || !create) return e;
	e = calloc(1, sizeof(*e));
	if(!e || !(e->name = strdup(name))){
		free(e);
		return NULL;
	}
	int err;
	strmap__put(&st->auth, e->name, len, e, &err);
	if(err){
		free(e->name);
		free(e);
		return NULL;
	}
	return e;
}

void auth__forget(struct mqchat *st, const char *name)
{
	struct auth_entry *e = strmap__get(&st->auth, name, strlen(name));
	if(e){
		OPENSSL_cleanse(e->mac, sizeof(e->mac));
		e->has_mac = false;
	}
}

/* HMAC-SHA256(k, stored hash || NUL || password): binding the stored hash in means a
 * password change (a new hash) invalidates every cached credential by itself. */
static int credential_mac(const struct mqchat *st, const char *pwhash, const char *pw, size_t pwlen,
		unsigned char mac[32])
{
	size_t hlen = strlen(pwhash), n = hlen + 1 + pwlen;
	unsigned char stackbuf[512], *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
	unsigned int maclen = 32;
	if(!buf) return -1;
	memcpy(buf, pwhash, hlen + 1);
	memcpy(buf + hlen + 1, pw, pwlen);
	int ok = HMAC(EVP_sha256(), st->auth_key, sizeof(st->auth_key), buf, n, mac, &maclen) != NULL;
	OPENSSL_cleanse(buf, n);
	if(buf != stackbuf) free(buf);
	return ok ? 0 : -1;
}

void auth__free(struct mqchat *st)
{
	STRMAP_FOREACH(&st->auth, s){
		struct auth_entry *e = s->val;
		OPENSSL_cleanse(e->mac, sizeof(e->mac));
		free(e->name);
		free(e);
	}
	strmap__free(&st->auth);
	OPENSSL_cleanse(st->auth_key, sizeof(st->auth_key));
}

/* The client id must not let one user take over, kick or read another's session (and the
 * messages queued in it). clientid_policy:
 *   owned (default): any client id, the libraries' random defaults included, with three
 *     rules: an id in another user's namespace ("<user>" or "<user>:...") is theirs; an id
 *     outside every namespace is held by the first user who connects with it, for this
 *     broker run (owners: refused to anyone else while held, so nobody is kicked by a
 *     takeover); and a persistent session (clean start off) needs an id of the user's own
 *     namespace, whose owner is known across restarts (an id held only in memory could
 *     be claimed by someone else after a restart, with the queued messages in it);
 *   prefix: only the user's namespace, or a broker-made "auto-" id with a clean session;
 *   any: no check (a deployment whose users trust each other).
 * Returns NULL when allowed, else why not. */
#define CLIENTID_OWNERS_MAX 200000

static bool in_namespace(const char *cid, const char *user)
{
	size_t ulen = strlen(user);
	return !strncmp(cid, user, ulen) && (cid[ulen] == '\0' || cid[ulen] == ':');
}

/* The user whose namespace cid is in ("<user>" or "<user>:..."), if such a user exists. */
static const char *namespace_owner(const struct mqchat *st, const char *cid)
{
	size_t n = strcspn(cid, ":");
	if(!n || n > MQC_NAME_MAX || !mqc_name_valid(cid, n)) return NULL;
	/* the bridge's ids too: a takeover of its connection would stop storing */
	if(strlen(st->opt.service_user) == n && !strncmp(cid, st->opt.service_user, n)) return st->opt.service_user;
	struct cache_user *u = cache__user(st->cache, cid, n);
	return u ? u->name : NULL;
}

static const char *clientid_refusal(const struct mqchat *st, const struct mosquitto *client, const char *user,
		const char *cid)
{
	if(st->opt.clientid_policy == CLIENTID_ANY) return NULL;
	if(!cid) return "no client id";
	if(in_namespace(cid, user)) return NULL;
	const char *other = namespace_owner(st, cid);
	bool clean = mosquitto_client_clean_session(client);
	if(st->opt.clientid_policy == CLIENTID_PREFIX){
		if(!strncmp(cid, "auto-", 5) && clean) return NULL;
		return "must be the username or start with '<username>:'";
	}
	if(other) return "is in another user's namespace ('<user>' or '<user>:...')";
	if(!clean) return "a persistent session (clean start off) needs the username or '<username>:...' as its client id";
	size_t len = strlen(cid);
	const struct conn *c = strmap__get(&st->conns, cid, len);
	if(c && c->user && strcmp(c->user->name, user) != 0) return "is in use by another user right now";
	const struct cid_owner *o = strmap__get(&st->owners.map, cid, len);
	if(o && strcmp(o->user, user) != 0) return "was taken by another user earlier in this broker run";
	return NULL;
}

/* Records that user holds cid (clientid_policy owned, an id outside the namespaces). */
static void owner_remember(struct mqchat *st, const char *user, const char *cid)
{
	struct cid_owners *ow = &st->owners;
	if(st->opt.clientid_policy != CLIENTID_OWNED || !cid || in_namespace(cid, user)) return;
	size_t len = strlen(cid);
	struct cid_owner *o = strmap__get(&ow->map, cid, len);
	if(o){
		snprintf(o->user, sizeof(o->user), "%s", user);
		return;
	}
	if(ow->count == ow->cap){
		if(ow->cap >= CLIENTID_OWNERS_MAX){
			/* the oldest goes: if it is still connected, conns keeps it held */
			struct cid_owner *old = ow->ring[ow->head];
			strmap__del(&ow->map, old->cid, strlen(old->cid));
			free(old->cid);
			free(old);
			ow->head = (ow->head + 1) % ow->cap;
			ow->count--;
		}else{
			size_t cap = ow->cap ? ow->cap * 2 : 1024;
			struct cid_owner **ring = malloc(cap * sizeof(*ring));
			if(!ring) return;
			for(size_t i = 0; i < ow->count; i++) ring[i] = ow->ring[(ow->head + i) % ow->cap];
			free(ow->ring);
			ow->ring = ring;
			ow->cap = cap;
			ow->head = 0;
		}
	}
	o = calloc(1, sizeof(*o));
	if(!o || !(o->cid = strdup(cid))){
		free(o);
		return;
	}
	snprintf(o->user, sizeof(o->user), "%s", user);
	int err = 0;
	strmap__put(&ow->map, o->cid, len, o, &err);
	if(err){
		free(o->cid);
		free(o);
		return;
	}
	ow->ring[(ow->head + ow->count) % ow->cap] = o;
	ow->count++;
}

void auth__owners_free(struct cid_owners *ow)
{
	for(size_t i = 0; i < ow->count; i++){
		struct cid_owner *o = ow->ring[(ow->head + i) % ow->cap];
		free(o->cid);
		free(o);
	}
	free(ow->ring);
	strmap__free(&ow->map);
	memset(ow, 0, sizeof(*ow));
}

/* A connection of user under client id cid that cannot take over one of its own (same
 * client id: the broker closes the old one) needs room under max_connections_per_user. */
static bool conn_room(struct mqchat *st, const char *user, const char *cid)
{
	if(!st->opt.max_connections_per_user) return true;
	struct conn *c = cid ? strmap__get(&st->conns, cid, strlen(cid)) : NULL;
	if(c) return true;
	struct user_state *us = strmap__get(&st->users_state, user, strlen(user));
	return !us || us->conns < st->opt.max_connections_per_user;
}

/* -1 when the token id could not be kept: such a login could not be closed on revoke. */
static int set_login(struct conn *c, const struct login *how)
{
	free(c->token_id);
	c->token_id = how && how->token_id ? strdup(how->token_id) : NULL;
	c->expires_ms = how ? how->expires_ms : 0;
	return how && how->token_id && !c->token_id ? -1 : 0;
}

/* A token or JWT login must be tracked (to be closed on revoke or expiry): without the
 * memory for that it is turned away for now rather than let in untracked. */
static bool tracked(const struct login *how)
{
	return how && (how->token_id || how->expires_ms);
}

/* Credentials verified: counted until its MOSQ_EVT_DISCONNECT (disconnect.c), unless the
 * user has max_connections_per_user open. That refusal is not "not authorised" (the
 * credentials are right, and are checked first so a wrong password always says so): the
 * connection is closed without a CONNACK (MQTT 5: DISCONNECT 0x80 first), and the client
 * comes back later. */
static int admitted(struct mqchat *st, const struct mosquitto *client, const char *user, const char *cid,
		const struct login *how)
{
	if(!cid) return MOSQ_ERR_SUCCESS;
	struct user_state *flooded = strmap__get(&st->users_state, user, strlen(user));
	if(flooded && mqc_now_ms() < flooded->penalty_until_ms){
		plugin__log_client(st, "refused %s (%s) from %s: it flooded, its connections are refused for %lld ms more; "
				"closed without a CONNACK", user, cid, mosquitto_client_address(client),
				(long long)(flooded->penalty_until_ms - mqc_now_ms()));
		return MQCHAT_RETRY_LATER;
	}
	if(!conn_room(st, user, cid)){
		plugin__log_client(st, "refused %s (%s) from %s: %u connections open, the most max_connections_per_user "
				"allows; closed without a CONNACK (the client should retry later)", user, cid,
				mosquitto_client_address(client), st->opt.max_connections_per_user);
		return MQCHAT_RETRY_LATER;
	}
	qos2__connected(st, cid, mosquitto_client_clean_session(client));
	owner_remember(st, user, cid);
	struct user_state *us = limits__user(st, user);
	size_t len = strlen(cid);
	struct conn *c = strmap__get(&st->conns, cid, len);
	if(c){
		/* A takeover: the old connection's event will not match this client pointer. */
		if(c->user != us){
			if(c->user && c->user->conns) c->user->conns--;
			if(us) us->conns++;
			c->user = us;
		}
		c->client = client;
		if(set_login(c, how)) return MQCHAT_RETRY_LATER;
		return MOSQ_ERR_SUCCESS;
	}
	int err;
	c = calloc(1, sizeof(*c));
	if(!c || !(c->cid = strdup(cid))){
		free(c);
		/* not counted, for lack of memory: still a correct login, unless it must be tracked */
		return tracked(how) ? MQCHAT_RETRY_LATER : MOSQ_ERR_SUCCESS;
	}
	c->client = client;
	c->user = us;
	if(set_login(c, how)){
		free(c->cid);
		free(c);
		return MQCHAT_RETRY_LATER;
	}
	strmap__put(&st->conns, c->cid, len, c, &err);
	if(err){
		bool must = tracked(how);
		free(c->token_id);
		free(c->cid);
		free(c);
		return must ? MQCHAT_RETRY_LATER : MOSQ_ERR_SUCCESS;
	}
	if(us) us->conns++;
	return MOSQ_ERR_SUCCESS;
}

/* The budget is a token bucket of hashing time: it fills at auth_hash_budget_ms per
 * second up to BUDGET_BURST_US, and a slow hash may start while it is above zero (its
 * cost is taken after, and may leave it in debt). So cheap hashes can come in bursts (a
 * room of users logging in at once), but at most one expensive hash runs before the
 * bucket is empty again: the broker is never stalled by several ~120 ms hashes back to
 * back (a per-second allowance let three run in a row), and over time hashing takes at
 * most budget ms of each second. */
#define BUDGET_BURST_US 100000

static bool budget_allows(struct mqchat *st)
{
	int64_t now = mono_us();
	if(st->budget_last_us){
		st->budget_tokens_us += (now - st->budget_last_us) * (int64_t)st->opt.auth_hash_budget_ms / 1000;
		if(st->budget_tokens_us > BUDGET_BURST_US) st->budget_tokens_us = BUDGET_BURST_US;
	}else{
		st->budget_tokens_us = BUDGET_BURST_US;
	}
	st->budget_last_us = now;
	return st->budget_tokens_us > 0;
}

static void budget_spend(struct mqchat *st, int64_t t0_us, int64_t t1_us)
{
	st->budget_tokens_us -= t1_us - t0_us;
}

/* A CONNECT whose password has a device token's form (token.c). One SHA-256 and a table
 * lookup: no budget, no backoff (a wrong token costs a microsecond, and a backoff would let
 * anyone lock a user's devices out). */
static int token_login(struct mqchat *st, const struct mosquitto *client, const char *user, const char *pw,
		size_t pwlen, const char *cid, const char *addr)
{
	char hash[MQC_TOKEN_HASH_HEX + 1];
	if(mqc_token_hash_hex(pw, pwlen, hash)) return MQCHAT_RETRY_LATER;
	struct cache_token *t = cache__token(st->cache, hash);
	OPENSSL_cleanse(hash, sizeof(hash));
	if(!t || strcmp(t->user->name, user) != 0){
		/* A token of another user says nothing about it here: the same words either way. */
		plugin__log_client(st, "refused %s (%s) from %s: unknown or revoked device token", user, cid, addr);
		return MOSQ_ERR_AUTH;
	}
	int64_t now = mqc_now_ms();
	if(t->expires_at && now >= t->expires_at){
		plugin__log_client(st, "refused %s (%s) from %s: device token %s expired %lld s ago", user, cid, addr,
				t->byid.id, (long long)((now - t->expires_at) / 1000));
		return MOSQ_ERR_AUTH;
	}
	if(t->user->disabled){
		plugin__log_client(st, "refused %s (%s) from %s: user disabled", user, cid, addr);
		return MOSQ_ERR_AUTH;
	}
	struct login how = { .token_id = t->byid.id, .expires_ms = t->expires_at };
	int rc = admitted(st, client, user, cid, &how);
	if(rc == MOSQ_ERR_SUCCESS) token__used(st, t);
	return rc;
}

/* A CONNECT whose password is a JWT (jwt.c): the user must exist and not be disabled. */
static int jwt_login(struct mqchat *st, const struct mosquitto *client, const char *user, const char *pw,
		size_t pwlen, const char *cid, const char *addr)
{
	char reason[256];
	int64_t exp_ms = 0;
	if(jwt__verify(st->jwt, pw, pwlen, user, mqc_now_ms(), &exp_ms, reason, sizeof(reason))){
		plugin__log_client(st, "refused %s (%s) from %s: JWT %s", user, cid, addr, reason);
		return MOSQ_ERR_AUTH;
	}
	struct cache_user *u = cache__user(st->cache, user, strlen(user));
	if(!u || !u->pwhash || u->disabled){
		plugin__log_client(st, "refused %s (%s) from %s: JWT valid, but %s", user, cid, addr,
				!u || !u->pwhash ? "no such user (JWT users must exist in users: mqchat-admin user add)" : "user disabled");
		return MOSQ_ERR_AUTH;
	}
	struct login how = { .token_id = NULL, .expires_ms = exp_ms };
	return admitted(st, client, user, cid, &how);
}

int auth__basic(int event, void *event_data, void *userdata)
{
	(void)event;
	struct mqchat *st = userdata;
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *user = ed->username, *pw = ed->password;
	const char *cid = mosquitto_client_id(ed->client);
	const char *addr = mosquitto_client_address(ed->client);

	plugin__swap_if_ready(st);
	if(!user){
		plugin__log_client(st, "refused anonymous client %s from %s", cid, addr);
		return MOSQ_ERR_AUTH;
	}
	size_t ulen = strlen(user);
	if(!mqc_name_valid(user, ulen)){
		plugin__log_client(st, "refused client %s from %s: username is not [A-Za-z0-9._-]{1,64}", cid, addr);
		return MOSQ_ERR_AUTH;
	}
	if(!pw){
		plugin__log_client(st, "refused %s (%s) from %s: no password", user, cid, addr);
		return MOSQ_ERR_AUTH;
	}
	size_t pwlen = strlen(pw);
	const char *why = clientid_refusal(st, ed->client, user, cid);
	if(why){
		plugin__log_client(st, "refused %s from %s: client id '%.100s' %s", user, addr, cid ? cid : "", why);
		return MOSQ_ERR_AUTH;
	}

	if(!strcmp(user, st->opt.service_user)){
		size_t slen = strlen(st->opt.service_password);
		if(pwlen == slen && CRYPTO_memcmp(pw, st->opt.service_password, slen) == 0) return MOSQ_ERR_SUCCESS;
		plugin__log_client(st, "refused service user %s from %s: wrong password", cid, addr);
		return MOSQ_ERR_AUTH;
	}

	/* A device token or a JWT: checked without the slow hash, and never as a password (a
	 * password cannot have a token's form: mqchat-admin refuses one). */
	if(mqc_token_looks(pw, pwlen)) return token_login(st, ed->client, user, pw, pwlen, cid, addr);
	if(st->jwt && mqc_jwt_looks(pw, pwlen)) return jwt_login(st, ed->client, user, pw, pwlen, cid, addr);

	struct cache_user *u = cache__user(st->cache, user, ulen);
	if(!u || !u->pwhash || !*u->pwhash || u->disabled){
		plugin__log_client(st, "refused %s (%s) from %s: %s", user, cid, addr,
				!u || !u->pwhash ? "unknown user" : u->disabled ? "user disabled" : "no password set");
		return MOSQ_ERR_AUTH;
	}

	unsigned char mac[32];
	if(credential_mac(st, u->pwhash, pw, pwlen, mac)) return MOSQ_ERR_AUTH;
	struct auth_entry *e = entry_get(st, user, false);
	if(e && e->has_mac && CRYPTO_memcmp(e->mac, mac, sizeof(mac)) == 0){
		OPENSSL_cleanse(mac, sizeof(mac));
		return admitted(st, ed->client, user, cid, NULL); /* a known password: no slow hash */
	}

	int64_t now = mqc_now_ms();
	if(e && now < e->next_try_ms){
		plugin__log_client(st, "refused %s (%s) from %s: %u wrong passwords, next try in %lld ms",
				user, cid, addr, e->fails, (long long)(e->next_try_ms - now));
		return MOSQ_ERR_AUTH;
	}
	if(!budget_allows(st)){
		/* Not "not authorised": the credentials were not even looked at. Closed without a
		 * CONNACK, which paho and MQTT.js treat as a network failure and retry
		 * (docs/logging-in.md); a CONNACK 0x87/0x05 would read as a wrong password, and
		 * MQTT.js would never retry. */
		plugin__log_client(st, "refused %s (%s) from %s: password checks are over budget (%u ms/s); closed without "
				"a CONNACK (the client should retry; devices should log in with a token)",
				user, cid, addr, st->opt.auth_hash_budget_ms);
		return MQCHAT_RETRY_LATER;
	}

	int64_t t0 = mono_us();
	int ok = mqc_password_verify(pw, pwlen, u->pwhash);
	int64_t t1 = mono_us();
	budget_spend(st, t0, t1);
	mosquitto_log_printf(MOSQ_LOG_DEBUG, "mqchat: slow password check for %s (%s): %lld us, %s", user, cid,
			(long long)(t1 - t0), ok == 1 ? "right" : "wrong");

	if(!(e = entry_get(st, user, true))){
		/* no memory to remember: still correct */
		return ok == 1 ? admitted(st, ed->client, user, cid, NULL) : MOSQ_ERR_AUTH;
	}
	if(ok == 1){
		memcpy(e->mac, mac, sizeof(mac));
		e->has_mac = true;
		e->fails = 0;
		e->next_try_ms = 0;
		OPENSSL_cleanse(mac, sizeof(mac));
		return admitted(st, ed->client, user, cid, NULL);
	}
	OPENSSL_cleanse(mac, sizeof(mac));
	if(ok < 0){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: the stored password hash of %s is malformed; it cannot log in", user);
		return MOSQ_ERR_AUTH;
	}
	e->fails++;
	int64_t delay = BACKOFF_FIRST_MS;
	for(unsigned i = 1; i < e->fails && delay < BACKOFF_MAX_MS; i++) delay *= 2;
	if(delay > BACKOFF_MAX_MS) delay = BACKOFF_MAX_MS;
	e->next_try_ms = now + delay;
	plugin__log_client(st, "refused %s (%s) from %s: wrong password (%u in a row; next check in %lld ms)",
			user, cid, addr, e->fails, (long long)delay);
	return MOSQ_ERR_AUTH;
}
