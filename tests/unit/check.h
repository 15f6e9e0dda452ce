/*
 * check.h: the unit tests' one assertion. A failed CHECK prints file:line and the
 * expression (plus an optional printf-style detail) and counts a failure; the test's
 * main() returns CHECK_RESULT() so CTest sees a non-zero exit.
 */
#ifndef MQCHAT_CHECK_H
#define MQCHAT_CHECK_H

#include <stdio.h>

static int check_failures;
static int check_count;

#define CHECK(expr) CHECKF(expr, "%s", "")

#define CHECKF(expr, ...) do { \
	check_count++; \
	if(!(expr)){ \
		check_failures++; \
		fprintf(stderr, "%s:%d: check failed: %s ", __FILE__, __LINE__, #expr); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
	} \
} while(0)

#define CHECK_RESULT() (printf("%d checks, %d failed\n", check_count, check_failures), \
		check_failures ? 1 : 0)

#endif
