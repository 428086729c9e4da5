/*
 * Randomized crash sweep for the durable log (src/persist/plog.c). For each seed a child process
 * appends batches of records, flushes them and now and then trims, through an I/O hook that at a
 * random write "loses power": each sector of that write (16, 512 or 4096 bytes, by seed)
 * reaches the disk or not at random, leaving holes anywhere in the batch or in a header slot, and
 * the child dies on the spot (_exit). The parent then reopens the log with the real system calls
 * and checks the durability contract:
 *   - the log opens (a torn last flush is a tail, not corruption);
 *   - every version the child saw reported durable is present, unless a completed trim dropped
 *     it (a trim cut short by the crash may or may not have happened);
 *   - the records form one run of consecutive versions with the right bytes (nothing invented,
 *     no holes), and the log takes new appends.
 * DR_PLOG_CRASH_SEEDS (default 400) sets the number of seeds; a failure prints its seed.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "derecho/error.h"
#include "derecho/log.h"
#include "persist/plog.h"

/* What the child tells the parent, in shared memory, before each step can crash. */
typedef struct shared_state {
    int64_t durable;       /* highest version a flush reported durable */
    int64_t trimmed_below; /* bound of the last trim that returned */
    int64_t trim_attempt;  /* bound of a trim in progress (may or may not have happened) */
    int64_t appended;      /* highest version appended */
    int finished;          /* the child ran out of steps without crashing */
    int in_trim;           /* the crash came during a trim's header write */
} shared_state;

/* The child's I/O hook: counts writes down to the crash. */
typedef struct crash_hook {
    uint64_t rng;     /* xorshift state */
    long writes_left; /* pwrite calls before the crash */
    size_t sector;    /* unit that reaches the disk whole or not at all */
} crash_hook;

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Length and bytes of version v's payload: a function of v only, so the parent can check it. */
static size_t payload_len(int64_t v) {
    uint64_t h = (uint64_t)v * 2654435761u;
    return (size_t)(h % (v % 4 == 0 ? 3000 : 120)); /* mostly small: several per sector */
}

static void payload_fill(uint8_t *p, int64_t v, size_t len) {
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(v * 13 + (int64_t)i * 5 + 3);
}

static ssize_t crash_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off) {
    crash_hook *h = ctx;
    if (--h->writes_left > 0)
        return pwrite(fd, buf, len, off);
    /* power loss: each sector of this write independently reaches the disk or not */
    const uint8_t *bytes = buf;
    for (size_t done = 0; done < len;) {
        size_t piece = h->sector - (size_t)((off + (off_t)done) % h->sector);
        if (piece > len - done)
            piece = len - done;
        if (next_rand(&h->rng) & 1)
            if (pwrite(fd, bytes + done, piece, off + (off_t)done) != (ssize_t)piece)
                _exit(3);
        done += piece;
    }
    _exit(0);
}

static int no_sync(void *ctx, int fd) { /* power loss is simulated at pwrite: no real sync needed */
    (void)ctx;
    (void)fd;
    return 0;
}

/* The child: batches of appends, flushes, sometimes a trim, until the hook kills it. */
static void child_run(const char *dir, uint64_t seed, shared_state *st) {
    static const size_t sectors[] = {16, 512, 4096}; /* 16: finer than disks, tears headers */
    crash_hook h = {seed * 0x9E3779B97F4A7C15ull + 1, 0, sectors[seed % 3]};
    h.writes_left = 1 + (long)(next_rand(&h.rng) % 40);
    dr_plog_io io = {crash_pwrite, no_sync, no_sync, &h};
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    opts.io = &io;
    dr_plog *log = NULL;
    if (dr_plog_open(dir, "c", &opts, &log, NULL, NULL) != 0)
        _exit(4);
    uint8_t payload[3000];
    int64_t v = 0;
    for (int step = 0; step < 100; step++) {
        if (next_rand(&h.rng) % 5 == 0 && st->durable > 0) {
            int64_t bound = (int64_t)(next_rand(&h.rng) % (uint64_t)(st->durable + 1));
            st->trim_attempt = bound;
            st->in_trim = 1;
            if (dr_plog_trim_below(log, bound) != 0)
                _exit(5);
            st->in_trim = 0;
            st->trimmed_below = bound > st->trimmed_below ? bound : st->trimmed_below;
            continue;
        }
        int n = 1 + (int)(next_rand(&h.rng) % 12);
        for (int i = 0; i < n; i++, v++) {
            payload_fill(payload, v, payload_len(v));
            if (dr_plog_append(log, v, 1000 + (uint64_t)v, payload, payload_len(v)) != 0)
                _exit(6);
            st->appended = v;
        }
        int64_t durable;
        if (dr_plog_flush(log, &durable) != 0 || durable != v - 1)
            _exit(7);
        st->durable = durable;
    }
    st->finished = 1;
    dr_plog_close(log);
    _exit(0);
}

