/*
 * jwt.c: JSON Web Tokens (RFC 7519, JWS compact form, RFC 7515) as CONNECT passwords, for
 * operators whose users log in elsewhere (docs/logging-in.md "JWT").
 *
 * Options (plugin_opt_...):
 *   jwt_secret_file F      HS256 with the secret in F (its bytes, a trailing newline dropped)
 *   jwt_public_key_file F  a PEM public key: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA)
 *   jwt_issuer S           "iss" must be S          jwt_audience S   "aud" must be or hold S
 *   jwt_leeway_s N         clock skew allowed on exp and nbf (default 30)
 *
 * What is refused, each with its own reason: a header alg other than the configured key's
 * (so "none", and HS256 signed with a public key as the secret, never pass), a bad
 * signature, no "exp" or one past (plus leeway), "nbf" ahead, "sub" not the CONNECT
 * username, iss/aud not as configured, "crit" headers, and malformed anything. A verify
 * costs tens of microseconds (RS256/ES256/EdDSA), on the broker thread: no slow hash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "plugin.h"


enum jwt_alg { ALG_NONE_CONFIGURED, ALG_RS256, ALG_ES256, ALG_EDDSA };

struct jwt {
	unsigned char *secret; /* HS256; NULL when not configured */
	size_t secret_len;
	EVP_PKEY *key;         /* the public key; NULL when not configured */
	enum jwt_alg key_alg;
	char *issuer, *audience;
	int64_t leeway_ms;
};

static const char *key_alg_name(enum jwt_alg a)
{
	return a == ALG_RS256 ? "RS256" : a == ALG_ES256 ? "ES256" : a == ALG_EDDSA ? "EdDSA" : "none";
}

void jwt__free(struct jwt *j)
{
	if(!j) return;
	if(j->secret){
		OPENSSL_cleanse(j->secret, j->secret_len);
		free(j->secret);
	}
	EVP_PKEY_free(j->key);
	free(j->issuer);
	free(j->audience);
	free(j);
}

static int read_secret(struct jwt *j, const char *path)
{
	if(j->secret){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_secret_file is given twice");
		return -1;
	}
	FILE *f = fopen(path, "rb");
	if(!f){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_secret_file %s: cannot open it", path);
		return -1;
	}
	unsigned char buf[1024];
	size_t n = fread(buf, 1, sizeof(buf), f);
	bool more = fgetc(f) != EOF;
	fclose(f);
	while(n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
	if(more || n < 32){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_secret_file %s: the secret must be 32 to 1024 bytes "
				"(HS256 needs at least 256 bits)", path);
		OPENSSL_cleanse(buf, sizeof(buf));
		return -1;
	}
	j->secret = malloc(n);
	if(!j->secret) return -1;
	memcpy(j->secret, buf, n);
	j->secret_len = n;
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

static int read_key(struct jwt *j, const char *path)
{
	if(j->key){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_public_key_file is given twice");
		return -1;
	}
	FILE *f = fopen(path, "r");
	if(!f){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_public_key_file %s: cannot open it", path);
		return -1;
	}
	j->key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if(!j->key){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_public_key_file %s: not a PEM public key", path);
		return -1;
	}
	if(EVP_PKEY_is_a(j->key, "RSA")){
		if(EVP_PKEY_get_bits(j->key) < 2048){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_public_key_file %s: an RSA key needs at least 2048 bits", path);
			return -1;
		}
		j->key_alg = ALG_RS256;
	}else if(EVP_PKEY_is_a(j->key, "EC")){
		char group[64];
		size_t gl = 0;
		if(!EVP_PKEY_get_group_name(j->key, group, sizeof(group), &gl) || strcmp(group, "prime256v1") != 0){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_public_key_file %s: an EC key must be on P-256 (ES256)", path);
			return -1;
		}
		j->key_alg = ALG_ES256;
	}else if(EVP_PKEY_is_a(j->key, "ED25519")){
		j->key_alg = ALG_EDDSA;
	}else{
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_public_key_file %s: expected an RSA, EC P-256 or Ed25519 key", path);
		return -1;
	}
	return 0;
}

int jwt__init(const struct mosquitto_opt *opts, int opt_count, struct jwt **out)
{
	*out = NULL;
	struct jwt *j = calloc(1, sizeof(*j));
	if(!j) return -1;
	j->leeway_ms = 30000;
	bool any = false;
	for(int i = 0; i < opt_count; i++){
		const char *k = opts[i].key, *v = opts[i].value;
		if(!k || strncmp(k, "jwt_", 4) != 0) continue;
		any = true;
		int rc = 0;
		if(!v || !*v){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_%s needs a value", k);
			rc = -1;
		}else if(!strcmp(k, "jwt_secret_file")) rc = read_secret(j, v);
		else if(!strcmp(k, "jwt_public_key_file")) rc = read_key(j, v);
		else if(!strcmp(k, "jwt_issuer")){ free(j->issuer); rc = (j->issuer = strdup(v)) ? 0 : -1; }
		else if(!strcmp(k, "jwt_audience")){ free(j->audience); rc = (j->audience = strdup(v)) ? 0 : -1; }
		else if(!strcmp(k, "jwt_leeway_s")){
			char *end;
			long n = strtol(v, &end, 10);
			if(*end || n < 0 || n > 3600){
				mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: plugin_opt_jwt_leeway_s = '%s': expected 0..3600", v);
				rc = -1;
			}else{
				j->leeway_ms = n * 1000;
			}
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: unknown option plugin_opt_%s", k);
			rc = -1;
		}
		if(rc){
			jwt__free(j);
			return -1;
		}
	}
	if(!any){
		jwt__free(j);
		return 0;
	}
	if(!j->secret && !j->key){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: the jwt_ options need plugin_opt_jwt_secret_file or plugin_opt_jwt_public_key_file");
		jwt__free(j);
		return -1;
	}
	if(!j->audience){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: JWT logins without plugin_opt_jwt_audience: any token of this "
				"issuer and key with a matching sub logs in, also one issued for another application");
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: JWT logins on: %s%s%s; leeway %lld s%s%s%s%s",
			j->secret ? "HS256" : "", j->secret && j->key ? " and " : "", j->key ? key_alg_name(j->key_alg) : "",
			(long long)(j->leeway_ms / 1000), j->issuer ? ", iss " : "", j->issuer ? j->issuer : "",
			j->audience ? ", aud " : "", j->audience ? j->audience : "");
	*out = j;
	return 0;
}

