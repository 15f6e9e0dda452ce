/*
 * The bridge's logging and clocks (bridge.h). One fprintf per line, so lines from the
 * loop, request, writer and checkpointer threads never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "bridge.h"

static int log_level = BLOG_INFO;

void bridge__log_set_level(int level)
{
	log_level = level;
}

int bridge__log_enabled(int level)
{
	return level <= log_level;
}

static void emit(int level, const char *module, const char *msg)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	struct timespec ts;
	struct tm tm;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000,
			names[level < 0 ? 0 : level > 3 ? 3 : level], module, msg);
}

void bridge__log(int level, const char *module, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if(level > log_level) return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(level, module, msg);
}

void bridge__log_repeated(struct log_repeat *lr, int level, const char *module, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	int64_t now = bridge__mono_ms();

	if(level > log_level) return;
	if(!lr->last_ms || now - lr->last_ms >= LOG_REPEAT_MS){
		lr->last_ms = now;
		lr->lines = 0;
	}
	if(lr->lines >= (lr->limit ? lr->limit : 1)){
		lr->suppressed++;
		return;
	}
	lr->lines++;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if(lr->suppressed && n > 0 && (size_t)n < sizeof(msg)){
		snprintf(msg + n, sizeof(msg) - (size_t)n, " (and %u more times not logged before this)", lr->suppressed);
	}
	emit(level, module, msg);
	lr->suppressed = 0;
}

int64_t bridge__mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
