/*
 * test_text.c: the free-text rules (mqc_room_name_check, mqc_display_name_check), the UTF-8
 * check under them (mqc_utf8_valid_len) and the sanitiser the bridge answers stored text
 * with (mqc_utf8_sanitize). Cases are data: one table per function.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mqchat_store.h"

#define FFFD "\xEF\xBF\xBD"

/* A name and what both name checks must say of it. len -1: strlen(s). */
static const struct name_case {
	const char *s;
	int len;
	mqc_text_err want;
	const char *reason; /* a substring of the reason, NULL for MQC_TEXT_OK */
} name_cases[] = {
	{ "Lunch", -1, MQC_TEXT_OK, NULL },
	{ "a", -1, MQC_TEXT_OK, NULL },
	{ " ", -1, MQC_TEXT_OK, NULL },                          /* a space is not a control character */
	{ "caf\xC3\xA9", -1, MQC_TEXT_OK, NULL },                /* U+00E9 */
	{ "\xE2\x82\xAC 5", -1, MQC_TEXT_OK, NULL },             /* U+20AC */
	{ "\xED\x9F\xBF", -1, MQC_TEXT_OK, NULL },               /* U+D7FF, just below the surrogates */
	{ "\xEE\x80\x80", -1, MQC_TEXT_OK, NULL },               /* U+E000, just above them */
	{ FFFD, -1, MQC_TEXT_OK, NULL },
	{ "\xF0\x9F\x98\x80", -1, MQC_TEXT_OK, NULL },           /* U+1F600 */
	{ "\xF4\x8F\xBF\xBF", -1, MQC_TEXT_OK, NULL },           /* U+10FFFF, the last code point */
	{ "\xC2\x80", -1, MQC_TEXT_OK, NULL },                   /* U+0080 (C1 controls are not refused) */

	{ "", 0, MQC_TEXT_EMPTY, "empty" },
	{ NULL, 0, MQC_TEXT_EMPTY, "empty" },

	{ "caf\xE9", -1, MQC_TEXT_BAD_UTF8, "cut short by the end" },      /* Latin-1 */
	{ "caf\xE9s", -1, MQC_TEXT_BAD_UTF8, "incomplete sequence" },
	{ "\xE2\x82", -1, MQC_TEXT_BAD_UTF8, "cut short by the end" },      /* truncated 3-byte */
	{ "\xF0\x9F\x98", -1, MQC_TEXT_BAD_UTF8, "cut short by the end" },  /* truncated 4-byte */
	{ "\xC3", -1, MQC_TEXT_BAD_UTF8, "offset 0" },
	{ "ab\x80", -1, MQC_TEXT_BAD_UTF8, "stray continuation byte 0x80 at offset 2" },
	{ "\xBF", -1, MQC_TEXT_BAD_UTF8, "stray continuation" },
	{ "\xC0\xAF", -1, MQC_TEXT_BAD_UTF8, "overlong" },                  /* '/' in two bytes */
	{ "\xC1\xBF", -1, MQC_TEXT_BAD_UTF8, "overlong" },
	{ "\xC0\x80", -1, MQC_TEXT_BAD_UTF8, "overlong" },                  /* "modified UTF-8" NUL */
	{ "\xE0\x80\xAF", -1, MQC_TEXT_BAD_UTF8, "overlong" },
	{ "\xE0\x9F\xBF", -1, MQC_TEXT_BAD_UTF8, "overlong" },
	{ "\xF0\x80\x80\xAF", -1, MQC_TEXT_BAD_UTF8, "overlong" },
	{ "\xF0\x8F\xBF\xBF", -1, MQC_TEXT_BAD_UTF8, "overlong" },
	{ "\xED\xA0\x80", -1, MQC_TEXT_BAD_UTF8, "surrogate" },              /* U+D800 */
	{ "\xED\xBF\xBF", -1, MQC_TEXT_BAD_UTF8, "surrogate" },              /* U+DFFF */
	{ "\xED\xA0\xBD\xED\xB8\x80", -1, MQC_TEXT_BAD_UTF8, "surrogate" },  /* CESU-8 pair */
	{ "\xF4\x90\x80\x80", -1, MQC_TEXT_BAD_UTF8, "above U+10FFFF" },
	{ "\xF5\x80\x80\x80", -1, MQC_TEXT_BAD_UTF8, "above U+10FFFF" },
	{ "\xFF", -1, MQC_TEXT_BAD_UTF8, "byte 0xff, which never occurs in UTF-8, at offset 0" },
	{ "\xF8\x88\x80\x80\x80", -1, MQC_TEXT_BAD_UTF8, "0xf8, which never" },   /* old 5-byte form */
	{ "\xFE\xFF", -1, MQC_TEXT_BAD_UTF8, "offset 0" },

	{ "a\0b", 3, MQC_TEXT_CONTROL, "byte 0x00 at offset 1" },
	{ "\0", 1, MQC_TEXT_CONTROL, "0x00" },
	{ "a\nb", -1, MQC_TEXT_CONTROL, "byte 0x0a at offset 1" },
	{ "\tx", -1, MQC_TEXT_CONTROL, "0x09" },
	{ "x\r", -1, MQC_TEXT_CONTROL, "0x0d" },
	{ "\x01", -1, MQC_TEXT_CONTROL, "0x01" },
	{ "\x1B[31mred", -1, MQC_TEXT_CONTROL, "0x1b" },  /* a terminal escape */
	{ "\x1F", -1, MQC_TEXT_CONTROL, "0x1f" },
	{ "del\x7F", -1, MQC_TEXT_CONTROL, "0x7f" },
	{ "caf\xC3\xA9\n", -1, MQC_TEXT_CONTROL, "offset 5" },
	{ "a\0\xFF", 3, MQC_TEXT_CONTROL, "0x00" },       /* the NUL comes first */
};

