/*
 * topic.c: the topics of docs/protocol.md (topic.h).
 */
#include <stdio.h>
#include <string.h>

#include "mqchat_store.h"
#include "topic.h"

int mqc_topics_init(mqc_topics *t, const char *prefix)
{
	size_t n = prefix ? strlen(prefix) : 0;
	memset(t, 0, sizeof(*t));
	if(n == 0 || n > MQC_TOPIC_PREFIX_MAX || !mqc_name_valid(prefix, n)) return -1;
	t->rooms_len = (size_t)snprintf(t->rooms, sizeof(t->rooms), "%s/rooms/", prefix);
	t->users_len = (size_t)snprintf(t->users, sizeof(t->users), "%s/users/", prefix);
	return 0;
}

static bool split(const char *topic, const char *base, size_t baselen, const char **part, size_t *partlen,
		const char **rest)
{
	if(strncmp(topic, base, baselen) != 0) return false;
	const char *p = topic + baselen;
	const char *slash = strchr(p, '/');
	if(!slash || slash == p) return false;
	*part = p;
	*partlen = (size_t)(slash - p);
	*rest = slash + 1;
	return true;
}

bool mqc_topic_room(const mqc_topics *t, const char *topic, const char **room, size_t *roomlen,
		const char **leaf)
{
	return split(topic, t->rooms, t->rooms_len, room, roomlen, leaf);
}

bool mqc_topic_user(const mqc_topics *t, const char *topic, const char **user, size_t *userlen,
		const char **rest)
{
	return split(topic, t->users, t->users_len, user, userlen, rest);
}

static int make(char *out, size_t outlen, const char *base, const char *part, size_t partlen, const char *leaf)
{
	int n = snprintf(out, outlen, "%s%.*s/%s", base, (int)partlen, part, leaf);
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int mqc_topic_room_make(const mqc_topics *t, const char *room, size_t roomlen, const char *leaf,
		char *out, size_t outlen)
{
	return make(out, outlen, t->rooms, room, roomlen, leaf);
}

int mqc_topic_user_make(const mqc_topics *t, const char *user, const char *leaf, char *out, size_t outlen)
{
	return make(out, outlen, t->users, user, strlen(user), leaf);
}

bool mqc_topic_below(const char *topic, const char *base, const char **rest)
{
	size_t n = strlen(base);
	if(strncmp(topic, base, n) != 0 || topic[n] != '/' || topic[n + 1] == '\0') return false;
	*rest = topic + n + 1;
	return true;
}
