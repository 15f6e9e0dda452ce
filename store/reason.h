/* Internal to the store library: how its functions write a failure's one-line reason. */
#ifndef MQCHAT_STORE_REASON_H
#define MQCHAT_STORE_REASON_H

#include <stddef.h>

/* printf into reason (if not NULL and reasonlen > 0), truncating. */
void store__say(char *reason, size_t reasonlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
