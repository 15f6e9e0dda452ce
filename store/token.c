/*
 * token.c: device tokens (docs/logging-in.md).
 *
 * A token's secret is "mqt_" + 43 base64url characters: 32 bytes (256 bits) from the OS
 * CSPRNG. Only its SHA-256 is kept (hex), by the database and the plugin: a secret this
 * random cannot be guessed from its hash, so no slow hash is needed, and checking one
 * costs a microsecond. The prefix lets the plugin tell a token from a password without
 * looking anything up, and lets secret scanners find leaked ones.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "mqchat_store.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char hexd[] = "0123456789abcdef";

static bool b64url_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

bool mqc_token_looks(const char *s, size_t len)
{
	if(len != MQC_TOKEN_LEN || memcmp(s, MQC_TOKEN_PREFIX, sizeof(MQC_TOKEN_PREFIX) - 1) != 0) return false;
	for(size_t i = sizeof(MQC_TOKEN_PREFIX) - 1; i < len; i++){
		if(!b64url_char(s[i])) return false;
	}
	return true;
}

bool mqc_jwt_looks(const char *s, size_t len)
{
	if(len < 10 || len > MQC_JWT_MAX || strncmp(s, "eyJ", 3) != 0) return false;
	int dots = 0;
	for(size_t i = 0; i < len; i++){
		if(s[i] == '.') dots++;
		else if(!b64url_char(s[i])) return false;
	}
	return dots == 2;
}

int mqc_token_hash_hex(const char *secret, size_t len, char out[static MQC_TOKEN_HASH_HEX + 1])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	if(EVP_Digest(secret, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) return -1;
	for(int i = 0; i < 32; i++){
		out[2 * i] = hexd[md[i] >> 4];
		out[2 * i + 1] = hexd[md[i] & 15];
	}
	out[MQC_TOKEN_HASH_HEX] = '\0';
	OPENSSL_cleanse(md, sizeof(md));
	return 0;
}

int mqc_token_new(char secret[static MQC_TOKEN_LEN + 1], char hash[static MQC_TOKEN_HASH_HEX + 1],
		char id[static MQC_TOKEN_ID_LEN + 1])
{
	unsigned char raw[33], rid[8];
	if(RAND_bytes(raw, 32) != 1 || RAND_bytes(rid, sizeof(rid)) != 1) return -1;
	raw[32] = 0;
	size_t p = sizeof(MQC_TOKEN_PREFIX) - 1;
	memcpy(secret, MQC_TOKEN_PREFIX, p);
	/* 32 bytes = 10 groups of 3 (40 characters) + 2 bytes (3 characters), no padding */
	for(int i = 0; i < 30; i += 3){
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		secret[p++] = b64url[(v >> 18) & 63];
		secret[p++] = b64url[(v >> 12) & 63];
		secret[p++] = b64url[(v >> 6) & 63];
		secret[p++] = b64url[v & 63];
	}
	uint32_t v = (uint32_t)raw[30] << 16 | (uint32_t)raw[31] << 8;
	secret[p++] = b64url[(v >> 18) & 63];
	secret[p++] = b64url[(v >> 12) & 63];
	secret[p++] = b64url[(v >> 6) & 63];
	secret[p] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	id[0] = 't';
	id[1] = 'k';
	for(int i = 0; i < 8; i++){
		id[2 + 2 * i] = hexd[rid[i] >> 4];
		id[3 + 2 * i] = hexd[rid[i] & 15];
	}
	id[MQC_TOKEN_ID_LEN] = '\0';
	if(mqc_token_hash_hex(secret, MQC_TOKEN_LEN, hash)){
		OPENSSL_cleanse(secret, MQC_TOKEN_LEN);
		return -1;
	}
	return 0;
}
