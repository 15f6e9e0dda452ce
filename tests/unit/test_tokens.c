/*
 * Unit tests of device token secrets (store/token.c): the form, the hash, uniqueness.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "mqchat_store.h"

int main(void)
{
	char secret[MQC_TOKEN_LEN + 1], hash[MQC_TOKEN_HASH_HEX + 1], id[MQC_TOKEN_ID_LEN + 1];
	char secret2[MQC_TOKEN_LEN + 1], hash2[MQC_TOKEN_HASH_HEX + 1], id2[MQC_TOKEN_ID_LEN + 1];

	CHECK(mqc_token_new(secret, hash, id) == 0);
	CHECK(mqc_token_new(secret2, hash2, id2) == 0);
	CHECK(strlen(secret) == MQC_TOKEN_LEN && !strncmp(secret, "mqt_", 4));
	CHECK(mqc_token_looks(secret, strlen(secret)));
	CHECK(strcmp(secret, secret2) != 0 && strcmp(hash, hash2) != 0 && strcmp(id, id2) != 0);
	CHECK(strlen(id) == MQC_TOKEN_ID_LEN && !strncmp(id, "tk", 2) && mqc_name_valid(id, strlen(id)));
	CHECK(strlen(hash) == 64);

	/* the hash is SHA-256 of the secret, hex: a known vector */
	char h[MQC_TOKEN_HASH_HEX + 1];
	CHECK(mqc_token_hash_hex("abc", 3, h) == 0);
	CHECK(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	CHECK(mqc_token_hash_hex(secret, strlen(secret), h) == 0 && !strcmp(h, hash));

	/* the form: exactly the prefix and 43 base64url characters */
	CHECK(!mqc_token_looks(secret, strlen(secret) - 1));
	char bad[MQC_TOKEN_LEN + 2];
	memcpy(bad, secret, sizeof(secret));
	bad[10] = '+';
	CHECK(!mqc_token_looks(bad, MQC_TOKEN_LEN));
	memcpy(bad, secret, sizeof(secret));
	bad[0] = 'M';
	CHECK(!mqc_token_looks(bad, MQC_TOKEN_LEN));
	CHECK(!mqc_token_looks("pw-alice-s3cret", 15));
	CHECK(!mqc_token_looks("", 0));

	/* token names follow the free-text rules, at most 64 bytes */
	char why[160], name[80];
	CHECK(mqc_token_name_check("phone", 5, why, sizeof(why)) == MQC_TEXT_OK);
	memset(name, 'a', 65);
	CHECK(mqc_token_name_check(name, 65, why, sizeof(why)) == MQC_TEXT_TOO_LONG);
	CHECK(mqc_token_name_check("a\nb", 3, why, sizeof(why)) == MQC_TEXT_CONTROL);
	return CHECK_RESULT();
}
