/*
 * JWT logins (issue 9, plugin/jwt.c, docs/logging-in.md "JWT"), against the real broker:
 * one valid token per algorithm (HS256 with plugin_opt_jwt_secret_file; RS256, ES256 and
 * EdDSA with plugin_opt_jwt_public_key_file, the key file rewritten and the broker
 * restarted between them), and every bad case refused with a not-authorised CONNACK and a
 * log line naming the reason: alg none, an algorithm the key does not take, HS256 signed
 * with the public key as the secret, a bad signature, expired, not yet valid, no exp,
 * another user's token, a disabled user, the wrong issuer or audience. A client whose
 * token expires while connected is disconnected.
 *
 * The tokens are made here with OpenSSL, independently of the plugin's code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "harness.h"

#define ISS "https://login.example.test"
#define AUD "mqchat"

static const char hs_secret[] = "a-test-secret-of-more-than-32-bytes-for-hs256!";
static char key_path[H_PATH_MAX + 16], pem_pub[8192];
static EVP_PKEY *key; /* the private key of the current key file */

static void b64url(const unsigned char *in, size_t len, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i = 0;
	for(; i + 2 < len; i += 3){
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63];
		out[o++] = t[v & 63];
	}
	if(len - i == 1){
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
	}else if(len - i == 2){
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63];
	}
	out[o] = '\0';
}

/* header.claims signed with alg: "HS256" (secret, len), "RS256"/"ES256"/"EdDSA" (key),
 * or "none" (no signature). */
static char *make_jwt(const char *alg, const char *claims, const void *secret, size_t slen)
{
	char header[128], h64[256], c64[2048], s64[1024];
	snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
	b64url((const unsigned char *)header, strlen(header), h64);
	b64url((const unsigned char *)claims, strlen(claims), c64);
	char *tok = malloc(4096);
	snprintf(tok, 4096, "%s.%s", h64, c64);
	unsigned char sig[1024];
	size_t siglen = 0;
	if(!strcmp(alg, "HS256")){
		unsigned int n = 0;
		HMAC(EVP_sha256(), secret, (int)slen, (unsigned char *)tok, strlen(tok), sig, &n);
		siglen = n;
	}else if(strcmp(alg, "none") != 0){
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		siglen = sizeof(sig);
		EVP_DigestSignInit(ctx, NULL, EVP_PKEY_is_a(key, "ED25519") ? NULL : EVP_sha256(), NULL, key);
		EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)tok, strlen(tok));
		EVP_MD_CTX_free(ctx);
		if(!strcmp(alg, "ES256")){
			/* DER -> r || s */
			const unsigned char *p = sig;
			ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
			if(es){ /* (signed with another key type for a wrong-alg case: left as it is) */
				const BIGNUM *r, *s;
				ECDSA_SIG_get0(es, &r, &s);
				BN_bn2binpad(r, sig, 32);
				BN_bn2binpad(s, sig + 32, 32);
				siglen = 64;
				ECDSA_SIG_free(es);
			}
		}
	}
	b64url(sig, siglen, s64);
	strcat(tok, ".");
	strcat(tok, s64);
	return tok;
}

static void new_key(const char *type)
{
	EVP_PKEY_free(key);
	if(!strcmp(type, "RSA")) key = EVP_RSA_gen(2048);
	else if(!strcmp(type, "EC")) key = EVP_EC_gen("P-256");
	else key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FILE *f = fopen(key_path, "w");
	PEM_write_PUBKEY(f, key);
	fclose(f);
	f = fopen(key_path, "r");
	size_t n = fread(pem_pub, 1, sizeof(pem_pub) - 1, f);
	pem_pub[n] = '\0';
	fclose(f);
}

static char *claims(const char *sub, long long exp_off, const char *extra)
{
	static char buf[1024];
	long long now = h_now_ms() / 1000;
	snprintf(buf, sizeof(buf), "{\"sub\":\"%s\",\"iss\":\"" ISS "\",\"aud\":[\"other\",\"" AUD "\"],\"iat\":%lld,\"exp\":%lld%s%s}",
			sub, now, now + exp_off, extra ? "," : "", extra ? extra : "");
	return buf;
}

static bool in(h_env *env, const char *user, const char *jwt)
{
	int reason = 0;
	char cid[80];
	snprintf(cid, sizeof(cid), "%s:jwt", user);
	h_client *c = h_connect(env, user, jwt, cid, H_PROTO_V5, &reason);
	h_client_close(c);
	return c != NULL;
}

static void refused_at(const char *file, int line, h_env *env, const char *user, char *jwt, const char *why)
{
	size_t mark = h_file_size(env->broker_log);
	int reason = 0;
	h_client *c = h_connect(env, user, jwt, NULL, H_PROTO_V5, &reason);
	if(c){
		h_fail(file, line, "a JWT that should fail (%s) let %s in", why, user);
		h_client_close(c);
	}else{
		if(reason != 0x87) h_fail(file, line, "%s: CONNACK %d, expected 0x87", why, reason);
		if(!h_log_wait(env->broker_log, mark, why, 2000)) h_fail(file, line, "no log line saying \"%s\"", why);
	}
	free(jwt);
}
#define REFUSED(env, user, jwt, why) refused_at(__FILE__, __LINE__, (env), (user), (jwt), (why))

