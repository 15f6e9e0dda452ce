/*
 * topic.h: the topics of docs/protocol.md, in one place for the plugin and the bridge.
 *
 *   <prefix>/rooms/{room}/send | messages      a room's chat
 *   <prefix>/users/{user}/req | res[/...] | events   a user's requests, answers, events
 *
 * A topic is split without copying: the parts point into it.
 */
#ifndef MQCHAT_TOPIC_H
#define MQCHAT_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#define MQC_TOPIC_PREFIX_MAX 64

typedef struct mqc_topics {
	char rooms[MQC_TOPIC_PREFIX_MAX + 8]; /* "<prefix>/rooms/" */
	char users[MQC_TOPIC_PREFIX_MAX + 8]; /* "<prefix>/users/" */
	size_t rooms_len, users_len;
} mqc_topics;

/* prefix: one topic level of [A-Za-z0-9._-] ("chat"). 0, or -1 if it is not one. */
int mqc_topics_init(mqc_topics *t, const char *prefix);

/* "<prefix>/rooms/{room}/{leaf}": room (roomlen bytes, not NUL-terminated) and leaf point
 * into topic. false for any other topic, or an empty room. */
bool mqc_topic_room(const mqc_topics *t, const char *topic, const char **room, size_t *roomlen,
		const char **leaf);
/* "<prefix>/users/{user}/{rest}": the same for a user's topics. */
bool mqc_topic_user(const mqc_topics *t, const char *topic, const char **user, size_t *userlen,
		const char **rest);

/* "<prefix>/rooms/{room}/{leaf}" into out. Its length, or -1 if it does not fit. */
int mqc_topic_room_make(const mqc_topics *t, const char *room, size_t roomlen, const char *leaf,
		char *out, size_t outlen);
/* "<prefix>/users/{user}/{leaf}" into out. Its length, or -1 if it does not fit. */
int mqc_topic_user_make(const mqc_topics *t, const char *user, const char *leaf, char *out, size_t outlen);

/* "<base>/<rest>": rest points into topic; false for any other topic or an empty rest.
 * For the plugin↔bridge topics ($CONTROL/mqchat/v1/...). */
bool mqc_topic_below(const char *topic, const char *base, const char **rest);

#endif
