/* The store library's reason strings: every failure is returned with one line saying what
 * and why; the caller logs it with its own context. */
#include <stdarg.h>
#include <stdio.h>

#include "reason.h"

void store__say(char *reason, size_t reasonlen, const char *fmt, ...)
{
	va_list ap;

	if(reason == NULL || reasonlen == 0) return;
	va_start(ap, fmt);
	vsnprintf(reason, reasonlen, fmt, ap);
	va_end(ap);
}
