/* Unit tests for src/trace (the Azure Functions 2019 CSV parsers: good files, bad lines
 * with their numbers, bounds; replication) and src/sim (a whole simulated run on a tiny trace the
 * test writes, whose numbers must add up). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "sim/sim.h"
#include "trace/trace.h"
#include "unit.h"

#define H1 "aaaa"
#define H2 "bbbb"

UNIT_TEST(test_trace_good)
{
    const char *inv = "HashFunction,HashApp,HashOwner,minute_1,minute_2,minute_3\r\n"
                      "f1," H1 ",o,1,0,2\r\n"
                      "f2," H2 ",o,0,5,0\n";
    struct trace t;
    struct gerr err;
    CHECK_EQ_INT(trace_parse_inv(&t, "x_inv.csv", inv, strlen(inv), NULL, &err), 0);
    CHECK_EQ_INT(t.nfns, 2);
    CHECK_EQ_INT(t.nminutes, 3);
    CHECK_STR(t.fns[0].function, "f1");
    CHECK_STR(t.fns[1].app, H2);
    CHECK_EQ_INT(t.counts[0 * 3 + 2], 2);
    CHECK_EQ_INT(t.counts[1 * 3 + 1], 5);
    CHECK_EQ_INT(t.fns[0].total, 3);
    const char *run = "HashFunction,HashApp,HashOwner,Count,Average,Minimum,Maximum,p0,p1,p25,p50,p75,p99,p100\n"
                      "other," H1 ",o,1,1,1.0,1.0,1,1,1,1,1,1,1\n"
                      "f2," H2 ",o,5,200,10.0,900.0,10,20,100,200,300,800,900\n";
    CHECK_EQ_INT(trace_parse_run(&t, "x_run.csv", run, strlen(run), &err), 0);
    CHECK(!t.fns[0].has_duration);
    CHECK(t.fns[1].has_duration);
    CHECK(t.fns[1].duration_pct[3] == 200);
    const char *mem = "HashApp,HashOwner,SampleCount,AverageAllocatedMb,a,b,c,d,e,f,g,h\n"
                      H1 ",o,10,300,1,2,3,4,5,6,7,8\n" H2 ",o,10,99.5,1,2,3,4,5,6,7,8\n";
    CHECK_EQ_INT(trace_parse_mem(&t, "x_mem.csv", mem, strlen(mem), &err), 0);
    CHECK_EQ_INT(t.fns[0].memory_mib, 300);
    CHECK_EQ_INT(t.fns[1].memory_mib, 100);
    trace_free(&t);
    /* Limits keep the first rows and minutes. */
    struct trace_limits lim = {.max_functions = 1, .max_minutes = 2};
    CHECK_EQ_INT(trace_parse_inv(&t, "x_inv.csv", inv, strlen(inv), &lim, &err), 0);
    CHECK_EQ_INT(t.nfns, 1);
    CHECK_EQ_INT(t.nminutes, 2);
    CHECK_EQ_INT(t.fns[0].total, 1);
    trace_free(&t);
}

/* Each bad input fails with the line (and column) named in the message. */
UNIT_TEST(test_trace_bad_lines)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", "empty"},
        {"HashFunction,HashApp,HashOwner\n", "line 1"},
        {"h,a,o,m1,m2\nf,a,o,1,2\nf,a,o,1\n", "line 3: fewer columns"},
        {"h,a,o,m1,m2\nf,a,o,1,2,3\n", "line 2: more columns"},
        {"h,a,o,m1\nf,a,o,x\n", "line 2, column 4"},
        {"h,a,o,m1\nf,a,o,-1\n", "line 2, column 4"},
        {"h,a,o,m1\nf,a,o,100000001\n", "line 2, column 4"},
        {"h,a,o,m1\n,a,o,1\n", "line 2, column 1"},
        {"h,a,o,m1\nf,\"a\",o,1\n", "line 2, column 2"},
        {"h,a,o,m1\nf,a,o,1\n\nf,a,o,1\n", "line 3: empty line"},
        {"h,a,o,m1\n", "no functions"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct trace t;
        struct gerr err;
        int r = trace_parse_inv(&t, "x_inv.csv", cases[i].text, strlen(cases[i].text), NULL, &err);
        if (r >= 0 || !strstr(err.msg, cases[i].want))
            fprintf(stderr, "  case %zu: r=%d msg=%s\n", i, r, r < 0 ? err.msg : "");
        CHECK(r < 0);
        CHECK(strstr(err.msg, cases[i].want));
        CHECK(t.fns == NULL && t.counts == NULL);
    }
    struct trace t;
    struct gerr err;
    const char *inv = "h,a,o,m1\nf,a,o,1\n";
    CHECK_EQ_INT(trace_parse_inv(&t, "x_inv.csv", inv, strlen(inv), NULL, &err), 0);
    const char *run = "h\nf,a,o,1,1,1,1,5,4,3,2,1,1,1\n";
    CHECK(trace_parse_run(&t, "x_run.csv", run, strlen(run), &err) < 0);
    CHECK(strstr(err.msg, "x_run.csv line 2, column 9: percentiles must not decrease"));
    run = "h\nf,a,o,1,1,1,1,1,2,3,nan,5,6,7\n";
    CHECK(trace_parse_run(&t, "x_run.csv", run, strlen(run), &err) < 0);
    CHECK(strstr(err.msg, "line 2, column 11"));
    const char *mem = "h\na,o,1\n";
    CHECK(trace_parse_mem(&t, "x_mem.csv", mem, strlen(mem), &err) < 0);
    CHECK(strstr(err.msg, "x_mem.csv line 2"));
    trace_free(&t);
}

