/*
 * text.c: free text — room names, display names — and stored text on its way into JSON.
 *
 * One rule of UTF-8 for the whole project (RFC 3629): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no sequence cut short; and no NUL byte, which
 * a C string cannot carry. The name checks add "no ASCII control characters" and a length;
 * mqc_utf8_sanitize makes any stored bytes safe for a JSON string.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqchat_store.h"
#include "reason.h"

/* The length of the valid sequence starting at p (left bytes available), or 0 if none
 * starts there. NUL is not valid (see the file comment). */
static size_t seq_len(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
	size_t n, i;

	if(c >= 0x01 && c <= 0x7F) return 1;
	if(c >= 0xC2 && c <= 0xDF) n = 2;
	else if(c >= 0xE0 && c <= 0xEF) n = 3;
	else if(c >= 0xF0 && c <= 0xF4) n = 4;
	else return 0; /* NUL, a continuation byte, C0/C1 (always overlong), F5..FF */
	if(c == 0xE0) lo = 0xA0;      /* below: overlong */
	else if(c == 0xED) hi = 0x9F; /* above: surrogates */
	else if(c == 0xF0) lo = 0x90; /* below: overlong */
	else if(c == 0xF4) hi = 0x8F; /* above: past U+10FFFF */
	if(left < n) return 0;
	if(p[1] < lo || p[1] > hi) return 0;
	for(i = 2; i < n; i++){
		if(p[i] < 0x80 || p[i] > 0xBF) return 0;
	}
	return n;
}

/* Eight bytes at a time while they are ASCII without NUL: no byte has its top bit set, and
 * none is zero ((w - 0x01..) & ~w sets the top bit of every zero byte). The bridge runs
 * this over every text column it answers with, most of them ASCII. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

size_t mqc_utf8_valid_len(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;
	uint64_t w;

	while(i < len){
		if(len - i >= 8){
			memcpy(&w, p + i, 8);
			if(((w | ((w - ONES) & ~w)) & HIGHS) == 0){
				i += 8;
				continue;
			}
		}
		if(p[i] >= 0x01 && p[i] <= 0x7F){
			i++;
			continue;
		}
		n = seq_len(p + i, len - i);
		if(n == 0) return i;
		i += n;
	}
	return len;
}

/* What is wrong at s[at], where no valid sequence starts, as a phrase for a reason. */
static void fault_say(const char *s, size_t len, size_t at, char *reason, size_t reasonlen)
{
	const unsigned char *p = (const unsigned char *)s + at;
	size_t left = len - at, n, i;

	if(p[0] == 0x00){
		store__say(reason, reasonlen, "a NUL byte at offset %zu", at);
		return;
	}
	if(p[0] >= 0x80 && p[0] <= 0xBF){
		store__say(reason, reasonlen, "a stray continuation byte 0x%02x at offset %zu", p[0], at);
		return;
	}
	if(p[0] == 0xC0 || p[0] == 0xC1 || (p[0] == 0xE0 && left > 1 && p[1] >= 0x80 && p[1] < 0xA0)
			|| (p[0] == 0xF0 && left > 1 && p[1] >= 0x80 && p[1] < 0x90)){
		store__say(reason, reasonlen, "an overlong encoding (lead byte 0x%02x) at offset %zu", p[0], at);
		return;
	}
	if(p[0] == 0xED && left > 1 && p[1] >= 0xA0 && p[1] <= 0xBF){
		store__say(reason, reasonlen, "a UTF-16 surrogate (U+D800..U+DFFF) at offset %zu", at);
		return;
	}
	if(p[0] >= 0xF8){
		store__say(reason, reasonlen, "byte 0x%02x, which never occurs in UTF-8, at offset %zu", p[0], at);
		return;
	}
	if(p[0] >= 0xF5 || (p[0] == 0xF4 && left > 1 && p[1] >= 0x90 && p[1] <= 0xBF)){
		store__say(reason, reasonlen, "a code point above U+10FFFF (lead byte 0x%02x) at offset %zu", p[0], at);
		return;
	}
	/* A good lead byte whose continuation bytes are missing. */
	n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : 2;
	for(i = 1; i < n && i < left; i++){
		if(p[i] < 0x80 || p[i] > 0xBF) break;
	}
	if(i == left){
		store__say(reason, reasonlen, "a sequence cut short by the end of the text (lead byte 0x%02x) at offset %zu",
				p[0], at);
	}else{
		store__say(reason, reasonlen, "an incomplete sequence (lead byte 0x%02x, then 0x%02x) at offset %zu",
				p[0], p[i], at);
	}
}

/* The checks every kind of name shares; what differs is max. */
static mqc_text_err name_check(const char *s, size_t len, size_t max, char *reason, size_t reasonlen)
{
	char fault[160];
	size_t i, ok;

	if(s == NULL || len == 0){
		store__say(reason, reasonlen, "must not be empty");
		return MQC_TEXT_EMPTY;
	}
	ok = mqc_utf8_valid_len(s, len);
	if(ok < len && s[ok] != '\0'){
		fault_say(s, len, ok, fault, sizeof(fault));
		store__say(reason, reasonlen, "not valid UTF-8 (%s)", fault);
		return MQC_TEXT_BAD_UTF8;
	}
	/* Valid up to ok, and s[ok] (if any) is NUL: the first control character is at or
	 * before ok. Only single bytes can be controls in UTF-8. */
	for(i = 0; i < len; i++){
		unsigned char c = (unsigned char)s[i];
		if(c < 0x20 || c == 0x7F){
			store__say(reason, reasonlen, "must not contain control characters (byte 0x%02x at offset %zu)", c, i);
			return MQC_TEXT_CONTROL;
		}
	}
	if(len > max){
		store__say(reason, reasonlen, "at most %zu bytes (this one is %zu)", max, len);
		return MQC_TEXT_TOO_LONG;
	}
	return MQC_TEXT_OK;
}

mqc_text_err mqc_room_name_check(const char *s, size_t len, char *reason, size_t reasonlen)
{
	return name_check(s, len, MQC_ROOM_NAME_MAX, reason, reasonlen);
}

mqc_text_err mqc_display_name_check(const char *s, size_t len, char *reason, size_t reasonlen)
{
	return name_check(s, len, MQC_DISPLAY_NAME_MAX, reason, reasonlen);
}

mqc_text_err mqc_token_name_check(const char *s, size_t len, char *reason, size_t reasonlen)
{
	return name_check(s, len, MQC_TOKEN_NAME_MAX, reason, reasonlen);
}

char *mqc_utf8_sanitize(const char *s, size_t len, size_t *outlen, char *reason, size_t reasonlen)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, n, bad = 0, first;
	char *out, fault[160];

	first = mqc_utf8_valid_len(s, len);
	/* Each bad byte becomes 3: no overflow for any len a caller can hold in memory. */
	if(len > (SIZE_MAX - 1) / 3) return NULL;
	out = malloc(len * 3 + 1);
	if(out == NULL) return NULL;
	memcpy(out, s, first);
	o = i = first;
	while(i < len){
		n = seq_len(p + i, len - i);
		if(n){
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		}else{
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
			bad++;
		}
	}
	out[o] = '\0';
	if(outlen) *outlen = o;
	if(bad){
		fault_say(s, len, first, fault, sizeof(fault));
		store__say(reason, reasonlen, "not valid UTF-8 (%s; %zu byte%s replaced)", fault, bad, bad == 1 ? "" : "s");
	}else{
		store__say(reason, reasonlen, "valid UTF-8");
	}
	return out;
}
