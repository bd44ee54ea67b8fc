/*
 * table.c -- the expectation table of the request tests.
 *
 * `python python_tests/oracle.py c-table` (run by scripts/ctest.sh with the interpreter the
 * tests embed) writes one line per exporter and one per request sent to it: the oracle of the
 * Python suite, applied to the exporters c_tests/subjects.py describes. This file reads it
 * (once, on first use) and hands out rows; the request checker (requests.c) compares each
 * outcome with its row. A request with no row, a row no request used, an exporter the table
 * lists but no test built, and a line the reader does not understand are all failures: the
 * table and the harness must describe the same matrix.
 */

#include "harness.h"

#include <stdlib.h>
#include <string.h>

#define TABLE_VERSION "# bufferkit request table 1"

const char *table_path;

struct TableRow {
    const char *path; /* "call" or "slot" */
    unsigned flags;
    int n_fields;
    const char **fields; /* fields[0]: "served" or "refused"; then the row's own fields */
    int used;
};

struct TableSubject {
    const char *test;
    const char *label;
    int has_exports;
    int driven;
    TableRow *rows;
    int n_rows;
    int cap_rows;
};

static TableSubject *subjects;
static int n_subjects;
static int loaded;
static char load_error[512]; /* not empty: the table could not be used */

/* Splits line (modified in place) at tabs into out[0..max); returns the count. */
static int
split_tabs(char *line, const char **out, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        out[n++] = p;
        char *tab = strchr(p, '\t');
        if (tab == NULL) {
            break;
        }
        *tab = '\0';
        p = tab + 1;
    }
    return n;
}

static int
add_subject(const char **f, int n, int line_no)
{
    if (n != 5 || strncmp(f[3], "policy=", 7) != 0 ||
        (strcmp(f[4], "exports=0") != 0 && strcmp(f[4], "exports=1") != 0)) {
        snprintf(load_error, sizeof load_error, "line %d: a subject line must be "
                 "subject/TEST/LABEL/policy=NAME/exports=0|1", line_no);
        return -1;
    }
    TableSubject *grown = realloc(subjects, sizeof *subjects * (size_t)(n_subjects + 1));
    if (grown == NULL) {
        snprintf(load_error, sizeof load_error, "out of memory");
        return -1;
    }
    subjects = grown;
    TableSubject *s = &subjects[n_subjects++];
    memset(s, 0, sizeof *s);
    s->test = f[1];
    s->label = f[2];
    s->has_exports = f[4][8] == '1';
    return 0;
}

static int
add_row(const char **f, int n, int line_no)
{
    TableSubject *s = n_subjects > 0 ? &subjects[n_subjects - 1] : NULL;
    if (n < 6 || s == NULL || strcmp(s->test, f[1]) != 0 || strcmp(s->label, f[2]) != 0) {
        snprintf(load_error, sizeof load_error, "line %d: a row must follow the subject line "
                 "of its exporter and have a path, flags and an outcome", line_no);
        return -1;
    }
    char *end;
    unsigned long flags = strtoul(f[4], &end, 16);
    if ((strcmp(f[3], "call") != 0 && strcmp(f[3], "slot") != 0) || *end != '\0' ||
        flags > 0xFFFFFFFFul) {
        snprintf(load_error, sizeof load_error, "line %d: bad path '%s' or flags '%s'", line_no,
                 f[3], f[4]);
        return -1;
    }
    for (int i = 0; i < s->n_rows; i++) {
        if (s->rows[i].flags == flags && strcmp(s->rows[i].path, f[3]) == 0) {
            snprintf(load_error, sizeof load_error, "line %d: a second row for %s %s %s (extra "
                     "row)", line_no, f[2], f[3], f[4]);
            return -1;
        }
    }
    if (s->n_rows == s->cap_rows) {
        int cap = s->cap_rows ? 2 * s->cap_rows : 64;
        TableRow *grown = realloc(s->rows, sizeof *grown * (size_t)cap);
        if (grown == NULL) {
            snprintf(load_error, sizeof load_error, "out of memory");
            return -1;
        }
        s->rows = grown;
        s->cap_rows = cap;
    }
    const char **fields = malloc(sizeof *fields * (size_t)(n - 4));
    if (fields == NULL) {
        snprintf(load_error, sizeof load_error, "out of memory");
        return -1;
    }
    fields[0] = f[0];
    for (int i = 5; i < n; i++) {
        fields[i - 4] = f[i];
    }
    s->rows[s->n_rows++] = (TableRow){f[3], (unsigned)flags, n - 4, fields, 0};
    return 0;
}

