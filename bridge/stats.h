/*
 * A fixed log-linear histogram for timings (ns) and sizes: below 32 one bucket per unit,
 * above that 32 buckets per power of two, so a reported percentile is within 1/32 (3 %) of
 * the truth. No allocation; not thread-safe (each owner guards its own).
 */
#ifndef MQCHAT_BRIDGE_STATS_H
#define MQCHAT_BRIDGE_STATS_H

#include <stdint.h>

#define STAT_SUB_BITS 5
#define STAT_SUB (1u << STAT_SUB_BITS)
#define STAT_BUCKETS ((64 - STAT_SUB_BITS + 1) * STAT_SUB)

struct op_stat {
	uint64_t n;
	uint64_t max_ns; /* the largest value added (ns for timings) */
	uint32_t hist[STAT_BUCKETS];
};

void stat_add(struct op_stat *st, uint64_t v);
/* The p-quantile (0 < p <= 1): the middle of the bucket holding the ceil(p*n)-th value,
 * never more than the largest value seen. */
double stat_quantile(const struct op_stat *st, double p);
/* CLOCK_MONOTONIC in ns. */
uint64_t stat_now_ns(void);

#endif
