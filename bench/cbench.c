/*
 * cbench.c -- the C level of bufferkit's benchmark: what one PyObject_GetBuffer +
 * PyBuffer_Release pair costs a C consumer, for every row of bench/bench_rows.py and the six
 * requests below, all measured in one process so that ratios between rows mean something.
 *
 * The program embeds the interpreter it was linked against (as the C tests in c_tests/ do), imports
 * bench_rows (which builds every exporter, including the floor of bench/floor.c), and acts as
 * a C extension would on the consumer side. Every measurement goes through one function,
 * bk_bench_loop(), so every row pays the same harness overhead.
 *
 *   cbench list                  every (row, request): served, or refused with the message
 *   cbench time ROUNDS TARGET_US [cpu|wall]
 *                                interleaved rounds: each round times every served case once
 *                                (TARGET_US microseconds of pairs, order shuffled per round);
 *                                prints min and median ns per pair over the rounds, measured
 *                                with the thread's CPU-time clock (cpu, the default) or
 *                                CLOCK_MONOTONIC (wall)
 *   cbench count N               for valgrind --tool=callgrind (see bench/run.sh): calls
 *                                bk_bench_loop with N pairs (warm-up), then N, 2N and 3N pairs
 *                                for every served case, printing the sequence number of each
 *                                call, i.e. of the dump callgrind writes after it
 *   cbench mem                   RSS (VmRSS of /proc/self/status) and tracemalloc growth while
 *                                10^4 exports of 256 MiB objects are held (the Py_buffer
 *                                storage is preallocated and touched, so only the exporter's
 *                                own cost shows)
 *
 * Output is tab-separated, one record a line, first field the record kind; bench/report.py
 * reads it. Anything unexpected goes to stderr with a non-zero exit status.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ROWS 64
#define MAX_ROUNDS 2001
#define MEM_EXPORTS 10000

static const struct {
    const char *name;
    int flags;
} requests[] = {
    {"SIMPLE", PyBUF_SIMPLE},
    {"WRITABLE", PyBUF_WRITABLE},
    {"ND", PyBUF_ND},
    {"STRIDED_RO", PyBUF_STRIDED_RO},
    {"FULL_RO", PyBUF_FULL_RO},
    {"CONTIG_RO", PyBUF_CONTIG_RO}, /* == PyBUF_ND in CPython's headers: an independent repeat */
};
#define NREQ ((int)(sizeof requests / sizeof requests[0]))

typedef struct {
    char key[64];
    char label[64];
    char group[16];
    PyObject *obj;
    int served[NREQ];
    char refusal[NREQ][160];
} Row;

static Row rows[MAX_ROWS];
static int nrows;

/* ------------------------------------------------------------------------------------------ */

/* The measured loop. noipa: never inlined, cloned or merged, so that callgrind's
 * --toggle-collect/--dump-after see one call per measurement and every row runs the very same
 * machine code. Returns n, or -1 if an export failed (the exception is left set). */
__attribute__((noipa)) long
bk_bench_loop(PyObject *obj, int flags, long n)
{
    Py_buffer view;
    for (long i = 0; i < n; i++) {
        if (PyObject_GetBuffer(obj, &view, flags) != 0) {
            return -1;
        }
        PyBuffer_Release(&view);
    }
    return n;
}

/* The clock of `cbench time`: the thread's CPU time by default, so that time the scheduler
 * gives to other processes (the benchmark machine is shared) is not counted; "wall" selects
 * CLOCK_MONOTONIC. */
