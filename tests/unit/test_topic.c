/* test_topic.c: the topics module (store/topic.h), shared by the plugin and the bridge. */
#include <string.h>

#include "check.h"
#include "topic.h"

int main(void)
{
	mqc_topics t;
	const char *a, *rest;
	size_t n;
	char out[128];

	CHECK(mqc_topics_init(&t, "chat") == 0);
	CHECK(mqc_topics_init(&t, "") == -1);
	CHECK(mqc_topics_init(&t, "a/b") == -1);
	CHECK(mqc_topics_init(&t, "ch+t") == -1);
	CHECK(mqc_topics_init(&t, "chat") == 0);

	CHECK(mqc_topic_room(&t, "chat/rooms/r1/send", &a, &n, &rest));
	CHECK(n == 2 && !memcmp(a, "r1", 2) && !strcmp(rest, "send"));
	CHECK(mqc_topic_room(&t, "chat/rooms/r1/", &a, &n, &rest) && !strcmp(rest, ""));
	CHECK(!mqc_topic_room(&t, "chat/rooms//send", &a, &n, &rest));
	CHECK(!mqc_topic_room(&t, "chat/rooms/r1", &a, &n, &rest));
	CHECK(!mqc_topic_room(&t, "chat/users/r1/send", &a, &n, &rest));
	CHECK(!mqc_topic_room(&t, "chatx/rooms/r1/send", &a, &n, &rest));
	CHECK(!mqc_topic_room(&t, "other/rooms/r1/send", &a, &n, &rest));

	CHECK(mqc_topic_user(&t, "chat/users/alice/res/phone", &a, &n, &rest));
	CHECK(n == 5 && !memcmp(a, "alice", 5) && !strcmp(rest, "res/phone"));
	CHECK(!mqc_topic_user(&t, "chat/users/alice", &a, &n, &rest));

	CHECK(mqc_topic_room_make(&t, "r1xyz", 2, "messages", out, sizeof(out)) == 22);
	CHECK(!strcmp(out, "chat/rooms/r1/messages"));
	CHECK(mqc_topic_user_make(&t, "bob", "events", out, sizeof(out)) > 0 && !strcmp(out, "chat/users/bob/events"));
	CHECK(mqc_topic_user_make(&t, "bob", "events", out, 10) == -1);

	CHECK(mqc_topic_below("$CONTROL/mqchat/v1/req/alice", "$CONTROL/mqchat/v1/req", &rest) && !strcmp(rest, "alice"));
	CHECK(!mqc_topic_below("$CONTROL/mqchat/v1/req/", "$CONTROL/mqchat/v1/req", &rest));
	CHECK(!mqc_topic_below("$CONTROL/mqchat/v1/reqx/a", "$CONTROL/mqchat/v1/req", &rest));
	return CHECK_RESULT();
}