/* Bounds: too many minute columns and an over-long line are refused before anything
 * big is allocated. */
UNIT_TEST(test_trace_bounds)
{
    size_t cols = TRACE_MAX_MINUTES + 1;
    size_t cap = 16 + cols * 3;
    char *hdr = malloc(cap);
    size_t n = (size_t)snprintf(hdr, cap, "h,a,o");
    for (size_t i = 0; i < cols; i++)
        n += (size_t)snprintf(hdr + n, cap - n, ",m");
    struct trace t;
    struct gerr err;
    CHECK(trace_parse_inv(&t, "x_inv.csv", hdr, n, NULL, &err) == -E2BIG);
    CHECK(strstr(err.msg, "minutes"));
    free(hdr);
    size_t big = TRACE_MAX_LINE + 10;
    char *line = malloc(big);
    memset(line, 'a', big);
    CHECK(trace_parse_inv(&t, "x_inv.csv", line, big, NULL, &err) == -E2BIG);
    CHECK(strstr(err.msg, "line 1: longer than"));
    free(line);
}

/* Replication: k copies of every function, copy 0 the original, each other copy the
 * original's minutes rotated by one offset per copy (from the seed: the same on every
 * run), with the function's durations, memory and total; bounds as a parsed trace's. */
UNIT_TEST(test_trace_replicate)
{
    const char *inv = "h,a,o,m1,m2,m3,m4,m5\n"
                      "f1,a1,o,1,2,3,4,5\n"
                      "f2,a2,o,0,0,7,0,0\n";
    struct trace t, u;
    struct gerr err;
    CHECK_EQ_INT(trace_parse_inv(&t, "x_inv.csv", inv, strlen(inv), NULL, &err), 0);
    t.fns[0].memory_mib = 300;
    t.fns[1].has_duration = true;
    t.fns[1].duration_pct[3] = 42;
    CHECK_EQ_INT(trace_replicate(&t, 1, 7, &err), 0);
    CHECK_EQ_INT(t.nfns, 2);
    CHECK_EQ_INT(trace_replicate(&t, 0, 7, &err), -EINVAL);
    CHECK_EQ_INT(trace_replicate(&t, 4, 7, &err), 0);
    CHECK_EQ_INT(t.nfns, 8);
    CHECK_EQ_INT(t.nminutes, 5);
    uint32_t offs[4] = {0};
    for (uint32_t c = 0; c < 4; c++) {
        /* Copy c of f1 (counts m + 1) tells its offset; f2 is rotated by the same. */
        const uint32_t *r1 = &t.counts[(c * 2 + 0) * 5], *r2 = &t.counts[(c * 2 + 1) * 5];
        offs[c] = r1[0] - 1;
        CHECK(c == 0 ? offs[c] == 0 : offs[c] >= 1 && offs[c] <= 4);
        for (uint32_t m = 0; m < 5; m++) {
            CHECK_EQ_INT(r1[m], (m + offs[c]) % 5 + 1);
            CHECK_EQ_INT(r2[m], (m + offs[c]) % 5 == 2 ? 7 : 0);
        }
        CHECK_EQ_INT(t.fns[c * 2].total, 15);
        CHECK_EQ_INT(t.fns[c * 2].memory_mib, 300);
        CHECK_EQ_INT(t.fns[c * 2 + 1].total, 7);
        CHECK(t.fns[c * 2 + 1].has_duration && t.fns[c * 2 + 1].duration_pct[3] == 42);
    }
    CHECK_STR(t.fns[0].function, "f1");
    CHECK_STR(t.fns[3].function, "f2~1");
    CHECK_STR(t.fns[7].app, "a2~3");
    /* The same seed gives the same offsets. */
    CHECK_EQ_INT(trace_parse_inv(&u, "x_inv.csv", inv, strlen(inv), NULL, &err), 0);
    CHECK_EQ_INT(trace_replicate(&u, 4, 7, &err), 0);
    CHECK(!memcmp(t.counts, u.counts, (size_t)t.nfns * t.nminutes * sizeof *t.counts));
    trace_free(&u);
    /* Past TRACE_MAX_FUNCTIONS: refused, the trace unchanged. */
    CHECK_EQ_INT(trace_replicate(&t, TRACE_MAX_FUNCTIONS / 8 + 1, 7, &err), -E2BIG);
    CHECK(strstr(err.msg, "replicate"));
    CHECK_EQ_INT(t.nfns, 8);
    trace_free(&t);
    /* A longest hash keeps its suffix and fits. */
    char line[512];
    char h[TRACE_HASH_MAX + 1];
    memset(h, 'a', TRACE_HASH_MAX);
    h[TRACE_HASH_MAX] = '\0';
    int n = snprintf(line, sizeof line, "h,a,o,m1\n%s,%s,o,1\n", h, h);
    CHECK_EQ_INT(trace_parse_inv(&t, "x_inv.csv", line, (size_t)n, NULL, &err), 0);
    CHECK_EQ_INT(trace_replicate(&t, 12, 1, &err), 0);
    CHECK_EQ_INT(strlen(t.fns[11].function), TRACE_HASH_MAX);
    CHECK(!strcmp(t.fns[11].function + TRACE_HASH_MAX - 3, "~11"));
    CHECK_EQ_INT(t.counts[11], 1); /* one minute: no rotation */
    trace_free(&t);
}

