/*
 * message.c: chat message validation and stamping (DESIGN.md "A message").
 *
 * mqc_msg_parse runs in the plugin's ACL WRITE check, mqc_msg_stamp in its MESSAGE event:
 * both are on the broker's single thread, so they do no I/O and copy nothing they can
 * borrow. mqc_stamped_parse is the bridge's side: it reads back what mqc_msg_stamp wrote.
 *
 * Every refusal writes a one-line reason that names the field and what was expected; the
 * caller logs it with its own context (client, room).
 */
#include <stdio.h>
#include <string.h>

#include "mqchat_store.h"
#include "reason.h"

#define URL_MAX 2048
#define ATT_NAME_MAX 255
#define MIME_MAX 127
#define CLIENT_MSG_ID_MAX 64

enum msg_type { T_MSG, T_ATTACHMENT, T_IMAGE, T_FILE };

static const char *const type_names[] = { "msg", "attachment", "image", "file" };


static int type_from_string(const char *s)
{
	size_t i;

	for(i = 0; i < sizeof(type_names)/sizeof(type_names[0]); i++){
		if(!strcmp(s, type_names[i])) return (int)i;
	}
	return -1;
}

/* A MIME type as "type/subtype": RFC 6838 restricted-name characters on each side. */
static bool mime_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		|| strchr("!#$&-^_.+", c) != NULL;
}

static bool mime_valid(const char *s, size_t len)
{
	size_t i, slash = 0, nslash = 0;

	for(i = 0; i < len; i++){
		if(s[i] == '/'){
			slash = i;
			nslash++;
		}else if(s[i] == '\0' || !mime_char((unsigned char)s[i])){
			return false;
		}
	}
	return nslash == 1 && slash > 0 && slash + 1 < len;
}

static mqc_msg_err check_attachment(json_t *att, int type, char *reason, size_t reasonlen)
{
	const char *key;
	json_t *v;
	json_t *url = NULL;

	if(!json_is_object(att)){
		store__say(reason, reasonlen, "attachment: expected an object");
		return MQC_MSG_BAD_FIELD;
	}
	json_object_foreach(att, key, v){
		if(!strcmp(key, "url")){
			const char *s;
			size_t len, i;

			url = v;
			if(!json_is_string(v) || json_string_length(v) == 0){
				store__say(reason, reasonlen, "attachment.url: expected a non-empty string");
				return MQC_MSG_BAD_FIELD;
			}
			s = json_string_value(v);
			len = json_string_length(v);
			if(len > URL_MAX){
				store__say(reason, reasonlen, "attachment.url: exceeds %d bytes", URL_MAX);
				return MQC_MSG_BAD_FIELD;
			}
			if(strncmp(s, "https://", 8) && strncmp(s, "http://", 7)){
				store__say(reason, reasonlen, "attachment.url: must start with https:// or http://");
				return MQC_MSG_BAD_FIELD;
			}
			for(i = 0; i < len; i++){
				unsigned char c = (unsigned char)s[i];
				if(c <= 0x20 || c == 0x7f){
					store__say(reason, reasonlen, "attachment.url: contains a space or control character");
					return MQC_MSG_BAD_FIELD;
				}
			}
		}else if(!strcmp(key, "name")){
			if(!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > ATT_NAME_MAX){
				store__say(reason, reasonlen, "attachment.name: expected a string of 1..%d bytes", ATT_NAME_MAX);
				return MQC_MSG_BAD_FIELD;
			}
		}else if(!strcmp(key, "mime")){
			if(!json_is_string(v) || json_string_length(v) > MIME_MAX
					|| !mime_valid(json_string_value(v), json_string_length(v))){
				store__say(reason, reasonlen, "attachment.mime: expected \"type/subtype\" of at most %d bytes", MIME_MAX);
				return MQC_MSG_BAD_FIELD;
			}
			if(type == T_IMAGE && strncmp(json_string_value(v), "image/", 6)){
				store__say(reason, reasonlen, "attachment.mime: must start with image/ for type image");
				return MQC_MSG_BAD_FIELD;
			}
		}else if(!strcmp(key, "size")){
			if(!json_is_integer(v) || json_integer_value(v) < 0){
				store__say(reason, reasonlen, "attachment.size: expected an integer >= 0");
				return MQC_MSG_BAD_FIELD;
			}
		}else{
			store__say(reason, reasonlen, "attachment.%.64s: unknown field (allowed: url, name, mime, size)", key);
			return MQC_MSG_BAD_FIELD;
		}
	}
	if(url == NULL){
		store__say(reason, reasonlen, "attachment.url: missing (required)");
		return MQC_MSG_MISSING;
	}
	return MQC_MSG_OK;
}

