/*
 * names.c: user ids and room ids (DESIGN.md "Identity").
 *
 * A name is 1..MQC_NAME_MAX characters of [A-Za-z0-9._-], so it is always safe as one MQTT
 * topic level: never '+', '#', '/', NUL or a leading '$'. Room ids are made here from the
 * OS CSPRNG (via OpenSSL) so they cannot be guessed in sequence.
 */
#include <string.h>

#include <openssl/rand.h>

#include "mqchat_store.h"

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static bool name_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		|| c == '.' || c == '_' || c == '-';
}

bool mqc_name_valid(const char *s, size_t len)
{
	size_t i;

	if(s == NULL || len == 0 || len > MQC_NAME_MAX) return false;
	for(i = 0; i < len; i++){
		if(!name_char((unsigned char)s[i])) return false;
	}
	return true;
}

/* Rejection sampling: a byte is used only if it is < 248 (= 4 * 62), so every base62
 * character is equally likely; the others are drawn again. */
int mqc_room_id_new(char out[static 23])
{
	unsigned char buf[64];
	size_t have = 0, used = sizeof(buf);

	out[0] = 'r';
	for(have = 1; have < 22; ){
		if(used == sizeof(buf)){
			if(RAND_bytes(buf, (int)sizeof(buf)) != 1) return -1;
			used = 0;
		}
		unsigned char b = buf[used++];
		if(b >= 248) continue;
		out[have++] = base62[b % 62];
	}
	out[22] = '\0';
	return 0;
}

int mqc_direct_key(const char *a, const char *b, char *out, size_t outlen)
{
	const char *lo, *hi;
	size_t la, lb;
	int cmp;

	if(a == NULL || b == NULL || out == NULL) return -1;
	la = strlen(a);
	lb = strlen(b);
	if(!mqc_name_valid(a, la) || !mqc_name_valid(b, lb)) return -1;
	cmp = strcmp(a, b);
	if(cmp == 0) return -1;
	if(outlen < la + lb + 2) return -1;
	lo = cmp < 0 ? a : b;
	hi = cmp < 0 ? b : a;
	memcpy(out, lo, strlen(lo));
	out[strlen(lo)] = ':';
	memcpy(out + strlen(lo) + 1, hi, strlen(hi) + 1);
	return 0;
}