static clockid_t time_clock = CLOCK_THREAD_CPUTIME_ID;

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(time_clock, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void
die_py(const char *what)
{
    fprintf(stderr, "cbench: %s\n", what);
    if (PyErr_Occurred()) {
        PyErr_Print();
    }
    exit(1);
}

static void
copy_str(char *dst, size_t n, PyObject *s)
{
    const char *u = PyUnicode_AsUTF8(s);
    if (u == NULL) {
        die_py("a row field is not a str");
    }
    snprintf(dst, n, "%s", u);
}

/* Imports bench_rows, takes its rows and probes every request once. */
static void
load_rows(void)
{
    PyObject *mod = PyImport_ImportModule("bench_rows");
    if (mod == NULL) {
        die_py("cannot import bench_rows (is bench/ on PYTHONPATH?)");
    }
    PyObject *list = PyObject_CallMethod(mod, "c_rows", NULL);
    if (list == NULL || !PyList_Check(list)) {
        die_py("bench_rows.c_rows() failed");
    }
    nrows = (int)PyList_GET_SIZE(list);
    if (nrows > MAX_ROWS) {
        fprintf(stderr, "cbench: %d rows, at most %d\n", nrows, MAX_ROWS);
        exit(1);
    }
    for (int i = 0; i < nrows; i++) {
        PyObject *t = PyList_GET_ITEM(list, i);
        Row *r = &rows[i];
        copy_str(r->key, sizeof r->key, PyTuple_GetItem(t, 0));
        copy_str(r->label, sizeof r->label, PyTuple_GetItem(t, 1));
        copy_str(r->group, sizeof r->group, PyTuple_GetItem(t, 2));
        r->obj = PyTuple_GetItem(t, 3);
        Py_INCREF(r->obj);
        for (int q = 0; q < NREQ; q++) {
            Py_buffer view;
            if (PyObject_GetBuffer(r->obj, &view, requests[q].flags) == 0) {
                PyBuffer_Release(&view);
                r->served[q] = 1;
                r->refusal[q][0] = '\0';
                continue;
            }
            r->served[q] = 0;
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyObject *s = value != NULL ? PyObject_Str(value) : NULL;
            const char *u = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
            snprintf(r->refusal[q], sizeof r->refusal[q], "%s: %s",
                     type != NULL ? ((PyTypeObject *)type)->tp_name : "?", u != NULL ? u : "?");
            for (char *c = r->refusal[q]; *c; c++) {
                if (*c == '\t' || *c == '\n') {
                    *c = ' ';
                }
            }
            Py_XDECREF(s);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            PyErr_Clear();
        }
    }
    Py_DECREF(list);
    Py_DECREF(mod);
}

static void
cmd_list(void)
{
    for (int i = 0; i < nrows; i++) {
        for (int q = 0; q < NREQ; q++) {
            printf("case\t%s\t%s\t%s\t%s\t0x%x\t%s\t%s\n", rows[i].key, rows[i].group, rows[i].label,
                   requests[q].name, requests[q].flags, rows[i].served[q] ? "served" : "refused",
                   rows[i].refusal[q]);
        }
    }
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
run_loop(Row *r, int q, long n)
{
    if (bk_bench_loop(r->obj, requests[q].flags, n) != n) {
        fprintf(stderr, "cbench: %s %s failed after serving the probe\n", r->key, requests[q].name);
        die_py("export failed");
    }
}

static void
cmd_time(int rounds, double target_us)
{
    typedef struct {
        int row, req;
        long pairs;
        double *ns;
    } Case;
    static Case cases[MAX_ROWS * NREQ];
    int ncases = 0;
    for (int i = 0; i < nrows; i++) {
        for (int q = 0; q < NREQ; q++) {
            if (!rows[i].served[q]) {
                continue;
            }
            Case *c = &cases[ncases++];
            c->row = i;
            c->req = q;
            /* calibrate: pairs per measurement for about target_us */
            run_loop(&rows[i], q, 1000);
            double t0 = now_ns();
            run_loop(&rows[i], q, 1000);
            double per = (now_ns() - t0) / 1000.0;
            long pairs = (long)(target_us * 1000.0 / (per > 0.5 ? per : 0.5));
            c->pairs = pairs < 100 ? 100 : pairs > 1000000 ? 1000000 : pairs;
            c->ns = calloc((size_t)rounds, sizeof(double));
        }
    }
    int order[MAX_ROWS * NREQ];
    for (int k = 0; k < ncases; k++) {
        order[k] = k;
    }
    uint64_t seed = 0x9E3779B97F4A7C15u;
    for (int round = 0; round < rounds; round++) {
        for (int k = ncases - 1; k > 0; k--) { /* Fisher-Yates with a fixed-seed xorshift */
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            int j = (int)(seed % (uint64_t)(k + 1));
            int t = order[k];
            order[k] = order[j];
            order[j] = t;
        }
        for (int k = 0; k < ncases; k++) {
            Case *c = &cases[order[k]];
            double t0 = now_ns();
            run_loop(&rows[c->row], c->req, c->pairs);
            c->ns[round] = (now_ns() - t0) / (double)c->pairs;
        }
    }
    for (int k = 0; k < ncases; k++) {
        Case *c = &cases[k];
        qsort(c->ns, (size_t)rounds, sizeof(double), cmp_double);
        double median = rounds % 2 ? c->ns[rounds / 2] : (c->ns[rounds / 2 - 1] + c->ns[rounds / 2]) / 2;
        printf("time\t%s\t%s\t%.3f\t%.3f\t%ld\t%d\n", rows[c->row].key, requests[c->req].name, c->ns[0], median,
               c->pairs, rounds);
    }
}

static void
cmd_count(long n)
{
    long seq = 0; /* callgrind numbers its dumps from 1, one per return of bk_bench_loop */
    for (int i = 0; i < nrows; i++) {
        for (int q = 0; q < NREQ; q++) {
            if (!rows[i].served[q]) {
                continue;
            }
            run_loop(&rows[i], q, n); /* warm-up: first-call effects land in a dump not used */
            printf("dump\t%ld\t%s\t%s\twarm\n", ++seq, rows[i].key, requests[q].name);
            for (long m = 1; m <= 3; m++) {
                run_loop(&rows[i], q, m * n);
                printf("dump\t%ld\t%s\t%s\t%ld\n", ++seq, rows[i].key, requests[q].name, m * n);
            }
        }
    }
}

static long
rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}

static long
traced_bytes(PyObject *tracemalloc)
{
    PyObject *t = PyObject_CallMethod(tracemalloc, "get_traced_memory", NULL);
    if (t == NULL) {
        die_py("tracemalloc.get_traced_memory() failed");
    }
    long v = PyLong_AsLong(PyTuple_GetItem(t, 0));
    Py_DECREF(t);
    return v;
}

/* Holds `count` exports of obj in views[] and returns the growth of RSS (traced = 0) or of
 * tracemalloc's traced memory (traced = 1), in bytes, while they are held. */
static long
hold_exports(PyObject *obj, Py_buffer *views, int count, PyObject *tracemalloc, int traced)
{
    long before = traced ? traced_bytes(tracemalloc) : rss_kib() * 1024;
    for (int k = 0; k < count; k++) {
        if (PyObject_GetBuffer(obj, &views[k], PyBUF_FULL_RO) != 0) {
            die_py("export failed");
        }
    }
    long after = traced ? traced_bytes(tracemalloc) : rss_kib() * 1024;
    for (int k = 0; k < count; k++) {
        PyBuffer_Release(&views[k]);
    }
    return after - before;
}

/* Two passes over the 256 MiB objects: RSS without tracemalloc (its bookkeeping would show in
 * RSS), then tracemalloc. Each figure is (growth with 10^4 exports held) - (growth with none
 * held), so that what measuring itself allocates cancels. */
static void
cmd_mem(void)
{
    static Py_buffer views[MEM_EXPORTS];
    memset(views, 0xA5, sizeof views); /* touch: the consumer's storage is not the exporter's */
    PyObject *tracemalloc = PyImport_ImportModule("tracemalloc");
    PyObject *mod = PyImport_ImportModule("bench_rows");
    if (tracemalloc == NULL || mod == NULL) {
        die_py("cannot import tracemalloc and bench_rows");
    }
    PyObject *list = PyObject_CallMethod(mod, "mem_objects", NULL);
    if (list == NULL || !PyList_Check(list)) {
        die_py("bench_rows.mem_objects() failed");
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    long growth[2][16];
    if (n > 16) {
        die_py("too many mem objects");
    }
    for (int traced = 0; traced <= 1; traced++) {
        if (traced) {
            PyObject *r = PyObject_CallMethod(tracemalloc, "start", NULL);
            if (r == NULL) {
                die_py("tracemalloc.start() failed");
            }
            Py_DECREF(r);
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *obj = PyTuple_GetItem(PyList_GET_ITEM(list, i), 1);
            hold_exports(obj, views, 1, tracemalloc, traced); /* warm */
            long none = hold_exports(obj, views, 0, tracemalloc, traced);
            long held = hold_exports(obj, views, MEM_EXPORTS, tracemalloc, traced);
            growth[traced][i] = held - none;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *key = PyUnicode_AsUTF8(PyTuple_GetItem(PyList_GET_ITEM(list, i), 0));
        printf("mem\t%s\t%d\t%ld\t%ld\n", key, MEM_EXPORTS, growth[0][i], growth[1][i]);
    }
    Py_DECREF(list);
    Py_DECREF(mod);
    Py_DECREF(tracemalloc);
}

static int
usage(void)
{
    fprintf(stderr, "usage: cbench list | time ROUNDS TARGET_US [cpu|wall] | count N | mem\n");
    return 2;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        return usage();
    }
    Py_Initialize();
    /* No collection can start inside a measurement (none of the loops allocates, except the
     * Exporter's Python-level calls, which must not pay for unrelated collections). */
    if (PyRun_SimpleString("import gc; gc.disable()") != 0) {
        die_py("gc.disable() failed");
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "mem") == 0) {
        cmd_mem();
    } else {
        load_rows();
        if (strcmp(cmd, "list") == 0) {
            cmd_list();
        } else if (strcmp(cmd, "time") == 0 && (argc == 4 || argc == 5)) {
            int rounds = atoi(argv[2]);
            if (rounds < 1 || rounds > MAX_ROUNDS) {
                return usage();
            }
            if (argc == 5 && strcmp(argv[4], "wall") == 0) {
                time_clock = CLOCK_MONOTONIC;
            } else if (argc == 5 && strcmp(argv[4], "cpu") != 0) {
                return usage();
            }
            cmd_time(rounds, atof(argv[3]));
        } else if (strcmp(cmd, "count") == 0 && argc == 3) {
            cmd_count(atol(argv[2]));
        } else {
            return usage();
        }
    }
    fflush(stdout);
    /* Rows are not released: the process ends here, as an extension's tests would. */
    if (Py_FinalizeEx() < 0) {
        return 1;
    }
    return 0;
}