/* Length cases, built at run time: exactly at the limit is fine, one byte more is not. */
static void check_lengths(mqc_text_err (*fn)(const char *, size_t, char *, size_t), size_t max, const char *what)
{
	char buf[600], reason[200];
	size_t i;

	memset(buf, 'n', sizeof(buf));
	CHECKF(fn(buf, max, reason, sizeof(reason)) == MQC_TEXT_OK, "%s: %zu ASCII bytes", what, max);
	CHECKF(fn(buf, max + 1, reason, sizeof(reason)) == MQC_TEXT_TOO_LONG, "%s: %zu ASCII bytes", what, max + 1);
	CHECKF(strstr(reason, "at most") != NULL, "%s: %s", what, reason);
	CHECKF(fn(buf, sizeof(buf), reason, sizeof(reason)) == MQC_TEXT_TOO_LONG, "%s", what);

	/* The limit is in bytes, not characters: 3-byte euro signs up to max exactly, then over. */
	size_t n = 0;
	while(n + 3 <= max){
		memcpy(buf + n, "\xE2\x82\xAC", 3);
		n += 3;
	}
	memset(buf + n, 'e', max - n);
	CHECKF(fn(buf, max, reason, sizeof(reason)) == MQC_TEXT_OK, "%s: %s", what, reason);
	memcpy(buf + max - (max % 3), "\xE2\x82\xAC", 3); /* the last euro sign now ends past max */
	i = max - (max % 3) + 3;
	CHECKF(fn(buf, i, reason, sizeof(reason)) == MQC_TEXT_TOO_LONG, "%s: %zu bytes", what, i);
	/* Over the limit and bad: the content is named first (the enum's order). */
	buf[max + 5] = '\n';
	CHECKF(fn(buf, max + 10, reason, sizeof(reason)) == MQC_TEXT_CONTROL, "%s", what);
}

static void test_names(void)
{
	size_t i;
	char reason[200];

	for(i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++){
		const struct name_case *c = &name_cases[i];
		size_t len = c->len < 0 ? strlen(c->s) : (size_t)c->len;
		mqc_text_err (*fns[2])(const char *, size_t, char *, size_t) = { mqc_room_name_check, mqc_display_name_check };
		for(int f = 0; f < 2; f++){
			strcpy(reason, "(unset)");
			mqc_text_err got = fns[f](c->s, len, reason, sizeof(reason));
			CHECKF(got == c->want, "case %zu (%s): got %d, want %d: %s", i, f ? "display" : "room", got, c->want, reason);
			if(c->reason){
				CHECKF(strstr(reason, c->reason) != NULL, "case %zu: reason \"%s\" lacks \"%s\"", i, reason, c->reason);
			}
		}
	}
	check_lengths(mqc_room_name_check, MQC_ROOM_NAME_MAX, "room name");
	check_lengths(mqc_display_name_check, MQC_DISPLAY_NAME_MAX, "display name");
	CHECK(MQC_ROOM_NAME_MAX == 128 && MQC_DISPLAY_NAME_MAX == 128); /* docs/protocol.md "Limits" */
	/* reason may be NULL */
	CHECK(mqc_room_name_check("a\n", 2, NULL, 0) == MQC_TEXT_CONTROL);
}

