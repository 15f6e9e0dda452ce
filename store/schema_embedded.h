/* The migrations in schema/, embedded at build time (cmake/embed_schema.cmake). */
#ifndef MQCHAT_SCHEMA_EMBEDDED_H
#define MQCHAT_SCHEMA_EMBEDDED_H

struct mqc_migration {
	int version;      /* NNN of schema/NNN_name.sql; 1, 2, 3, ... without gaps */
	const char *name; /* the file name, for log lines */
	const char *sql;  /* its text */
};

extern const struct mqc_migration mqc_migrations[];
extern const int mqc_migration_count;

#endif
