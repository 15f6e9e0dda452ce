/* test_names.c: user/room id validation, room id generation, direct room keys. */
#include <string.h>

#include "check.h"
#include "mqchat_store.h"

static bool valid(const char *s)
{
	return mqc_name_valid(s, strlen(s));
}

int main(void)
{
	char id[23], id2[23], key[2 * MQC_NAME_MAX + 2];
	char longname[MQC_NAME_MAX + 2];
	int i, j;

	CHECK(valid("alice"));
	CHECK(valid("A.b_c-9"));
	CHECK(valid("-"));
	CHECK(!valid(""));
	CHECK(!valid("a b"));
	CHECK(!valid("a/b"));
	CHECK(!valid("a+b"));
	CHECK(!valid("a#"));
	CHECK(!valid("$SYS"));
	CHECK(!valid("al:ice"));
	CHECK(!valid("caf\xc3\xa9"));
	CHECK(!mqc_name_valid(NULL, 3));
	CHECK(!mqc_name_valid("a\0b", 3));
	CHECK(mqc_name_valid("ab/", 2)); /* only len bytes are looked at */

	memset(longname, 'x', sizeof(longname));
	longname[MQC_NAME_MAX] = '\0';
	CHECK(valid(longname));
	longname[MQC_NAME_MAX] = 'x';
	longname[MQC_NAME_MAX + 1] = '\0';
	CHECK(!valid(longname));

	for(i = 0; i < 200; i++){
		CHECK(mqc_room_id_new(id) == 0);
		CHECK(strlen(id) == 22);
		CHECK(id[0] == 'r');
		CHECK(valid(id));
		for(j = 1; j < 22; j++){
			CHECKF((id[j] >= '0' && id[j] <= '9') || (id[j] >= 'A' && id[j] <= 'Z')
					|| (id[j] >= 'a' && id[j] <= 'z'), "id %s", id);
		}
	}
	CHECK(mqc_room_id_new(id) == 0);
	CHECK(mqc_room_id_new(id2) == 0);
	CHECK(strcmp(id, id2) != 0);

	CHECK(mqc_direct_key("bob", "alice", key, sizeof(key)) == 0);
	CHECK(strcmp(key, "alice:bob") == 0);
	CHECK(mqc_direct_key("alice", "bob", key, sizeof(key)) == 0);
	CHECK(strcmp(key, "alice:bob") == 0);
	CHECK(mqc_direct_key("alice", "alice", key, sizeof(key)) == -1);
	CHECK(mqc_direct_key("alice", "b/b", key, sizeof(key)) == -1);
	CHECK(mqc_direct_key("", "bob", key, sizeof(key)) == -1);
	CHECK(mqc_direct_key("alice", "bob", key, 9) == -1);
	CHECK(mqc_direct_key("alice", "bob", key, 10) == 0);
	memset(longname, 'z', MQC_NAME_MAX);
	longname[MQC_NAME_MAX] = '\0';
	CHECK(mqc_direct_key(longname, "a", key, sizeof(key)) == 0);
	CHECK(strlen(key) == MQC_NAME_MAX + 2 && strncmp(key, "a:", 2) == 0);

	return CHECK_RESULT();
}
