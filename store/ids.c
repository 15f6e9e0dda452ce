/*
 * ids.c: message ids, ((ms since 2024-01-01) << 12) | sequence.
 *
 * Unique and growing with time, below 2^53 (JavaScript reads them exactly). The generator
 * never goes backwards: a clock step back, or more than 4096 ids in one millisecond, just
 * borrows from the future (last+1). Keeping ids unique across restarts is the caller's job:
 * it passes a floor (highest stored id, or a lease) to mqc_idgen_init.
 */
#include <time.h>

#include "mqchat_store.h"

uint64_t mqc_id_from_ms(int64_t now_ms)
{
	int64_t rel = now_ms - MQC_ID_EPOCH_MS;

	/* Before the epoch counts as the epoch; past 2093 (41 bits of ms) as the last ms. */
	if(rel < 0) rel = 0;
	if((uint64_t)rel > (MQC_ID_MAX >> MQC_ID_SEQ_BITS)) rel = (int64_t)(MQC_ID_MAX >> MQC_ID_SEQ_BITS);
	return (uint64_t)rel << MQC_ID_SEQ_BITS;
}

int64_t mqc_id_to_ms(uint64_t id)
{
	return (int64_t)(id >> MQC_ID_SEQ_BITS) + MQC_ID_EPOCH_MS;
}

void mqc_idgen_init(mqc_idgen *g, uint64_t floor)
{
	g->last = floor;
}

uint64_t mqc_id_next(mqc_idgen *g, int64_t now_ms)
{
	uint64_t id = mqc_id_from_ms(now_ms);

	if(id <= g->last) id = g->last + 1;
	g->last = id;
	return id;
}

int64_t mqc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