/* Writes a trace of 3 functions x 10 minutes into dir:
 * f1 is called once every minute and runs 100 ms; f2 ten times in minute 1 only and
 * runs 2 s; f3 never. */
static void write_tiny_trace(const char *dir)
{
    char path[256], text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "HashFunction,HashApp,HashOwner");
    for (int m = 1; m <= 10; m++)
        n += (size_t)snprintf(text + n, sizeof text - n, ",minute_%d", m);
    n += (size_t)snprintf(text + n, sizeof text - n, "\nf1,a1,o,1,1,1,1,1,1,1,1,1,1\nf2,a2,o,10,0,0,0,0,0,0,0,0,0\n"
                                                     "f3,a3,o,0,0,0,0,0,0,0,0,0,0\n");
    snprintf(path, sizeof path, "%s/t_inv.csv", dir);
    CHECK_EQ_INT(file_write_atomic(path, text, n, 0644), 0);
    const char *run = "HashFunction,HashApp,HashOwner,Count,Average,Minimum,Maximum,p0,p1,p25,p50,p75,p99,p100\n"
                      "f1,a1,o,10,100,100,100,100,100,100,100,100,100,100\n"
                      "f2,a2,o,10,2000,2000,2000,2000,2000,2000,2000,2000,2000,2000\n";
    snprintf(path, sizeof path, "%s/t_run.csv", dir);
    CHECK_EQ_INT(file_write_atomic(path, run, strlen(run), 0644), 0);
    const char *mem = "HashApp,HashOwner,SampleCount,AverageAllocatedMb,a,b,c,d,e,f,g,h\n"
                      "a1,o,1,1024,1,2,3,4,5,6,7,8\na2,o,1,2048,1,2,3,4,5,6,7,8\n";
    snprintf(path, sizeof path, "%s/t_mem.csv", dir);
    CHECK_EQ_INT(file_write_atomic(path, mem, strlen(mem), 0644), 0);
}