/* Stored text and what the bridge answers with in its place. */
static const struct sanitize_case {
	const char *in;
	int len;             /* -1: strlen(in) */
	const char *out;
	const char *reason;  /* a substring of the reason */
} sanitize_cases[] = {
	{ "hello", -1, "hello", "valid UTF-8" },
	{ "", 0, "", "valid UTF-8" },
	{ "caf\xC3\xA9", -1, "caf\xC3\xA9", "valid UTF-8" },
	{ "line\nbreak\t\x7F", -1, "line\nbreak\t\x7F", "valid UTF-8" },       /* controls are JSON-safe: kept */
	{ "caf\xE9", -1, "caf" FFFD, "cut short by the end of the text (lead byte 0xe9) at offset 3; 1 byte replaced" },
	{ "B\xE4se Buben", -1, "B" FFFD "se Buben", "incomplete sequence (lead byte 0xe4, then 0x73) at offset 1" },
	{ "\xC0\xAF", -1, FFFD FFFD, "overlong encoding (lead byte 0xc0) at offset 0; 2 bytes replaced" },
	{ "\xE0\x80\xAF!", -1, FFFD FFFD FFFD "!", "overlong" },
	{ "x\xED\xA0\x80y", -1, "x" FFFD FFFD FFFD "y", "surrogate" },
	{ "\xF4\x90\x80\x80", -1, FFFD FFFD FFFD FFFD, "above U+10FFFF" },
	{ "\xE2\x82", -1, FFFD FFFD, "cut short" },
	{ "\xF0\x9F\x98\x80\xFF", -1, "\xF0\x9F\x98\x80" FFFD, "offset 4" },
	{ "a\0b", 3, "a" FFFD "b", "a NUL byte at offset 1; 1 byte replaced" },
	{ "\x80\x80\x80", -1, FFFD FFFD FFFD, "stray continuation byte 0x80 at offset 0; 3 bytes replaced" },
	{ "ok " FFFD, -1, "ok " FFFD, "valid UTF-8" },                          /* an honest U+FFFD stays */
};

static void test_sanitize(void)
{
	size_t i, outlen;
	char reason[300];

	for(i = 0; i < sizeof(sanitize_cases) / sizeof(sanitize_cases[0]); i++){
		const struct sanitize_case *c = &sanitize_cases[i];
		size_t len = c->len < 0 ? strlen(c->in) : (size_t)c->len;
		char *out = mqc_utf8_sanitize(c->in, len, &outlen, reason, sizeof(reason));
		CHECKF(out != NULL, "case %zu", i);
		if(!out) continue;
		CHECKF(outlen == strlen(c->out) && memcmp(out, c->out, outlen) == 0 && out[outlen] == '\0',
				"case %zu: got %zu bytes \"%s\"", i, outlen, out);
		CHECKF(strstr(reason, c->reason) != NULL, "case %zu: reason \"%s\" lacks \"%s\"", i, reason, c->reason);
		CHECKF(mqc_utf8_valid_len(out, outlen) == outlen, "case %zu: output not valid", i);
		json_t *j = json_stringn(out, outlen);
		CHECKF(j != NULL, "case %zu: jansson refuses the output", i);
		json_decref(j);
		free(out);
	}

	/* mqc_utf8_valid_len stops at the first bad byte */
	CHECK(mqc_utf8_valid_len("ab\xFF" "cd", 5) == 2);
	CHECK(mqc_utf8_valid_len("ab\0cd", 5) == 2);
	CHECK(mqc_utf8_valid_len("\xC3\xA9\xC3", 3) == 2);
	CHECK(mqc_utf8_valid_len("", 0) == 0);
	CHECK(mqc_utf8_valid_len("abc", 2) == 2); /* only len bytes are looked at */

	/* Random bytes: the check agrees with jansson's own (which admits NUL), and the
	 * sanitised copy is always something jansson takes, unchanged when it was valid. */
	unsigned seed = 12345;
	for(int round = 0; round < 20000; round++){
		unsigned char buf[12];
		size_t n = (size_t)(round % 12) + 1;
		for(size_t k = 0; k < n; k++){
			seed = seed * 1103515245u + 12345u;
			unsigned char b = (unsigned char)(seed >> 16);
			/* bias towards the interesting bytes */
			if(round & 1) b = (unsigned char)(0x80 | (b & 0x7F));
			buf[k] = b ? b : 'z';
		}
		size_t ok = mqc_utf8_valid_len((const char *)buf, n);
		json_t *j = json_stringn((const char *)buf, n);
		CHECKF((ok == n) == (j != NULL), "round %d: valid_len %zu of %zu, jansson %s", round, ok, n, j ? "took it" : "refused");
		json_decref(j);
		char *out = mqc_utf8_sanitize((const char *)buf, n, &outlen, NULL, 0);
		CHECK(out != NULL);
		if(!out) continue;
		j = json_stringn(out, outlen);
		CHECKF(j != NULL, "round %d", round);
		json_decref(j);
		if(ok == n) CHECK(outlen == n && memcmp(out, buf, n) == 0);
		else CHECK(outlen > n);
		free(out);
	}
}

int main(void)
{
	test_names();
	test_sanitize();
	return CHECK_RESULT();
}
