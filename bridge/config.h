/*
 * mqchat-bridge's configuration: defaults, then the --config file (`key = value`, `#`
 * comments), then command-line flags, in that order of precedence (a flag wins).
 * Every key is listed once, in config.c's table, which also writes --help.
 */
#ifndef MQCHAT_BRIDGE_CONFIG_H
#define MQCHAT_BRIDGE_CONFIG_H

struct bridge_config {
	char *db_path;       /* required: a SQLite path or a postgresql:// URI (db.h) */
	char *host;          /* broker address, default 127.0.0.1 */
	int port;            /* default 1883 */
	char *user;          /* the service user, default mqchat-bridge */
	char *password;      /* from password-file or $MQCHAT_BRIDGE_PASSWORD; NULL if neither */
	char *password_file; /* where password came from (for log lines), NULL if from the env */
	char *client_id;     /* default mqchat-bridge; must stay stable: it names the persistent session */
	char *prefix;        /* topic prefix, default chat */
	int batch_max;       /* most messages per transaction, default 10000 */
	int batch_ms;        /* longest wait before committing a non-full batch, default 5 */
	int log_level;       /* enum bridge_log_level, default info */
	int keepalive;       /* MQTT keepalive in seconds, default 60 */
	int receive_maximum; /* MQTT 5 Receive Maximum of both connections, default 65535 */
};

/* Fills cfg from argv (and the file named by --config). Returns 0 when the bridge should
 * run, 1 when --help was printed (exit 0), -1 on an error that was already printed to
 * stderr (exit 2). On any return the caller calls config__free. */
int config__load(struct bridge_config *cfg, int argc, char **argv);
void config__free(struct bridge_config *cfg);

#endif