/* Reads the whole table; on any problem load_error says what. The lines are kept for the life
 * of the process (the rows point into them). */
static void
load_table(void)
{
    loaded = 1;
    if (table_path == NULL) {
        snprintf(load_error, sizeof load_error, "no --table FILE was given");
        return;
    }
    FILE *in = fopen(table_path, "r");
    if (in == NULL) {
        snprintf(load_error, sizeof load_error, "cannot open %s", table_path);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int line_no = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        line_no++;
        if (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        }
        if (line_no == 1 && strncmp(line, TABLE_VERSION, strlen(TABLE_VERSION)) != 0) {
            snprintf(load_error, sizeof load_error, "%s does not start with '%s'", table_path,
                     TABLE_VERSION);
            break;
        }
        if (len == 0 || line[0] == '#') {
            continue;
        }
        char *kept = strdup(line);
        const char *f[32];
        int n = kept != NULL ? split_tabs(kept, f, 32) : 0;
        int rc = n == 0 ? -1
                 : strcmp(f[0], "subject") == 0 ? add_subject(f, n, line_no)
                 : strcmp(f[0], "served") == 0 || strcmp(f[0], "refused") == 0
                     ? add_row(f, n, line_no)
                     : (snprintf(load_error, sizeof load_error, "line %d: unknown kind '%s'",
                                 line_no, f[0]),
                        -1);
        if (rc < 0) {
            if (load_error[0] == '\0') {
                snprintf(load_error, sizeof load_error, "line %d: out of memory", line_no);
            }
            break;
        }
    }
    free(line);
    fclose(in);
    if (load_error[0] == '\0' && n_subjects == 0) {
        snprintf(load_error, sizeof load_error, "%s lists no exporter", table_path);
    }
}

const TableSubject *
table_subject(const char *test, const char *label, Check *c)
{
    if (!loaded) {
        load_table();
    }
    if (load_error[0] != '\0') {
        check_fail(c, "expectation table: %s", load_error);
        return NULL;
    }
    for (int i = 0; i < n_subjects; i++) {
        if (strcmp(subjects[i].test, test) == 0 && strcmp(subjects[i].label, label) == 0) {
            subjects[i].driven = 1;
            return &subjects[i];
        }
    }
    check_fail(c, "the expectation table has no exporter '%s' in %s (missing rows)", label, test);
    return NULL;
}

int
table_subject_has_exports(const TableSubject *s)
{
    return s->has_exports;
}

const TableRow *
table_row(const TableSubject *s, const char *path, int flags)
{
    for (int i = 0; i < s->n_rows; i++) {
        TableRow *r = &s->rows[i];
        if (r->flags == (unsigned)flags && strcmp(r->path, path) == 0) {
            r->used = 1;
            return r;
        }
    }
    return NULL;
}

int
table_row_fields(const TableRow *r, const char ***fields)
{
    *fields = r->fields;
    return r->n_fields;
}

void
table_subject_done(const TableSubject *s)
{
    Check c;
    check_begin(&c, "%s: the table's rows for it", s->label);
    for (int i = 0; i < s->n_rows; i++) {
        if (!s->rows[i].used) {
            check_fail(&c, "extra row in the table: %s 0x%x was never requested", s->rows[i].path,
                       s->rows[i].flags);
        }
    }
    if (c.failures != 0) { /* counted only when it fails, like the clean-interpreter check */
        check_end(&c);
    }
}

void
table_test_done(const char *test)
{
    Check c;
    check_begin(&c, "%s: the table's exporters", test);
    if (!loaded) {
        load_table();
    }
    int listed = 0;
    for (int i = 0; i < n_subjects; i++) {
        if (strcmp(subjects[i].test, test) != 0) {
            continue;
        }
        listed++;
        if (!subjects[i].driven) {
            check_fail(&c, "extra exporter in the table: '%s' was never built by the test",
                       subjects[i].label);
        }
    }
    if (load_error[0] != '\0') {
        check_fail(&c, "expectation table: %s", load_error);
    }
    else if (listed == 0) {
        check_fail(&c, "the table lists no exporter for this test");
    }
    if (c.failures != 0) {
        check_end(&c);
    }
}