static void hs256(h_env *env)
{
	char *t = make_jwt("HS256", claims("alice", 600, NULL), hs_secret, strlen(hs_secret));
	H_CHECK(in(env, "alice", t));
	free(t);
	REFUSED(env, "alice", make_jwt("none", claims("alice", 600, NULL), NULL, 0), "alg none refused");
	REFUSED(env, "alice", make_jwt("HS256", claims("alice", 600, NULL), "wrong-secret-wrong-secret-wrong-secret", 38),
			"bad signature");
	REFUSED(env, "alice", make_jwt("HS256", claims("alice", -100, NULL), hs_secret, strlen(hs_secret)), "expired");
	REFUSED(env, "alice", make_jwt("HS256", claims("alice", 600, "\"nbf\":99999999999"), hs_secret, strlen(hs_secret)),
			"not valid before");
	REFUSED(env, "bob", make_jwt("HS256", claims("alice", 600, NULL), hs_secret, strlen(hs_secret)), "another user");
	REFUSED(env, "carol", make_jwt("HS256", claims("carol", 600, NULL), hs_secret, strlen(hs_secret)), "user disabled");
	REFUSED(env, "nobody", make_jwt("HS256", claims("nobody", 600, NULL), hs_secret, strlen(hs_secret)), "no such user");
	{
		char c[256];
		snprintf(c, sizeof(c), "{\"sub\":\"alice\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"}");
		REFUSED(env, "alice", make_jwt("HS256", c, hs_secret, strlen(hs_secret)), "has no exp");
		snprintf(c, sizeof(c), "{\"sub\":\"alice\",\"iss\":\"https://evil.test\",\"aud\":\"" AUD "\",\"exp\":%lld}",
				(long long)(h_now_ms() / 1000 + 600));
		REFUSED(env, "alice", make_jwt("HS256", c, hs_secret, strlen(hs_secret)), "issuer is not");
		snprintf(c, sizeof(c), "{\"sub\":\"alice\",\"iss\":\"" ISS "\",\"aud\":\"someone-else\",\"exp\":%lld}",
				(long long)(h_now_ms() / 1000 + 600));
		REFUSED(env, "alice", make_jwt("HS256", c, hs_secret, strlen(hs_secret)), "audience is not");
	}
	/* a flipped signature character */
	t = make_jwt("HS256", claims("alice", 600, NULL), hs_secret, strlen(hs_secret));
	char *last = t + strlen(t) - 3;
	*last = *last == 'A' ? 'B' : 'A';
	REFUSED(env, "alice", t, "bad signature");
	/* a JWT never falls through to the password check: it is not a wrong password */
	H_CHECK(!h_log_contains(env->broker_log, "wrong password"));
}

static void expires_while_connected(h_env *env)
{
	/* exp 1 s from now, leeway 1 s: closed ~2 s after the login */
	char *t = make_jwt("HS256", claims("alice", 1, NULL), hs_secret, strlen(hs_secret));
	int reason = 0;
	size_t mark = h_file_size(env->broker_log);
	h_client *c = h_connect(env, "alice", t, "alice:short", H_PROTO_V5, &reason);
	free(t);
	H_REQUIRE(c != NULL);
	int64_t until = h_now_ms() + 6000;
	while(h_client_connected(c) && h_now_ms() < until) h_sleep_ms(50);
	H_CHECK(!h_client_connected(c));
	H_CHECK(h_log_wait(env->broker_log, mark, "its JWT expired", 1000));
	h_client_close(c);
}

static void asymmetric(h_env *env, const char *type, const char *alg, const char *other_alg)
{
	new_key(type);
	H_REQUIRE_INT(h_broker_restart(env), ==, 0);
	char *t = make_jwt(alg, claims("alice", 600, NULL), NULL, 0);
	bool ok = in(env, "alice", t);
	if(!ok) h_fail(__FILE__, __LINE__, "a valid %s token was refused", alg);
	/* the same claims, another signature: refused */
	char *dot = strrchr(t, '.');
	dot[1] = dot[1] == 'A' ? 'B' : 'A';
	REFUSED(env, "alice", t, "bad signature");
	REFUSED(env, "alice", make_jwt(other_alg, claims("alice", 600, NULL), NULL, 0), "refused: the configured key");
	/* alg confusion: HS256 with the public key's PEM as the HMAC secret */
	REFUSED(env, "alice", make_jwt("HS256", claims("alice", 600, NULL), pem_pub, strlen(pem_pub)), "bad signature");
	REFUSED(env, "alice", make_jwt(alg, claims("alice", -100, NULL), NULL, 0), "expired");
	REFUSED(env, "bob", make_jwt(alg, claims("alice", 600, NULL), NULL, 0), "another user");
}

static void rs256(h_env *env) { asymmetric(env, "RSA", "RS256", "ES256"); }
static void es256(h_env *env) { asymmetric(env, "EC", "ES256", "RS256"); }
static void eddsa(h_env *env) { asymmetric(env, "ED25519", "EdDSA", "ES256"); }

int main(void)
{
	h_env *env = h_env_new("jwt");
	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	char secret_path[H_PATH_MAX + 16];
	snprintf(secret_path, sizeof(secret_path), "%s/jwt.secret", env->dir);
	snprintf(key_path, sizeof(key_path), "%s/jwt.pem", env->dir);
	FILE *f = fopen(secret_path, "w");
	fprintf(f, "%s\n", hs_secret);
	fclose(f);
	new_key("RSA");
	h_env_plugin_opt(env, "jwt_secret_file", secret_path);
	h_env_plugin_opt(env, "jwt_public_key_file", key_path);
	h_env_plugin_opt(env, "jwt_issuer", ISS);
	h_env_plugin_opt(env, "jwt_audience", AUD);
	h_env_plugin_opt(env, "jwt_leeway_s", "1");
	if(h_admin(env, NULL, NULL, 0, "--db", env->db, "user", "disable", "carol", (char *)NULL)) h_failures++;
	h_env_start(env);
	H_RUN(env, hs256);
	H_RUN(env, expires_while_connected);
	H_RUN(env, rs256);
	H_RUN(env, es256);
	H_RUN(env, eddsa);
	EVP_PKEY_free(key);
	return h_env_finish(env);
}
