/*
 * req_people.c: contacts and device tokens (docs/protocol.md "Operations"; the call context and
 * building blocks: requests_int.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "requests_int.h"

/* ---------------------------------------------------------------- contacts */

/* Runs s (bound by the caller) and answers {key: [one object per row, filled by row()]}. */
int list_rows(struct call *c, mqc_stmt *s, const char *what, const char *key,
		int (*row)(struct call *c, mqc_stmt *s, json_t *o))
{
	json_t *list = json_array();
	int rc;
	if(!list){
		mqc_reset(s);
		return OP_NOMEM;
	}
	while((rc = mqc_step(s)) == MQC_ROW){
		json_t *o = json_object();
		if(!o || row(c, s, o) || json_array_append_new(list, o)){
			mqc_reset(s);
			json_decref(list);
			return OP_NOMEM;
		}
	}
	if(rc != MQC_DONE){
		rc = dbfail(c, what);
		mqc_reset(s);
		json_decref(list);
		return rc;
	}
	mqc_reset(s);
	c->result = json_object();
	if(!c->result){
		json_decref(list);
		return OP_NOMEM;
	}
	return set(c->result, key, list) ? OP_NOMEM : OP_OK;
}

int contact_row(struct call *c, mqc_stmt *s, json_t *o)
{
	int e = 0;
	e |= set(o, "user", column_string(&c->r->text_log, s, 0, "users.id", "user", 0));
	e |= set(o, "display_name", column_string(&c->r->text_log, s, 1, "users.display_name", "user", 0));
	e |= set(o, "explicit", json_boolean(mqc_col_int64(s, 2)));
	e |= set(o, "direct_room", column_string(&c->r->text_log, s, 3, "rooms.id", "the direct room with user", 0));
	return e;
}

int op_contacts_list(struct call *c)
{
	mqc_stmt *s = st(c, MQC_Q_REQ_CONTACTS_LIST);
	bind_text(s, 1, c->user);
	return list_rows(c, s, "listing contacts", "contacts", contact_row);
}

int contact_change(struct call *c, bool add)
{
	const char *user;
	int rc = arg_name(c, "user", true, &user);
	if(rc) return rc;
	if(strcmp(user, c->user) == 0) return fail(c, "invalid", "user: you cannot be your own contact");
	if((rc = txn_begin(c))) return rc;
	if(add){
		int64_t disabled;
		bool found;
		mqc_stmt *s = st(c, MQC_Q_REQ_USER_GET);
		bind_text(s, 1, user);
		if((rc = query_int(c, s, "looking up a user", &disabled, &found))) return rc;
		if(!found) return fail(c, "not_found", "no such user: %s", user);
	}
	mqc_stmt *s = st(c, add ? MQC_Q_REQ_CONTACT_ADD : MQC_Q_REQ_CONTACT_DEL);
	bind_text(s, 1, c->user);
	bind_text(s, 2, user);
	if(add) mqc_bind_int64(s, 3, mqc_now_ms());
	if((rc = exec_done(c, s, add ? "adding a contact" : "removing a contact"))) return rc;
	bool changed = mqc_db_changes(c->r->db) == 1;
	c->result = json_object();
	if(!c->result || set(c->result, "user", json_string(user))
			|| set(c->result, add ? "added" : "removed", json_boolean(changed))){
		return OP_NOMEM;
	}
	return txn_commit(c);
}

int op_contacts_add(struct call *c) { return contact_change(c, true); }
int op_contacts_remove(struct call *c) { return contact_change(c, false); }


/* ---------------------------------------------------------------- device tokens */

/* The plugin's control message for a token change, sent before the answer. */
int token_control(struct call *c, const char *op, const char *id, const char *hash, int64_t expires_at)
{
	int64_t acl_to = 0;
	int rc = acl_version(c, &acl_to);
	if(rc) return rc;
	json_t *o = json_object();
	if(!o) return OP_NOMEM;
	int e = 0;
	e |= set(o, "op", json_string(op));
	e |= set(o, "user", json_string(c->user));
	e |= set(o, "id", json_string(id));
	if(hash){
		e |= set(o, "hash", json_string(hash));
		e |= set(o, "expires_at", expires_at ? json_integer(expires_at) : json_null());
	}
	e |= set(o, "acl_from", json_integer(c->acl_from));
	e |= set(o, "acl_to", json_integer(acl_to));
	if(e){
		json_decref(o);
		return OP_NOMEM;
	}
	return append(&c->controls, o);
}