mqc_msg_err mqc_msg_parse(const void *payload, size_t len, const mqc_msg_limits *lim,
		json_t **out, char *reason, size_t reasonlen)
{
	size_t max_body = lim ? lim->max_body : MQC_MSG_DEFAULT_MAX_BODY;
	size_t max_payload = lim ? lim->max_payload : MQC_MSG_DEFAULT_MAX_PAYLOAD;
	json_error_t jerr;
	json_t *root = NULL, *msg = NULL;
	json_t *type = NULL, *body = NULL, *att = NULL, *cmid = NULL;
	const char *key;
	json_t *v;
	mqc_msg_err rc;
	int t;

	*out = NULL;
	if(reason && reasonlen) reason[0] = '\0';

	/* Before parsing: an oversize payload must not cost a parse. */
	if(len > max_payload){
		store__say(reason, reasonlen, "payload: %zu bytes exceeds %zu bytes", len, max_payload);
		return MQC_MSG_TOO_LARGE;
	}
	if(payload == NULL || len == 0){
		store__say(reason, reasonlen, "payload: empty (expected a JSON object)");
		return MQC_MSG_BAD_JSON;
	}
	/* No JSON_ALLOW_NUL: a "\u0000" in any string is refused, as is a raw NUL byte.
	 * jansson checks UTF-8 itself. */
	root = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr);
	if(root == NULL){
		store__say(reason, reasonlen, "payload: invalid JSON at line %d column %d: %s",
				jerr.line, jerr.column, jerr.text);
		return MQC_MSG_BAD_JSON;
	}
	if(!json_is_object(root)){
		store__say(reason, reasonlen, "payload: expected a JSON object");
		rc = MQC_MSG_BAD_JSON;
		goto fail;
	}

	json_object_foreach(root, key, v){
		if(!strcmp(key, "type")) type = v;
		else if(!strcmp(key, "body")) body = v;
		else if(!strcmp(key, "attachment")) att = v;
		else if(!strcmp(key, "client_msg_id")) cmid = v;
		else if(!strcmp(key, "id") || !strcmp(key, "room") || !strcmp(key, "from") || !strcmp(key, "ts")){
			/* set by the server: ignored */
		}else{
			store__say(reason, reasonlen, "%.64s: unknown field (allowed: type, body, attachment, client_msg_id)", key);
			rc = MQC_MSG_BAD_FIELD;
			goto fail;
		}
	}

	if(type == NULL){
		store__say(reason, reasonlen, "type: missing (expected msg, attachment, image or file)");
		rc = MQC_MSG_BAD_TYPE;
		goto fail;
	}
	if(!json_is_string(type) || (t = type_from_string(json_string_value(type))) < 0){
		store__say(reason, reasonlen, "type: expected msg, attachment, image or file");
		rc = MQC_MSG_BAD_TYPE;
		goto fail;
	}

	if(body){
		if(!json_is_string(body)){
			store__say(reason, reasonlen, "body: expected a string");
			rc = MQC_MSG_BAD_FIELD;
			goto fail;
		}
		if(json_string_length(body) > max_body){
			store__say(reason, reasonlen, "body: exceeds %zu bytes", max_body);
			rc = MQC_MSG_TOO_LARGE;
			goto fail;
		}
	}
	if(t == T_MSG){
		if(body == NULL){
			store__say(reason, reasonlen, "body: missing (required for type msg)");
			rc = MQC_MSG_MISSING;
			goto fail;
		}
		if(json_string_length(body) == 0){
			store__say(reason, reasonlen, "body: must not be empty for type msg");
			rc = MQC_MSG_BAD_FIELD;
			goto fail;
		}
		if(att){
			store__say(reason, reasonlen, "attachment: not allowed for type msg");
			rc = MQC_MSG_BAD_FIELD;
			goto fail;
		}
	}else{
		if(att == NULL){
			store__say(reason, reasonlen, "attachment: missing (required for type %s)", type_names[t]);
			rc = MQC_MSG_MISSING;
			goto fail;
		}
		rc = check_attachment(att, t, reason, reasonlen);
		if(rc) goto fail;
	}

	if(cmid){
		const char *s;
		size_t n, i;

		if(!json_is_string(cmid) || (n = json_string_length(cmid)) == 0 || n > CLIENT_MSG_ID_MAX){
			store__say(reason, reasonlen, "client_msg_id: expected a string of 1..%d bytes", CLIENT_MSG_ID_MAX);
			rc = MQC_MSG_BAD_FIELD;
			goto fail;
		}
		s = json_string_value(cmid);
		for(i = 0; i < n; i++){
			if((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e){
				store__say(reason, reasonlen, "client_msg_id: expected printable ASCII only");
				rc = MQC_MSG_BAD_FIELD;
				goto fail;
			}
		}
	}

	/* The result shares the parsed values (reference counts), it copies no strings. */
	msg = json_object();
	if(msg == NULL) goto oom;
	if(json_object_set(msg, "type", type)) goto oom;
	if(body && json_object_set(msg, "body", body)) goto oom;
	if(att && json_object_set(msg, "attachment", att)) goto oom;
	if(cmid && json_object_set(msg, "client_msg_id", cmid)) goto oom;
	json_decref(root);
	*out = msg;
	return MQC_MSG_OK;

oom:
	store__say(reason, reasonlen, "payload: out of memory");
	rc = MQC_MSG_INTERNAL;
fail:
	json_decref(msg);
	json_decref(root);
	return rc;
}