/* ------------------------------------------------------------------ verifying */

static int b64url_val(unsigned char ch)
{
	if(ch >= 'A' && ch <= 'Z') return ch - 'A';
	if(ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
	if(ch >= '0' && ch <= '9') return ch - '0' + 52;
	if(ch == '-') return 62;
	if(ch == '_') return 63;
	return -1;
}

/* Decodes unpadded base64url; out must hold len*3/4+1 bytes. Returns the length or -1. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
	if(len % 4 == 1) return -1;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for(size_t i = 0; i < len; i++){
		int v = b64url_val((unsigned char)in[i]);
		if(v < 0) return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if(bits >= 8){
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* the unused low bits must be zero (one encoding per value) */
	if(bits && (acc & ((1u << bits) - 1))) return -1;
	return (long)o;
}


static json_t *decode_json(const char *part, size_t len)
{
	unsigned char *buf = malloc(len * 3 / 4 + 2);
	if(!buf) return NULL;
	long n = b64url_decode(part, len, buf);
	json_t *j = n > 0 ? json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
	free(buf);
	if(j && !json_is_object(j)){
		json_decref(j);
		return NULL;
	}
	return j;
}

static bool verify_sig(const struct jwt *j, bool hs, const char *signed_part, size_t signed_len,
		const unsigned char *sig, size_t sig_len)
{
	if(hs){
		unsigned char mac[32];
		unsigned int maclen = 0;
		if(!HMAC(EVP_sha256(), j->secret, (int)j->secret_len, (const unsigned char *)signed_part, signed_len, mac, &maclen)) return false;
		return sig_len == 32 && maclen == 32 && CRYPTO_memcmp(mac, sig, 32) == 0;
	}
	unsigned char der[80];
	const unsigned char *s = sig;
	size_t slen = sig_len;
	if(j->key_alg == ALG_ES256){
		/* JWS carries r || s (32 bytes each); OpenSSL verifies DER */
		if(sig_len != 64) return false;
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
		if(!es || !r || !ss || !ECDSA_SIG_set0(es, r, ss)){
			BN_free(r);
			BN_free(ss);
			ECDSA_SIG_free(es);
			return false;
		}
		int dl = i2d_ECDSA_SIG(es, NULL);
		unsigned char *p = der;
		if(dl <= 0 || dl > (int)sizeof(der) || i2d_ECDSA_SIG(es, &p) != dl){
			ECDSA_SIG_free(es);
			return false;
		}
		ECDSA_SIG_free(es);
		s = der;
		slen = (size_t)dl;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if(!ctx) return false;
	bool ok = EVP_DigestVerifyInit(ctx, NULL, j->key_alg == ALG_EDDSA ? NULL : EVP_sha256(), NULL, j->key) == 1
		&& EVP_DigestVerify(ctx, s, slen, (const unsigned char *)signed_part, signed_len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* A NumericDate claim in ms: 1 if present and valid, 0 if absent, -1 if not a number. */
static int claim_time(json_t *claims, const char *name, int64_t *ms)
{
	json_t *v = json_object_get(claims, name);
	if(!v) return 0;
	if(!json_is_number(v)) return -1;
	double d = json_number_value(v);
	if(d < 0 || d > 1e11) return -1;
	*ms = (int64_t)(d * 1000.0);
	return 1;
}

static bool aud_matches(json_t *aud, const char *want)
{
	if(json_is_string(aud)) return !strcmp(json_string_value(aud), want);
	if(!json_is_array(aud)) return false;
	size_t i;
	json_t *v;
	json_array_foreach(aud, i, v){
		if(json_is_string(v) && !strcmp(json_string_value(v), want)) return true;
	}
	return false;
}

#define REFUSE(...) do { snprintf(reason, reasonlen, __VA_ARGS__); goto refused; } while(0)

int jwt__verify(const struct jwt *j, const char *token, size_t len, const char *user, int64_t now_ms,
		int64_t *exp_ms, char *reason, size_t reasonlen)
{
	json_t *header = NULL, *claims = NULL;
	unsigned char *sig = NULL;
	const char *d1 = memchr(token, '.', len);
	const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
	if(!d1 || !d2) REFUSE("malformed (expected header.payload.signature)");
	size_t hl = (size_t)(d1 - token), pl = (size_t)(d2 - d1 - 1), sl = len - (size_t)(d2 + 1 - token);

	if(!(header = decode_json(token, hl))) REFUSE("malformed header");
	const char *alg0 = json_string_value(json_object_get(header, "alg"));
	if(!alg0) REFUSE("header has no alg");
	/* the client's text, for log lines: at most 16 printable ASCII characters */
	char alg[17];
	size_t al = 0;
	for(const char *p = alg0; *p && al < 16; p++) alg[al++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
	alg[al] = '\0';
	if(strlen(alg0) != al) REFUSE("alg %s... refused: not an algorithm name", alg);
	if(json_object_get(header, "crit")) REFUSE("header has crit extensions, which are not supported");
	bool hs = !strcmp(alg, "HS256");
	if(hs && !j->secret) REFUSE("alg %.16s refused: no HS256 secret is configured (key: %s)", alg, key_alg_name(j->key_alg));
	if(!hs && (!j->key || strcmp(alg, key_alg_name(j->key_alg)) != 0)){
		REFUSE("alg %.16s refused: the configured key%s takes %s%s", alg, j->key ? "" : "s", j->key ? key_alg_name(j->key_alg) : "",
				j->secret ? (j->key ? " or HS256" : "HS256") : "");
	}

	sig = malloc(sl * 3 / 4 + 2);
	if(!sig) REFUSE("out of memory");
	long n = b64url_decode(d2 + 1, sl, sig);
	if(n <= 0) REFUSE("malformed signature");
	if(!verify_sig(j, hs, token, (size_t)(d2 - token), sig, (size_t)n)) REFUSE("bad signature (%s)", alg);

	if(!(claims = decode_json(d1 + 1, pl))) REFUSE("malformed claims");
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	if(!sub) REFUSE("has no sub");
	if(strcmp(sub, user) != 0) REFUSE("is for another user (sub is not the username)");
	int64_t exp = 0, nbf = 0;
	int he = claim_time(claims, "exp", &exp), hn = claim_time(claims, "nbf", &nbf);
	if(he < 0 || hn < 0) REFUSE("exp or nbf is not a NumericDate");
	if(he == 0) REFUSE("has no exp (tokens must expire)");
	if(now_ms >= exp + j->leeway_ms) REFUSE("expired %lld s ago", (long long)((now_ms - exp) / 1000));
	if(hn && now_ms < nbf - j->leeway_ms) REFUSE("not valid before %lld s from now", (long long)((nbf - now_ms) / 1000));
	if(j->issuer){
		const char *iss = json_string_value(json_object_get(claims, "iss"));
		if(!iss || strcmp(iss, j->issuer) != 0) REFUSE("issuer is not %s", j->issuer);
	}
	if(j->audience && !aud_matches(json_object_get(claims, "aud"), j->audience)) REFUSE("audience is not %s", j->audience);
	*exp_ms = exp + j->leeway_ms;
	json_decref(header);
	json_decref(claims);
	free(sig);
	return 0;
refused:
	json_decref(header);
	json_decref(claims);
	free(sig);
	return -1;
}
