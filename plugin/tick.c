/*
 * MOSQ_EVT_TICK: work that must not run inside a client's own callback.
 *
 * Disconnecting a user (mosquitto_kick_client_by_username) frees its contexts; doing it
 * from a callback the broker runs for one of those contexts (its CONNECT, its PUBLISH)
 * is a use-after-free. So users disabled or removed are queued by the snapshot swap and
 * disconnected here, from the main loop. Until then acl.c refuses them everything.
 *
 * Mosquitto 2.0.11 does not fire the tick with per_listener_settings true: there, disabled
 * users keep their connection (refused every publish, subscribe and delivery) until they
 * disconnect. mosquitto.conf.example says so.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

void tick__kick_later(struct mqchat *st, const char *user)
{
	if(st->nkicks == st->kicks_cap){
		size_t cap = st->kicks_cap ? st->kicks_cap * 2 : 8;
		char **k = realloc(st->kicks, cap * sizeof(*k));
		if(!k) return; /* not disconnected, still refused everything by acl.c */
		st->kicks = k;
		st->kicks_cap = cap;
	}
	char *name = strdup(user);
	if(name) st->kicks[st->nkicks++] = name;
}

int tick__handle(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	struct mqchat *st = userdata;

	plugin__swap_if_ready(st);
	for(size_t i = 0; i < st->nkicks; i++){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: user %s was disabled or removed: disconnecting it", st->kicks[i]);
		mosquitto_kick_client_by_username(st->kicks[i], false);
		free(st->kicks[i]);
	}
	st->nkicks = 0;
	return MOSQ_ERR_SUCCESS;
}

void tick__free(struct mqchat *st)
{
	for(size_t i = 0; i < st->nkicks; i++) free(st->kicks[i]);
	free(st->kicks);
	st->kicks = NULL;
	st->nkicks = st->kicks_cap = 0;
}
