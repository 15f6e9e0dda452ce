/*
 * MOSQ_EVT_DISCONNECT: a connection ended (any reason: the client left, a network error,
 * a takeover by a new connection with the same client id, a kick).
 *
 *  - the bridge's store connection: the feed stops sending and keeps everything until the
 *    bridge says hello again (feed.c);
 *  - a user's connection: it no longer counts against max_connections_per_user (auth.c
 *    counted it). Matched by the client pointer as well as the id: in a takeover the old
 *    connection's event comes after the new one was counted under the same client id.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

int disconnect__handle(int event, void *event_data, void *userdata)
{
	(void)event;
	struct mqchat *st = userdata;
	struct mosquitto_evt_disconnect *ed = event_data;

	feed__client_gone(&st->feed, ed->client);
	if(st->ncondemned) tick__forget(st, ed->client);
	if(ed->client == st->req_client) st->req_client = NULL; /* its session queues requests meanwhile */

	const char *cid = mosquitto_client_id(ed->client);
	if(!cid) return MOSQ_ERR_SUCCESS;
	size_t len = strlen(cid);
	struct conn *c = strmap__get(&st->conns, cid, len);
	if(c && c->client == ed->client){
		strmap__del(&st->conns, cid, len);
		if(c->user && c->user->conns) c->user->conns--;
		free(c->token_id);
		free(c->cid);
		free(c);
	}
	return MOSQ_ERR_SUCCESS;
}
