/*
 * gen_queries: embeds schema/<engine>/ into the store library at build time, so the
 * binaries carry their SQL and no install path is looked up at run time.
 *
 *   gen_queries SCHEMA_DIR OUT.c OUT.h
 *
 * For each engine directory (sqlite, postgresql):
 *   - NNN_name.sql are the migrations, 001, 002, ... without gaps;
 *   - q_*.sql hold the statement table: each statement starts at a line "-- @name", runs to
 *     the next one, and may end in ';'. Other "--" lines are comments and are dropped. A
 *     statement with no text is one the engine does not need (stepping it does nothing).
 * Every name must appear in every engine, once. The names become enum mqc_qid (MQC_Q_NAME,
 * in the order of the sqlite files); the texts become mqc_q_sqlite[] and mqc_q_pg[].
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXQ 512
#define MAXF 64

static const char *engines[2] = {"sqlite", "postgresql"};

struct query { char name[96]; char *sql; char file[128]; };
static struct query q[2][MAXQ];
static int nq[2];

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n;
	char *b;
	if(!f){ fprintf(stderr, "gen_queries: cannot open %s\n", path); exit(1); }
	fseek(f, 0, SEEK_END); n = ftell(f); fseek(f, 0, SEEK_SET);
	b = malloc((size_t)n + 1);
	if(!b || fread(b, 1, (size_t)n, f) != (size_t)n){ fprintf(stderr, "gen_queries: cannot read %s\n", path); exit(1); }
	b[n] = '\0';
	fclose(f);
	return b;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list(const char *dir, char **names, int (*want)(const char *))
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	if(!d){ fprintf(stderr, "gen_queries: cannot open %s\n", dir); exit(1); }
	while((e = readdir(d))){
		if(!want(e->d_name)) continue;
		if(n == MAXF){ fprintf(stderr, "gen_queries: too many files in %s\n", dir); exit(1); }
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(*names), cmp);
	return n;
}

static int is_migration(const char *s)
{
	size_t l = strlen(s);
	return l > 8 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2])
		&& s[3] == '_' && !strcmp(s + l - 4, ".sql");
}

static int is_queries(const char *s)
{
	size_t l = strlen(s);
	return l > 6 && !strncmp(s, "q_", 2) && !strcmp(s + l - 4, ".sql");
}

static void emit_string(FILE *out, const char *s)
{
	fputc('"', out);
	for(; *s; s++){
		if(*s == '\n'){ fputs("\\n\"\n\t\"", out); continue; }
		if(*s == '"' || *s == '\\') fputc('\\', out);
		if(*s == '\t'){ fputs("\\t", out); continue; }
		fputc(*s, out);
	}
	fputc('"', out);
}

/* Splits one q_*.sql file into statements. */
static void parse_queries(int e, const char *file, char *text)
{
	char *line = text, *next;
	struct query *cur = NULL;
	size_t cap = 0, len = 0;
	int lineno = 0;

	for(; line && *line; line = next){
		next = strchr(line, '\n');
		if(next) *next++ = '\0';
		lineno++;
		if(!strncmp(line, "-- @", 4)){
			char *nm = line + 4, *end = nm + strlen(nm);
			while(end > nm && isspace((unsigned char)end[-1])) *--end = '\0';
			for(char *p = nm; *p; p++){
				if(!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_')){
					fprintf(stderr, "%s:%d: a statement name is [a-z0-9_]+, not '%s'\n", file, lineno, nm);
					exit(1);
				}
			}
			for(int i = 0; i < nq[e]; i++){
				if(!strcmp(q[e][i].name, nm)){
					fprintf(stderr, "%s:%d: statement %s is already in %s\n", file, lineno, nm, q[e][i].file);
					exit(1);
				}
			}
			if(nq[e] == MAXQ){ fprintf(stderr, "gen_queries: too many statements\n"); exit(1); }
			cur = &q[e][nq[e]++];
			snprintf(cur->name, sizeof(cur->name), "%s", nm);
			snprintf(cur->file, sizeof(cur->file), "%s/%s", engines[e], file);
			cur->sql = calloc(1, 1);
			cap = 1; len = 0;
			continue;
		}
		{
			const char *p = line;
			while(isspace((unsigned char)*p)) p++;
			if(!strncmp(p, "--", 2) || *p == '\0') continue;
		}
		if(!cur){
			fprintf(stderr, "%s:%d: SQL before the first '-- @name' line\n", file, lineno);
			exit(1);
		}
		{
			size_t l = strlen(line);
			if(len + l + 2 > cap){ cap = (len + l + 2) * 2; cur->sql = realloc(cur->sql, cap); }
			if(len) cur->sql[len++] = '\n';
			memcpy(cur->sql + len, line, l);
			len += l;
			cur->sql[len] = '\0';
		}
	}
	for(int i = 0; i < nq[e]; i++){
		char *s = q[e][i].sql;
		size_t l = strlen(s);
		while(l && (isspace((unsigned char)s[l - 1]) || s[l - 1] == ';')) s[--l] = '\0';
	}
}

