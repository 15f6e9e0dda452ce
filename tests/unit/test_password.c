/* test_password.c: PBKDF2-HMAC-SHA512 hashing, verification, and malformed hash strings. */
#include <string.h>

#include "check.h"
#include "mqchat_store.h"

int main(void)
{
	char h1[MQC_PW_HASH_MAX], h2[MQC_PW_HASH_MAX], bad[MQC_PW_HASH_MAX + 32];
	const char *pw = "correct horse";
	size_t i;

	CHECK(mqc_password_hash(pw, strlen(pw), 1000, h1, sizeof(h1)) == 0);
	CHECK(strncmp(h1, "pbkdf2-sha512$1000$", 19) == 0);
	CHECK(strchr(h1, '\n') == NULL);
	CHECK(strlen(h1) == 19 + 24 + 1 + 88);
	CHECK(mqc_password_verify(pw, strlen(pw), h1) == 1);
	CHECK(mqc_password_verify("correct horsf", 13, h1) == 0);
	CHECK(mqc_password_verify("correct hors", 12, h1) == 0);
	CHECK(mqc_password_verify("", 0, h1) == 0);
	/* only pwlen bytes count */
	CHECK(mqc_password_verify("correct horse!", 13, h1) == 1);

	/* same password, fresh salt: different strings, both verify */
	CHECK(mqc_password_hash(pw, strlen(pw), 1000, h2, sizeof(h2)) == 0);
	CHECK(strcmp(h1, h2) != 0);
	CHECK(mqc_password_verify(pw, strlen(pw), h2) == 1);

	/* bad arguments */
	CHECK(mqc_password_hash(pw, strlen(pw), 999, h2, sizeof(h2)) == -1);
	CHECK(mqc_password_hash(pw, strlen(pw), 10000001, h2, sizeof(h2)) == -1);
	CHECK(mqc_password_hash(pw, strlen(pw), 1000, h2, 40) == -1);
	CHECK(mqc_password_hash(NULL, 0, 1000, h2, sizeof(h2)) == -1);

	/* malformed strings */
	CHECK(mqc_password_verify(pw, strlen(pw), NULL) == -1);
	CHECK(mqc_password_verify(pw, strlen(pw), "") == -1);
	CHECK(mqc_password_verify(pw, strlen(pw), "plain") == -1);
	CHECK(mqc_password_verify(pw, strlen(pw), "pbkdf2-sha256$1000$AAAA$AAAA") == -1);
	CHECK(mqc_password_verify(pw, strlen(pw), "pbkdf2-sha512$1000$") == -1);
	CHECK(mqc_password_verify(pw, strlen(pw), "pbkdf2-sha512$$$") == -1);
	/* iteration counts: strict decimal within 1000..10,000,000 */
	{
		const char *iters[] = { "999", "01000", "+1000", "-1000", "1000x", " 1000", "10000001",
			"99999999999", "4294968296", "" };
		const char *rest = strchr(h1 + 14, '$');
		for(i = 0; i < sizeof(iters)/sizeof(iters[0]); i++){
			snprintf(bad, sizeof(bad), "pbkdf2-sha512$%s%s", iters[i], rest);
			CHECKF(mqc_password_verify(pw, strlen(pw), bad) == -1, "iterations '%s'", iters[i]);
		}
	}
	/* truncated key, extra byte, bad base64 character, missing padding, trailing newline */
	snprintf(bad, sizeof(bad), "%.*s", (int)strlen(h1) - 4, h1);
	CHECK(mqc_password_verify(pw, strlen(pw), bad) == -1);
	snprintf(bad, sizeof(bad), "%sA", h1);
	CHECK(mqc_password_verify(pw, strlen(pw), bad) == -1);
	snprintf(bad, sizeof(bad), "%s\n", h1);
	CHECK(mqc_password_verify(pw, strlen(pw), bad) == -1);
	strcpy(bad, h1);
	bad[19 + 3] = '*';
	CHECK(mqc_password_verify(pw, strlen(pw), bad) == -1);
	strcpy(bad, h1);
	bad[strlen(bad) - 1] = 'A'; /* '=' padding replaced */
	CHECK(mqc_password_verify(pw, strlen(pw), bad) == -1);
	/* a tampered key decodes but does not match */
	strcpy(bad, h1);
	bad[19 + 25] = bad[19 + 25] == 'A' ? 'B' : 'A';
	CHECK(mqc_password_verify(pw, strlen(pw), bad) == 0);

	return CHECK_RESULT();
}