/* Walk state for the parent's check. */
typedef struct check_walk {
    int64_t expect; /* next version */
    int bad;        /* a record had the wrong bytes */
} check_walk;

static int check_visit(void *ctx, const dr_plog_record *rec) {
    check_walk *w = ctx;
    uint8_t want[3000];
    size_t len = payload_len(rec->version);
    payload_fill(want, rec->version, len);
    if (rec->version != w->expect || rec->len != len || (len && memcmp(rec->data, want, len)))
        w->bad = 1;
    w->expect = rec->version + 1;
    return w->bad;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* One seed: run the child to its crash, then check the log it left. */
static void run_seed(uint64_t seed, shared_state *st) {
    char dir[300];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/plog-crash-XXXXXX", tmp);
    assert_non_null(mkdtemp(dir));
    *st = (shared_state){DR_PLOG_NO_VERSION, 0, 0, DR_PLOG_NO_VERSION, 0, 0};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_run(dir, seed, st);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("seed %llu: child failed (status %d)", (unsigned long long)seed, status);

    dr_plog *log = NULL;
    dr_plog_open_info info;
    dr_err err = {0};
    int rc = dr_plog_open(dir, "c", NULL, &log, &info, &err);
    if (rc != 0)
        fail_msg("seed %llu: reopen: %s", (unsigned long long)seed, err.msg);
    /* a trim cut short by the crash may or may not have happened */
    int64_t low = st->trimmed_below, high = st->trim_attempt > low ? st->trim_attempt : low;
    if (st->durable >= 0 && info.latest_version < st->durable)
        fail_msg("seed %llu: durable version %lld lost (latest %lld)", (unsigned long long)seed,
                 (long long)st->durable, (long long)info.latest_version);
    if (st->durable >= 0 && info.first_version != low && info.first_version != high)
        fail_msg("seed %llu: first version %lld, trims %lld or %lld", (unsigned long long)seed,
                 (long long)info.first_version, (long long)low, (long long)high);
    if (info.latest_version > st->appended)
        fail_msg("seed %llu: version %lld was never appended", (unsigned long long)seed,
                 (long long)info.latest_version);
    check_walk w = {info.first_version, 0};
    assert_int_equal(dr_plog_iterate(log, 0, INT64_MAX, check_visit, &w), 0);
    if (w.bad)
        fail_msg("seed %llu: wrong record near version %lld", (unsigned long long)seed,
                 (long long)w.expect);
    uint8_t byte = 1;
    int64_t next = info.latest_version + 1 > high ? info.latest_version + 1 : high;
    assert_int_equal(dr_plog_append(log, next, UINT64_MAX / 2, &byte, 1), 0);
    assert_int_equal(dr_plog_flush(log, NULL), 0);
    dr_plog_close(log);
    assert_int_equal(dr_plog_open(dir, "c", NULL, &log, &info, &err), 0); /* and stays clean */
    if (info.bytes_cut != 0 || info.latest_version != next)
        fail_msg("seed %llu: after repair and append: cut %llu, latest %lld",
                 (unsigned long long)seed, (unsigned long long)info.bytes_cut,
                 (long long)info.latest_version);
    dr_plog_close(log);
    remove_dir(dir);
}

static void test_crash_sweep(void **state) {
    (void)state;
    const char *env = getenv("DR_PLOG_CRASH_SEEDS");
    long seeds = env ? atol(env) : 400;
    dr_log_set_level(DR_LOGM_PERSISTENCE, DR_LOG_ERROR); /* no 'cut' warning per seed */
    shared_state *st =
        mmap(NULL, sizeof *st, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(st != MAP_FAILED);
    int finished = 0, cut = 0, in_trim = 0;
    for (long seed = 1; seed <= seeds; seed++) {
        run_seed((uint64_t)seed, st);
        finished += st->finished;
        cut += st->durable < st->appended;
        in_trim += st->in_trim;
    }
    printf("crash sweep: %ld seeds: %d crashed in a flush, %d in a trim, %d ran out\n", seeds, cut,
           in_trim, finished);
    assert_true(cut > 0 && in_trim > 0); /* the sweep crashed in both (it tests something) */
    munmap(st, sizeof *st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