/* Appends the compact JSON of v at buf+*pos; the space was measured beforehand. */
static void put_json(char *buf, size_t *pos, size_t need, const json_t *v)
{
	json_dumpb(v, buf + *pos, need, JSON_COMPACT | JSON_ENCODE_ANY);
	*pos += need;
}

static void put_str(char *buf, size_t *pos, const char *s)
{
	size_t n = strlen(s);

	memcpy(buf + *pos, s, n);
	*pos += n;
}

/* A JSON string for a server-side name: a valid name needs no escaping, so it is written
 * as is; anything else goes through jansson. need is what put_name will write. */
static size_t name_size(const char *s, json_t **tmp)
{
	size_t n = strlen(s);

	*tmp = NULL;
	if(mqc_name_valid(s, n)) return n + 2;
	*tmp = json_string(s);
	return *tmp ? json_dumpb(*tmp, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) : 0;
}

static void put_name(char *buf, size_t *pos, size_t need, const char *s, const json_t *tmp)
{
	if(tmp){
		put_json(buf, pos, need, tmp);
		return;
	}
	buf[(*pos)++] = '"';
	memcpy(buf + *pos, s, need - 2);
	*pos += need - 2;
	buf[(*pos)++] = '"';
}

char *mqc_msg_stamp(const json_t *msg, uint64_t id, const char *room, const char *from,
		int64_t ts_ms, void *(*alloc)(size_t), size_t *len)
{
	const json_t *type = json_object_get(msg, "type");
	const json_t *body = json_object_get(msg, "body");
	const json_t *att = json_object_get(msg, "attachment");
	const json_t *cmid = json_object_get(msg, "client_msg_id");
	json_t *jroom = NULL, *jfrom = NULL;
	size_t n_room, n_from, n_type, n_body = 0, n_att = 0, n_cmid = 0;
	char head[64];
	int n_head;
	size_t total, pos = 0;
	char *buf = NULL;

	if(type == NULL || room == NULL || from == NULL || alloc == NULL) return NULL;
	/* One pass measures every part, one allocation holds the result, one pass writes it:
	 * the client's values are encoded straight into the buffer, never copied first. */
	n_head = snprintf(head, sizeof(head), "{\"id\":%llu,\"room\":", (unsigned long long)id);
	n_room = name_size(room, &jroom);
	n_from = name_size(from, &jfrom);
	n_type = json_dumpb(type, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	if(body) n_body = json_dumpb(body, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	if(att) n_att = json_dumpb(att, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	if(cmid) n_cmid = json_dumpb(cmid, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	if(n_room == 0 || n_from == 0 || n_type == 0 || (body && n_body == 0)
			|| (att && n_att == 0) || (cmid && n_cmid == 0)){
		goto done;
	}

	/* fixed text: ,"from": ,"ts":<20> ,"type": ,"body": ,"attachment": ,"client_msg_id": } NUL */
	total = (size_t)n_head + n_room + 8 + n_from + 6 + 21 + 8 + n_type
		+ (body ? 8 + n_body : 0) + (att ? 14 + n_att : 0) + (cmid ? 17 + n_cmid : 0) + 2;
	buf = alloc(total);
	if(buf == NULL) goto done;

	memcpy(buf, head, (size_t)n_head);
	pos = (size_t)n_head;
	put_name(buf, &pos, n_room, room, jroom);
	put_str(buf, &pos, ",\"from\":");
	put_name(buf, &pos, n_from, from, jfrom);
	pos += (size_t)snprintf(buf + pos, total - pos, ",\"ts\":%lld", (long long)ts_ms);
	put_str(buf, &pos, ",\"type\":");
	put_json(buf, &pos, n_type, type);
	if(body){
		put_str(buf, &pos, ",\"body\":");
		put_json(buf, &pos, n_body, body);
	}
	if(att){
		put_str(buf, &pos, ",\"attachment\":");
		put_json(buf, &pos, n_att, att);
	}
	if(cmid){
		put_str(buf, &pos, ",\"client_msg_id\":");
		put_json(buf, &pos, n_cmid, cmid);
	}
	buf[pos++] = '}';
	buf[pos] = '\0';
	if(len) *len = pos;

done:
	json_decref(jroom);
	json_decref(jfrom);
	return buf;
}

int mqc_stamped_parse(const void *payload, size_t len, mqc_stamped *out, char *reason, size_t reasonlen)
{
	json_error_t jerr;
	json_t *root, *v;

	memset(out, 0, sizeof(*out));
	root = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr);
	if(root == NULL){
		store__say(reason, reasonlen, "stamped message: invalid JSON at line %d column %d: %s",
				jerr.line, jerr.column, jerr.text);
		return -1;
	}
	if(!json_is_object(root)){
		store__say(reason, reasonlen, "stamped message: expected a JSON object");
		goto fail;
	}

	v = json_object_get(root, "id");
	if(!json_is_integer(v) || json_integer_value(v) <= 0 || (uint64_t)json_integer_value(v) > MQC_ID_MAX){
		store__say(reason, reasonlen, "id: expected an integer in 1..2^53-1");
		goto fail;
	}
	out->id = (uint64_t)json_integer_value(v);

	v = json_object_get(root, "room");
	if(!json_is_string(v) || !mqc_name_valid(json_string_value(v), json_string_length(v))){
		store__say(reason, reasonlen, "room: expected a room id");
		goto fail;
	}
	out->room = json_string_value(v);

	v = json_object_get(root, "from");
	if(!json_is_string(v) || !mqc_name_valid(json_string_value(v), json_string_length(v))){
		store__say(reason, reasonlen, "from: expected a user id");
		goto fail;
	}
	out->from = json_string_value(v);

	v = json_object_get(root, "ts");
	if(!json_is_integer(v)){
		store__say(reason, reasonlen, "ts: expected an integer (ms since the Unix epoch)");
		goto fail;
	}
	out->ts = (int64_t)json_integer_value(v);

	v = json_object_get(root, "type");
	if(!json_is_string(v) || type_from_string(json_string_value(v)) < 0){
		store__say(reason, reasonlen, "type: expected msg, attachment, image or file");
		goto fail;
	}
	out->type = json_string_value(v);

	v = json_object_get(root, "body");
	if(v){
		if(!json_is_string(v)){
			store__say(reason, reasonlen, "body: expected a string");
			goto fail;
		}
		out->body = json_string_value(v);
	}
	v = json_object_get(root, "attachment");
	if(v){
		if(!json_is_object(v)){
			store__say(reason, reasonlen, "attachment: expected an object");
			goto fail;
		}
		out->attachment = v;
	}
	v = json_object_get(root, "client_msg_id");
	if(v){
		if(!json_is_string(v)){
			store__say(reason, reasonlen, "client_msg_id: expected a string");
			goto fail;
		}
		out->client_msg_id = json_string_value(v);
	}
	out->root = root;
	return 0;

fail:
	json_decref(root);
	memset(out, 0, sizeof(*out));
	return -1;
}

/* ---------------------------------------------------------------- the row of a message */

int mqc_msg_row_of(const mqc_stamped *m, mqc_msg_row *row, char **att_text)
{
	*att_text = NULL;
	memset(row, 0, sizeof(*row));
	row->id = (int64_t)m->id;
	row->room = m->room;
	row->sender = m->from;
	row->ts = m->ts;
	row->type = m->type;
	row->body = m->body;
	row->body_len = m->body ? strlen(m->body) : 0;
	row->client_msg_id = m->client_msg_id;
	if(m->attachment){
		*att_text = json_dumps(m->attachment, JSON_COMPACT);
		if(*att_text == NULL) return -1;
		row->attachment = *att_text;
		row->attachment_len = strlen(*att_text);
	}
	return 0;
}

static int row_set(json_t *o, const char *k, json_t *v)
{
	return v ? json_object_set_new_nocheck(o, k, v) : -1;
}

json_t *mqc_msg_row_json(const mqc_msg_row *row, bool *bad_attachment)
{
	json_t *m = json_object();
	int rc = 0;

	if(bad_attachment) *bad_attachment = false;
	if(!m) return NULL;
	rc |= row_set(m, "id", json_integer(row->id));
	rc |= row_set(m, "room", json_string_nocheck(row->room ? row->room : ""));
	rc |= row_set(m, "from", json_string_nocheck(row->sender ? row->sender : ""));
	rc |= row_set(m, "ts", json_integer(row->ts));
	rc |= row_set(m, "type", json_string_nocheck(row->type ? row->type : ""));
	if(row->body) rc |= row_set(m, "body", json_stringn_nocheck(row->body, row->body_len));
	if(row->attachment){
		json_error_t jerr;
		json_t *att = json_loadb(row->attachment, row->attachment_len, 0, &jerr);
		if(att) rc |= row_set(m, "attachment", att);
		else if(json_error_code(&jerr) == json_error_out_of_memory) rc = -1;
		else if(bad_attachment) *bad_attachment = true;
	}
	if(row->client_msg_id) rc |= row_set(m, "client_msg_id", json_string_nocheck(row->client_msg_id));
	if(rc){
		json_decref(m);
		return NULL;
	}
	return m;
}
