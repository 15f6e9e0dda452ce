/* test_ids.c: message ids are unique, increasing, below 2^53, and carry their millisecond. */
#include "check.h"
#include "mqchat_store.h"

int main(void)
{
	mqc_idgen g;
	int64_t now = 1764000000123LL;
	uint64_t prev, id, first;
	int i;

	CHECK(mqc_id_from_ms(MQC_ID_EPOCH_MS) == 0);
	CHECK(mqc_id_from_ms(MQC_ID_EPOCH_MS - 5000) == 0);
	CHECK(mqc_id_to_ms(mqc_id_from_ms(now)) == now);
	CHECK(mqc_id_to_ms(mqc_id_from_ms(now) + 4095) == now);
	CHECK(mqc_id_to_ms(mqc_id_from_ms(now) + 4096) == now + 1);
	CHECK(mqc_id_from_ms(now) < MQC_ID_MAX);
	/* 2093 and beyond saturate below 2^53 instead of wrapping */
	CHECK(mqc_id_from_ms(4102444800000LL * 2) <= MQC_ID_MAX);
	CHECK(mqc_id_from_ms(4102444800000LL * 2) >= mqc_id_from_ms(now));
	CHECK(mqc_now_ms() > 1704067200000LL);

	/* 5000 ids in one millisecond: unique and increasing, spilling into the next ms */
	mqc_idgen_init(&g, 0);
	first = prev = mqc_id_next(&g, now);
	CHECK(first == mqc_id_from_ms(now));
	for(i = 1; i < 5000; i++){
		id = mqc_id_next(&g, now);
		CHECKF(id == prev + 1, "i=%d id=%llu prev=%llu", i, (unsigned long long)id, (unsigned long long)prev);
		CHECK(id < MQC_ID_MAX);
		prev = id;
	}
	CHECK(mqc_id_to_ms(prev) == now + 1);

	/* the clock steps back an hour: ids still grow */
	id = mqc_id_next(&g, now - 3600 * 1000);
	CHECK(id == prev + 1);
	prev = id;
	/* the clock catches up: the id jumps to the new ms */
	id = mqc_id_next(&g, now + 10);
	CHECK(id == mqc_id_from_ms(now + 10));
	CHECK(id > prev);

	/* a floor (highest stored id, or the lease) is never handed out again */
	mqc_idgen_init(&g, mqc_id_from_ms(now + 60000));
	id = mqc_id_next(&g, now);
	CHECK(id == mqc_id_from_ms(now + 60000) + 1);
	CHECK(g.last == id);

	return CHECK_RESULT();
}