UNIT_TEST(test_sim_tiny_trace)
{
    char dir[] = "/tmp/gust-simtest-XXXXXX";
    CHECK(mkdtemp(dir));
    write_tiny_trace(dir);
    struct trace t;
    struct gerr err;
    CHECK_EQ_INT(trace_load(dir, NULL, &t, &err), 0);
    CHECK_EQ_INT(t.nfns, 3);
    struct sim_config cfg;
    sim_config_default(&cfg);
    cfg.trace = &t;
    cfg.even_arrivals = true;
    cfg.gpu_fraction = 0.3;  /* the heaviest: f2 */
    /* Only f1, with a 10-minute window: its container, started by the first call,
     * serves all ten. */
    struct trace one = t;
    one.nfns = 1;
    cfg.trace = &one;
    struct sim_result r;
    CHECK_EQ_INT(sim_run(&cfg, "fixed_10min", &r, &err), 0);
    CHECK_EQ_INT(r.calls, 10);
    CHECK_EQ_INT(r.succeeded, 10);
    CHECK_EQ_INT(r.inputs, 10);
    CHECK_EQ_INT(r.cold_inputs, 1);
    CHECK_EQ_INT(r.containers, 1);
    CHECK_EQ_INT(r.evictions, 0);
    /* Busy: 10 x 100 ms of 1 GiB. Alive: from the first call (at 30 s) to the end. */
    CHECK(r.busy_gib_s > 0.99 && r.busy_gib_s < 1.01);
    CHECK(r.alive_gib_s > 560 && r.alive_gib_s < 571);
    CHECK(r.idle_gib_s > 0 && r.idle_gib_s + r.busy_gib_s <= r.alive_gib_s + 1e-6);
    CHECK(r.utilization > 0 && r.utilization < 0.01);

    /* A 30 s window: the container goes after each call, so every call is cold. */
    cfg.scaledown_window_s = 30;
    CHECK_EQ_INT(sim_run(&cfg, "default", &r, &err), 0);
    CHECK_EQ_INT(r.cold_inputs, 10);
    CHECK_EQ_INT(r.containers, 10);
    CHECK_EQ_INT(r.evictions, 9);

    /* All three: f2's burst of 10 in minute 1 (2 s each, 6 s apart) runs on one
     * container after its cold start of 8 ms + 2 s init; f2 is the GPU function. */
    cfg.trace = &t;
    cfg.scaledown_window_s = 600;
    CHECK_EQ_INT(sim_run(&cfg, "default", &r, &err), 0);
    CHECK_EQ_INT(r.calls, 20);
    CHECK_EQ_INT(r.succeeded, 20);
    CHECK_EQ_INT(r.failed, 0);
    CHECK_EQ_INT(r.cold_inputs, 2);
    CHECK(r.cold_start_pct > 9.99 && r.cold_start_pct < 10.01);
    CHECK(r.gpu);
    CHECK(r.gpu_busy_s > 19.9 && r.gpu_busy_s < 20.1);
    CHECK(r.gpu_utilization > 0 && r.gpu_utilization <= 1);

    /* Three copies of each: three times the calls, each still served. */
    CHECK_EQ_INT(trace_replicate(&t, 3, cfg.seed, &err), 0);
    CHECK_EQ_INT(sim_run(&cfg, "default", &r, &err), 0);
    CHECK_EQ_INT(r.calls, 60);
    CHECK_EQ_INT(r.succeeded, 60);
    trace_free(&t);
    rm_rf(dir);
}

/* A trace's calls are served as they came: a burst of 30 five-minute calls in one
 * minute runs on 30 containers at once, not 10 (the spec's default max_containers,
 * under which 20 of them queued behind the first ten). */
UNIT_TEST(test_sim_functions_uncapped)
{
    char dir[] = "/tmp/gust-simtest-XXXXXX";
    CHECK(mkdtemp(dir));
    char path[256];
    const char *inv = "HashFunction,HashApp,HashOwner,minute_1,minute_2\nf1,a1,o,30,0\n";
    snprintf(path, sizeof path, "%s/t_inv.csv", dir);
    CHECK_EQ_INT(file_write_atomic(path, inv, strlen(inv), 0644), 0);
    const char *run = "HashFunction,HashApp,HashOwner,Count,Average,Minimum,Maximum,p0,p1,p25,p50,p75,p99,p100\n"
                      "f1,a1,o,30,300000,300000,300000,300000,300000,300000,300000,300000,300000,300000\n";
    snprintf(path, sizeof path, "%s/t_run.csv", dir);
    CHECK_EQ_INT(file_write_atomic(path, run, strlen(run), 0644), 0);
    const char *mem = "HashApp,HashOwner,SampleCount,AverageAllocatedMb,a,b,c,d,e,f,g,h\na1,o,1,128,1,2,3,4,5,6,7,8\n";
    snprintf(path, sizeof path, "%s/t_mem.csv", dir);
    CHECK_EQ_INT(file_write_atomic(path, mem, strlen(mem), 0644), 0);
    struct trace t;
    struct gerr err;
    CHECK_EQ_INT(trace_load(dir, NULL, &t, &err), 0);
    struct sim_config cfg;
    sim_config_default(&cfg);
    cfg.trace = &t;
    cfg.even_arrivals = true;
    struct sim_result r;
    CHECK_EQ_INT(sim_run(&cfg, "default", &r, &err), 0);
    CHECK_EQ_INT(r.calls, 30);
    CHECK_EQ_INT(r.succeeded, 30);
    CHECK_EQ_INT(r.cold_inputs, 30);
    CHECK_EQ_INT(r.peak_containers, 30);
    trace_free(&t);
    rm_rf(dir);
}

int main(void)
{
    UNIT_RUN(test_trace_good);
    UNIT_RUN(test_trace_bad_lines);
    UNIT_RUN(test_trace_bounds);
    UNIT_RUN(test_trace_replicate);
    UNIT_RUN(test_sim_tiny_trace);
    UNIT_RUN(test_sim_functions_uncapped);
    UNIT_MAIN_END();
}