int op_token_create(struct call *c)
{
	json_t *jname = json_object_get(c->req, "name");
	int64_t expires_in = 0;
	bool has_exp;
	char why[160];
	/* a stolen device token must not be able to outlive its revocation by minting more */
	if(c->r->token_login){
		return fail(c, "forbidden", "a session logged in with a device token cannot make tokens: log in with the "
				"password (or a JWT) to make one");
	}
	if(!json_is_string(jname)) return fail(c, "invalid", "name: required, a string (the device)");
	mqc_text_err te = mqc_token_name_check(json_string_value(jname), json_string_length(jname), why, sizeof(why));
	if(te) return fail(c, te == MQC_TEXT_TOO_LONG ? "too_large" : "invalid", "name: %s", why);
	int rc = arg_int(c, "expires_in", 60, REQ_TOKEN_MAX_EXPIRES_S, &expires_in, &has_exp);
	if(rc) return rc;
	if((rc = txn_begin(c))) return rc;
	int64_t n;
	bool found;
	mqc_stmt *s = st(c, MQC_Q_REQ_TOKEN_COUNT);
	bind_text(s, 1, c->user);
	if((rc = query_int(c, s, "counting tokens", &n, &found))) return rc;
	if(n >= REQ_MAX_TOKENS){
		return fail(c, "conflict", "you have %" PRId64 " tokens, the most one user may have; revoke one first", n);
	}
	char secret[MQC_TOKEN_LEN + 1], hash[MQC_TOKEN_HASH_HEX + 1], id[MQC_TOKEN_ID_LEN + 1];
	if(mqc_token_new(secret, hash, id)) return fail(c, "internal", "no randomness for a token");
	int64_t now = mqc_now_ms(), expires_at = has_exp ? now + expires_in * 1000 : 0;
	s = st(c, MQC_Q_REQ_TOKEN_INSERT);
	bind_text(s, 1, id);
	bind_text(s, 2, c->user);
	mqc_bind_text(s, 3, json_string_value(jname), (int)json_string_length(jname));
	bind_text(s, 4, hash);
	mqc_bind_int64(s, 5, now);
	if(expires_at) mqc_bind_int64(s, 6, expires_at);
	else mqc_bind_null(s, 6);
	rc = exec_done(c, s, "storing a token");
	if(!rc) rc = token_control(c, "token", id, hash, expires_at);
	if(!rc){
		c->result = json_object();
		int e = !c->result;
		if(!e){
			e |= set(c->result, "id", json_string(id));
			e |= set(c->result, "name", json_stringn(json_string_value(jname), json_string_length(jname)));
			e |= set(c->result, "token", json_string(secret));
			e |= set(c->result, "created_at", json_integer(now));
			e |= set(c->result, "expires_at", expires_at ? json_integer(expires_at) : json_null());
		}
		rc = e ? OP_NOMEM : OP_OK;
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	if(rc) return rc;
	bridge__log(BLOG_INFO, "requests", "token.create: %s made token %s (%.64s)%s", c->user, id, json_string_value(jname),
			expires_at ? ", expiring" : "");
	return txn_commit(c);
}

json_t *int_or_null(mqc_stmt *s, int col)
{
	return mqc_col_null(s, col) ? json_null() : json_integer(mqc_col_int64(s, col));
}

int token_row(struct call *c, mqc_stmt *s, json_t *o)
{
	int e = 0;
	e |= set(o, "id", column_string(&c->r->text_log, s, 0, "tokens.id", "user", 0));
	e |= set(o, "name", column_string(&c->r->text_log, s, 1, "tokens.name", "user", 0));
	e |= set(o, "created_at", json_integer(mqc_col_int64(s, 2)));
	e |= set(o, "expires_at", int_or_null(s, 3));
	e |= set(o, "last_used_at", int_or_null(s, 4));
	return e;
}

int op_tokens_list(struct call *c)
{
	mqc_stmt *s = st(c, MQC_Q_REQ_TOKENS_LIST);
	bind_text(s, 1, c->user);
	return list_rows(c, s, "listing tokens", "tokens", token_row);
}

int op_token_revoke(struct call *c)
{
	const char *id;
	int rc = arg_name(c, "id", true, &id);
	if(rc) return rc;
	if((rc = txn_begin(c))) return rc;
	mqc_stmt *s = st(c, MQC_Q_REQ_TOKEN_DELETE);
	bind_text(s, 1, id);
	bind_text(s, 2, c->user);
	if((rc = exec_done(c, s, "revoking a token"))) return rc;
	/* someone else's token does not exist for you */
	if(mqc_db_changes(c->r->db) != 1) return fail(c, "not_found", "you have no token %s", id);
	if((rc = token_control(c, "token.revoke", id, NULL, 0))) return rc;
	c->result = json_object();
	if(!c->result || set(c->result, "id", json_string(id)) || set(c->result, "revoked", json_true())) return OP_NOMEM;
	bridge__log(BLOG_INFO, "requests", "token.revoke: %s revoked token %s", c->user, id);
	return txn_commit(c);
}

