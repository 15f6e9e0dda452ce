/*
 * mqchat-bridge configuration: one table of keys drives the config file parser, the
 * command-line parser and --help, so a key cannot exist in one and not the others.
 *
 * Precedence: built-in defaults < --config FILE < flags. The password never comes from
 * argv (it would show in `ps`): it is read from password-file, else from the environment
 * variable MQCHAT_BRIDGE_PASSWORD.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqchat_store.h"

#include "bridge.h"
#include "config.h"

enum key_kind { K_STR, K_INT, K_LEVEL };

struct key {
	const char *name;   /* file key; the flag is "--" name */
	enum key_kind kind;
	size_t off;         /* offset of the field in struct bridge_config */
	long min, max;      /* K_INT bounds */
	const char *arg;    /* placeholder in --help */
	const char *help;
};

#define OFF(f) offsetof(struct bridge_config, f)

static const struct key keys[] = {
	{ "db", K_STR, OFF(db_path), 0, 0, "PATH|URL",
		"the database made by `mqchat-admin init` (required): a SQLite file's path, or a\n"
		"                        PostgreSQL URI postgresql://user@host:port/dbname (its password in\n"
		"                        ~/.pgpass or $PGPASSWORD, not in the URI: `ps` shows argv)" },
	{ "host", K_STR, OFF(host), 0, 0, "HOST", "broker address (default 127.0.0.1)" },
	{ "port", K_INT, OFF(port), 1, 65535, "PORT", "broker port (default 1883)" },
	{ "user", K_STR, OFF(user), 0, 0, "NAME",
		"service user, as in the plugin's plugin_opt_service_user (default mqchat-bridge)" },
	{ "password-file", K_STR, OFF(password_file), 0, 0, "FILE",
		"file whose first line is the service password; without it the password is taken\n"
		"                        from $MQCHAT_BRIDGE_PASSWORD (never give a password in argv)" },
	{ "client-id", K_STR, OFF(client_id), 0, 0, "ID",
		"MQTT client id; names the persistent session, keep it stable (default: the user)" },
	{ "prefix", K_STR, OFF(prefix), 0, 0, "PREFIX",
		"topic prefix, as the plugin's plugin_opt_topic_prefix (default chat)" },
	{ "batch-max", K_INT, OFF(batch_max), 1, 100000, "N",
		"the most messages in one transaction (default 10000): while the writer commits, the\n"
		"                        next batch grows up to it; then the bridge stops reading" },
	{ "batch-ms", K_INT, OFF(batch_ms), 0, 10000, "MS",
		"hand a batch to an idle writer this long after its first message (default 5)" },
	{ "log-level", K_LEVEL, OFF(log_level), 0, 0, "LEVEL", "error, warn, info or debug (default info)" },
	{ "keepalive", K_INT, OFF(keepalive), 5, 65535, "SECONDS", "MQTT keepalive (default 60)" },
	{ "receive-maximum", K_INT, OFF(receive_maximum), 1, 65535, "N",
		"QoS 1 messages the broker may send each connection before our acknowledgements\n"
		"                        (default 65535; the plugin's store window keeps below it)" },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *level_names[] = { "error", "warn", "info", "debug" };

static void usage(FILE *f)
{
	fprintf(f, "usage: mqchat-bridge [--config FILE] [--KEY VALUE ...]\n\n"
			"Stores every chat message the mqchat plugin stamps and answers user requests.\n"
			"Each KEY below may be given as a flag (--KEY VALUE or --KEY=VALUE) or as a line\n"
			"`KEY = VALUE` in the --config file (`#` starts a comment); a flag wins.\n\n"
			"  --config FILE         read keys from FILE first\n"
			"  --help                print this and exit\n");
	for(size_t i = 0; i < NKEYS; i++){
		char left[64];
		snprintf(left, sizeof(left), "--%s %s", keys[i].name, keys[i].arg);
		fprintf(f, "  %-21s %s\n", left, keys[i].help);
	}
	fprintf(f, "\nEnvironment: MQCHAT_BRIDGE_PASSWORD  the service password when no password-file is set.\n");
	fprintf(f, "\nSignals: SIGTERM/SIGINT  commit what is waiting, disconnect, exit.\n"
			"         SIGUSR1         log (info) the time each request op spent in the bridge since the\n"
			"                         last report: count, p50, p99, max in us; then reset. Also at exit.\n");
}

static const struct key *key_find(const char *name, size_t len)
{
	for(size_t i = 0; i < NKEYS; i++){
		if(strlen(keys[i].name) == len && !strncmp(keys[i].name, name, len)) return &keys[i];
	}
	return NULL;
}

/* where: "file:line" or "--flag", for the error message. */
static int key_set(struct bridge_config *cfg, const struct key *k, const char *val, const char *where)
{
	char *base = (char *)cfg;
	if(k->kind == K_STR){
		char **dst = (char **)(base + k->off);
		char *copy = strdup(val);
		if(!copy){
			bridge__log(BLOG_ERROR, "config", "%s: out of memory", where);
			return -1;
		}
		free(*dst);
		*dst = copy;
		return 0;
	}
	if(k->kind == K_LEVEL){
		for(int i = 0; i < 4; i++){
			if(!strcmp(val, level_names[i])){
				*(int *)(base + k->off) = i;
				return 0;
			}
		}
		bridge__log(BLOG_ERROR, "config", "%s: %s '%s': expected error, warn, info or debug",
				where, k->name, val);
		return -1;
	}
	char *end;
	errno = 0;
	long v = strtol(val, &end, 10);
	if(errno || end == val || *end || v < k->min || v > k->max){
		bridge__log(BLOG_ERROR, "config", "%s: %s '%s': expected an integer from %ld to %ld",
				where, k->name, val, k->min, k->max);
		return -1;
	}
	*(int *)(base + k->off) = (int)v;
	return 0;
}

static char *trim(char *s)
{
	while(*s == ' ' || *s == '\t') s++;
	size_t n = strlen(s);
	while(n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = '\0';
	return s;
}

static int load_file(struct bridge_config *cfg, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[4096], where[PATH_MAX + 32];
	int lineno = 0, rc = 0;

	if(!f){
		bridge__log(BLOG_ERROR, "config", "cannot open config file %s: %s", path, strerror(errno));
		return -1;
	}
	while(fgets(line, sizeof(line), f)){
		lineno++;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if(!strchr(line, '\n') && !feof(f)){
			bridge__log(BLOG_ERROR, "config", "%s: line longer than %zu bytes", where, sizeof(line) - 2);
			rc = -1;
			break;
		}
		char *hash = strchr(line, '#');
		if(hash) *hash = '\0';
		char *s = trim(line);
		if(!*s) continue;
		char *eq = strchr(s, '=');
		if(!eq){
			bridge__log(BLOG_ERROR, "config", "%s: expected `key = value`, got '%s'", where, s);
			rc = -1;
			break;
		}
		*eq = '\0';
		char *name = trim(s), *val = trim(eq + 1);
		const struct key *k = key_find(name, strlen(name));
		if(!k){
			bridge__log(BLOG_ERROR, "config", "%s: unknown key '%s' (see mqchat-bridge --help)", where, name);
			rc = -1;
			break;
		}
		if((rc = key_set(cfg, k, val, where))) break;
	}
	if(!rc && ferror(f)){
		bridge__log(BLOG_ERROR, "config", "reading %s failed: %s", path, strerror(errno));
		rc = -1;
	}
	fclose(f);
	return rc;
}

/* The first line of path, without its line ending. */
static int read_password(struct bridge_config *cfg)
{
	char buf[1024];
	FILE *f = fopen(cfg->password_file, "r");
	if(!f){
		bridge__log(BLOG_ERROR, "config", "cannot open password-file %s: %s", cfg->password_file, strerror(errno));
		return -1;
	}
	if(!fgets(buf, sizeof(buf), f)) buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	if(!buf[0]){
		bridge__log(BLOG_ERROR, "config", "password-file %s is empty", cfg->password_file);
		return -1;
	}
	cfg->password = strdup(buf);
	return cfg->password ? 0 : -1;
}

static int set_defaults(struct bridge_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->host = strdup("127.0.0.1");
	cfg->user = strdup("mqchat-bridge");
	cfg->client_id = NULL; /* the user, unless given: see validate() */
	cfg->prefix = strdup("chat");
	cfg->port = 1883;
	cfg->batch_max = 10000;
	cfg->batch_ms = 5;
	cfg->log_level = BLOG_INFO;
	cfg->keepalive = 60;
	cfg->receive_maximum = 65535;
	return cfg->host && cfg->user && cfg->prefix ? 0 : -1;
}

static int validate(struct bridge_config *cfg)
{
	if(!cfg->db_path || !*cfg->db_path){
		bridge__log(BLOG_ERROR, "config", "no database: give --db PATH|URL or `db = PATH|URL` in the config file");
		return -1;
	}
	if(!*cfg->host){
		bridge__log(BLOG_ERROR, "config", "host is empty");
		return -1;
	}
	if(!mqc_name_valid(cfg->user, strlen(cfg->user))){
		bridge__log(BLOG_ERROR, "config", "user '%s': expected 1-64 characters of [A-Za-z0-9._-]", cfg->user);
		return -1;
	}
	/* The plugin accepts a client id that is the username or starts with "<username>:". */
	if(!cfg->client_id && !(cfg->client_id = strdup(cfg->user))) return -1;
	if(!*cfg->client_id || strlen(cfg->client_id) > 65535 || strpbrk(cfg->client_id, "+#/")){
		bridge__log(BLOG_ERROR, "config", "client-id '%s': expected a non-empty id without '+', '#' or '/'",
				cfg->client_id);
		return -1;
	}
	if(!mqc_name_valid(cfg->prefix, strlen(cfg->prefix))){
		bridge__log(BLOG_ERROR, "config", "prefix '%s': expected one topic level of [A-Za-z0-9._-]", cfg->prefix);
		return -1;
	}
	if(cfg->password_file) return read_password(cfg);
	const char *env = getenv("MQCHAT_BRIDGE_PASSWORD");
	if(env && *env){
		cfg->password = strdup(env);
		if(!cfg->password) return -1;
	}
	return 0;
}

int config__load(struct bridge_config *cfg, int argc, char **argv)
{
	if(set_defaults(cfg)){
		bridge__log(BLOG_ERROR, "config", "out of memory");
		return -1;
	}
	/* Pass 1: --help and --config, so the file is read before any flag overrides it. */
	for(int i = 1; i < argc; i++){
		if(!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")){
			usage(stdout);
			return 1;
		}
	}
	for(int i = 1; i < argc; i++){
		const char *a = argv[i], *val = NULL;
		if(!strcmp(a, "--config")){
			if(i + 1 >= argc){
				bridge__log(BLOG_ERROR, "config", "--config needs a FILE");
				return -1;
			}
			val = argv[++i];
		}else if(!strncmp(a, "--config=", 9)){
			val = a + 9;
		}else if(!strncmp(a, "--", 2) && !strchr(a, '=')){
			i++; /* skip the value of another flag; pass 2 checks it */
		}
		if(val && load_file(cfg, val)) return -1;
	}
	/* Pass 2: every other flag. */
	for(int i = 1; i < argc; i++){
		const char *a = argv[i], *val;
		if(strncmp(a, "--", 2) || !a[2]){
			bridge__log(BLOG_ERROR, "config", "unexpected argument '%s' (see --help)", a);
			return -1;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t namelen = eq ? (size_t)(eq - name) : strlen(name);
		if(namelen == 6 && !strncmp(name, "config", 6)){
			if(!eq) i++;
			continue;
		}
		const struct key *k = key_find(name, namelen);
		if(!k){
			bridge__log(BLOG_ERROR, "config", "unknown flag '--%.*s' (see --help)", (int)namelen, name);
			return -1;
		}
		if(eq){
			val = eq + 1;
		}else{
			if(i + 1 >= argc){
				bridge__log(BLOG_ERROR, "config", "--%s needs a value (%s)", k->name, k->arg);
				return -1;
			}
			val = argv[++i];
		}
		char where[80];
		snprintf(where, sizeof(where), "--%s", k->name);
		if(key_set(cfg, k, val, where)) return -1;
	}
	return validate(cfg);
}

void config__free(struct bridge_config *cfg)
{
	if(cfg->password){
		/* volatile so the wipe is not optimised away */
		for(volatile char *p = cfg->password; *p; p++) *p = '\0';
	}
	free(cfg->db_path);
	free(cfg->host);
	free(cfg->user);
	free(cfg->password);
	free(cfg->password_file);
	free(cfg->client_id);
	free(cfg->prefix);
	memset(cfg, 0, sizeof(*cfg));
}
