/*
 * password.c: password hashing, PBKDF2-HMAC-SHA512 (docs/architecture.md "Identity").
 *
 * Encoded as "pbkdf2-sha512$<iterations>$<salt>$<key>": a 16-byte random salt and a
 * 64-byte derived key, both standard base64 with padding and no newlines. The iteration
 * count travels with the hash, so raising the default never breaks existing users.
 *
 * Hazard: mqc_password_verify costs the iterations recorded in the string; the count is
 * bounded (MIN_ITER..MAX_ITER) so a planted hash cannot stall the broker for minutes.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "mqchat_store.h"

#define PREFIX "pbkdf2-sha512$"
#define SALT_LEN 16
#define KEY_LEN 64
#define SALT_B64 24 /* 4 * ceil(16 / 3) */
#define KEY_B64 88  /* 4 * ceil(64 / 3) */
#define MIN_ITER 1000u
#define MAX_ITER 10000000u

static int derive(const char *pw, size_t pwlen, const unsigned char *salt, unsigned iterations,
		unsigned char key[KEY_LEN])
{
	if(pwlen > (size_t)0x7fffffff) return -1;
	if(PKCS5_PBKDF2_HMAC(pwlen ? pw : "", (int)pwlen, salt, SALT_LEN, (int)iterations,
				EVP_sha512(), KEY_LEN, key) != 1){
		return -1;
	}
	return 0;
}

int mqc_password_hash(const char *pw, size_t pwlen, unsigned iterations, char *out, size_t outlen)
{
	unsigned char salt[SALT_LEN], key[KEY_LEN];
	char salt64[SALT_B64 + 1], key64[KEY_B64 + 1];
	int n, rc = -1;

	if(pw == NULL || out == NULL || iterations < MIN_ITER || iterations > MAX_ITER) return -1;
	if(RAND_bytes(salt, SALT_LEN) != 1) goto done;
	if(derive(pw, pwlen, salt, iterations, key)) goto done;
	EVP_EncodeBlock((unsigned char *)salt64, salt, SALT_LEN);
	EVP_EncodeBlock((unsigned char *)key64, key, KEY_LEN);
	n = snprintf(out, outlen, PREFIX "%u$%s$%s", iterations, salt64, key64);
	if(n < 0 || (size_t)n >= outlen) goto done;
	rc = 0;
done:
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

/* Strict decimal: digits only, no sign, no leading zero, within MIN_ITER..MAX_ITER. */
static int parse_iterations(const char *s, size_t len, unsigned *out)
{
	unsigned long v = 0;
	size_t i;

	if(len == 0 || len > 8 || s[0] == '0') return -1;
	for(i = 0; i < len; i++){
		if(s[i] < '0' || s[i] > '9') return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if(v < MIN_ITER || v > MAX_ITER) return -1;
	*out = (unsigned)v;
	return 0;
}

/* Decodes exactly want bytes from b64 (len characters, padded); -1 if it is not that. */
static int decode_b64(const char *b64, size_t len, unsigned char *out, size_t want)
{
	unsigned char buf[KEY_B64];
	size_t pad, i;
	int n;

	if(len != 4 * ((want + 2) / 3) || len > sizeof(buf)) return -1;
	pad = (3 - want % 3) % 3;
	for(i = 0; i < len; i++){
		char c = b64[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
			|| c == '+' || c == '/';
		if(i >= len - pad) ok = (c == '=');
		if(!ok) return -1;
	}
	n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)len);
	if(n < 0 || (size_t)n != want + pad) return -1;
	memcpy(out, buf, want);
	return 0;
}

int mqc_password_verify(const char *pw, size_t pwlen, const char *encoded)
{
	const char *p, *d1, *d2;
	unsigned iterations;
	unsigned char salt[SALT_LEN], want[KEY_LEN], got[KEY_LEN];
	int rc;

	if(encoded == NULL) return -1;
	if(strncmp(encoded, PREFIX, strlen(PREFIX))) return -1;
	p = encoded + strlen(PREFIX);
	d1 = strchr(p, '$');
	if(d1 == NULL) return -1;
	d2 = strchr(d1 + 1, '$');
	if(d2 == NULL) return -1;
	if(parse_iterations(p, (size_t)(d1 - p), &iterations)) return -1;
	if(decode_b64(d1 + 1, (size_t)(d2 - d1 - 1), salt, SALT_LEN)) return -1;
	if(decode_b64(d2 + 1, strlen(d2 + 1), want, KEY_LEN)) return -1;
	if(pw == NULL) return 0;
	if(derive(pw, pwlen, salt, iterations, got)) return -1;
	rc = CRYPTO_memcmp(got, want, KEY_LEN) == 0 ? 1 : 0;
	OPENSSL_cleanse(got, sizeof(got));
	return rc;
}