int main(int argc, char **argv)
{
	FILE *c, *h;
	int nmig[2];
	char *mig[2][MAXF];

	if(argc != 4){ fprintf(stderr, "usage: gen_queries SCHEMA_DIR OUT.c OUT.h\n"); return 2; }
	for(int e = 0; e < 2; e++){
		char dir[1024], *qf[MAXF];
		int n;
		snprintf(dir, sizeof(dir), "%s/%s", argv[1], engines[e]);
		nmig[e] = list(dir, mig[e], is_migration);
		for(int i = 0; i < nmig[e]; i++){
			if(atoi(mig[e][i]) != i + 1){
				fprintf(stderr, "schema/%s/%s has version %d, expected %d (no gaps, no duplicates)\n",
						engines[e], mig[e][i], atoi(mig[e][i]), i + 1);
				return 1;
			}
		}
		n = list(dir, qf, is_queries);
		for(int i = 0; i < n; i++){
			char path[1200];
			snprintf(path, sizeof(path), "%s/%s", dir, qf[i]);
			parse_queries(e, qf[i], slurp(path));
		}
	}
	/* The same names in both engines. */
	for(int e = 0; e < 2; e++){
		for(int i = 0; i < nq[e]; i++){
			int found = 0;
			for(int j = 0; j < nq[1 - e] && !found; j++) found = !strcmp(q[e][i].name, q[1 - e][j].name);
			if(!found){
				fprintf(stderr, "schema: statement %s (%s) has no counterpart in schema/%s/\n",
						q[e][i].name, q[e][i].file, engines[1 - e]);
				return 1;
			}
		}
	}

	h = fopen(argv[3], "w");
	c = fopen(argv[2], "w");
	if(!h || !c){ fprintf(stderr, "gen_queries: cannot write the output\n"); return 1; }
	fprintf(h, "/* Generated from schema/<engine>/ by store/gen_queries.c. Do not edit. */\n"
			"#ifndef MQCHAT_QUERIES_EMBEDDED_H\n#define MQCHAT_QUERIES_EMBEDDED_H\n\n"
			"typedef enum mqc_qid {\n");
	for(int i = 0; i < nq[0]; i++){
		fprintf(h, "\tMQC_Q_");
		for(const char *p = q[0][i].name; *p; p++) fputc(toupper((unsigned char)*p), h);
		fprintf(h, ",\n");
	}
	fprintf(h, "\tMQC_Q_COUNT_\n} mqc_qid;\n\n"
			"struct mqc_migration {\n"
			"\tint version;      /* NNN of schema/<engine>/NNN_name.sql; 1, 2, 3, ... without gaps */\n"
			"\tconst char *name; /* the file name, for log lines */\n"
			"\tconst char *sql;  /* its text */\n};\n\n"
			"extern const char *const mqc_q_names[MQC_Q_COUNT_];\n"
			"extern const char *const mqc_q_sqlite[MQC_Q_COUNT_];\n"
			"extern const char *const mqc_q_pg[MQC_Q_COUNT_];\n"
			"extern const struct mqc_migration mqc_migrations_sqlite[];\n"
			"extern const int mqc_migration_count_sqlite;\n"
			"extern const struct mqc_migration mqc_migrations_pg[];\n"
			"extern const int mqc_migration_count_pg;\n\n#endif\n");

	fprintf(c, "/* Generated from schema/<engine>/ by store/gen_queries.c. Do not edit. */\n"
			"#include \"queries_embedded.h\"\n\n");
	fprintf(c, "const char *const mqc_q_names[MQC_Q_COUNT_] = {\n");
	for(int i = 0; i < nq[0]; i++) fprintf(c, "\t\"%s\",\n", q[0][i].name);
	fprintf(c, "};\n\n");
	for(int e = 0; e < 2; e++){
		fprintf(c, "const char *const mqc_q_%s[MQC_Q_COUNT_] = {\n", e == 0 ? "sqlite" : "pg");
		for(int i = 0; i < nq[0]; i++){
			const struct query *x = NULL;
			for(int j = 0; j < nq[e]; j++) if(!strcmp(q[e][j].name, q[0][i].name)) x = &q[e][j];
			if(x == NULL) return 1; /* checked above */
			fprintf(c, "\t/* %s (%s) */\n\t", x->name, x->file);
			emit_string(c, x->sql);
			fprintf(c, ",\n");
		}
		fprintf(c, "};\n\n");
	}
	for(int e = 0; e < 2; e++){
		const char *tag = e == 0 ? "sqlite" : "pg";
		for(int i = 0; i < nmig[e]; i++){
			char path[1200];
			snprintf(path, sizeof(path), "%s/%s/%s", argv[1], engines[e], mig[e][i]);
			fprintf(c, "static const char mig_%s_%d[] = ", tag, i + 1);
			emit_string(c, slurp(path));
			fprintf(c, ";\n");
		}
		fprintf(c, "const struct mqc_migration mqc_migrations_%s[] = {\n", tag);
		for(int i = 0; i < nmig[e]; i++) fprintf(c, "\t{%d, \"%s\", mig_%s_%d},\n", i + 1, mig[e][i], tag, i + 1);
		if(nmig[e] == 0) fprintf(c, "\t{0, 0, 0},\n");
		fprintf(c, "};\nconst int mqc_migration_count_%s = %d;\n\n", tag, nmig[e]);
	}
	if(fclose(c) || fclose(h)){ fprintf(stderr, "gen_queries: cannot write the output\n"); return 1; }
	return 0;
}
