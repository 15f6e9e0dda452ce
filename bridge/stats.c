/* The histogram of stats.h. */
#include <time.h>

#include "stats.h"

uint64_t stat_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned stat_bucket(uint64_t v)
{
	if(v < STAT_SUB) return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= STAT_SUB_BITS */
	unsigned sub = (unsigned)(v >> (e - STAT_SUB_BITS)) & (STAT_SUB - 1);
	return (e - STAT_SUB_BITS + 1) * STAT_SUB + sub;
}

/* The middle of bucket i. */
static double stat_bucket_mid(unsigned i)
{
	if(i < STAT_SUB) return i;
	unsigned e = i / STAT_SUB + STAT_SUB_BITS - 1, sub = i % STAT_SUB;
	double width = (double)(1ULL << (e - STAT_SUB_BITS));
	return (double)(STAT_SUB + sub) * width + width / 2;
}

void stat_add(struct op_stat *st, uint64_t v)
{
	st->n++;
	if(v > st->max_ns) st->max_ns = v;
	st->hist[stat_bucket(v)]++;
}

double stat_quantile(const struct op_stat *st, double p)
{
	uint64_t rank = (uint64_t)(p * (double)st->n + 0.999999), seen = 0;
	if(rank < 1) rank = 1;
	for(unsigned i = 0; i < STAT_BUCKETS; i++){
		seen += st->hist[i];
		if(seen >= rank){
			double v = stat_bucket_mid(i);
			return v > (double)st->max_ns ? (double)st->max_ns : v;
		}
	}
	return (double)st->max_ns;
}
