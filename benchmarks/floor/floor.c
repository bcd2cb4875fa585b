/*
 * The C floor of tether's benchmarks: the least any library can spend on a spawn+reap
 * or a kill->reap, timed in-process with CLOCK_MONOTONIC (the clock behind Python's
 * time.perf_counter_ns on Linux).
 *
 * Hazard first: a floor that does less than the contenders (a smaller environment,
 * no pidfd, a wait that skips poll) flatters nobody and misleads everybody. Every
 * child here gets the same environment tether passes when env=None (the C `environ`
 * as it is, which the native backend hands to execve untouched), and the kill->reap
 * floor goes through the same pidfd -> poll -> waitid(P_PIDFD) steps as tether's
 * Process.kill() + wait().
 *
 * Usage: floor TRUE_PATH SLEEP_PATH      a server: one command per stdin line
 *        floor --child DELAY_US FD       bench_zombies.py's tiny child (see below)
 *
 * Server commands (one JSON line of per-operation samples comes back for each;
 * any failure prints {"error": "..."} and exits 1):
 *   spawn N  N x (posix_spawn TRUE_PATH + waitpid)
 *   vfork N  N x (vfork + execve TRUE_PATH + waitpid)
 *   reap N   start N `SLEEP_PATH 600` children (posix_spawn + pidfd_open), wait
 *            untimed until each is `sleep` in state S, then for each in turn time
 *            pidfd_send_signal(SIGKILL) -> poll(POLLIN) -> waitid(P_PIDFD, WEXITED)
 *   quit     (or end of input) exit 0
 * Reply: {"mode": "spawn", "ns": [t1, t2, ...]} with one duration per operation.
 *
 * --child DELAY_US FD: sleep DELAY_US microseconds, write "PID NS\n" (NS read from
 * CLOCK_MONOTONIC just before exiting) to fd FD in one write(2) (atomic on a pipe),
 * and _exit(0).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

static const char *true_path;
static const char *sleep_path;

static void fail(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void reply(const char *mode, const int64_t *ns, long n) {
    printf("{\"mode\": \"%s\", \"ns\": [", mode);
    for (long i = 0; i < n; i++)
        printf(i ? ", %lld" : "%lld", (long long)ns[i]);
    printf("]}\n");
    fflush(stdout);
}

static void reap_ok(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) != pid)
        fail("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        errno = 0;
        fail("child did not exit 0");
    }
}

static void run_spawn(int64_t *ns, long n) {
    char *argv[] = {(char *)true_path, NULL};
    for (long i = 0; i < n; i++) {
        pid_t pid;
        int64_t start = now_ns();
        int err = posix_spawn(&pid, true_path, NULL, NULL, argv, environ);
        if (err) {
            errno = err;
            fail("posix_spawn");
        }
        reap_ok(pid);
        ns[i] = now_ns() - start;
    }
}

/* In a function of its own, so that no variable of the caller lives across vfork. */
static __attribute__((noinline)) pid_t vfork_exec(char *const *argv) {
    pid_t pid = vfork();
    if (pid == 0) {
        execve(argv[0], argv, environ);
        _exit(127);
    }
    return pid;
}

static void run_vfork(int64_t *ns, long n) {
    char *argv[] = {(char *)true_path, NULL};
    for (long i = 0; i < n; i++) {
        int64_t start = now_ns();
        pid_t pid = vfork_exec(argv);
        if (pid < 0)
            fail("vfork");
        reap_ok(pid);
        ns[i] = now_ns() - start;
    }
}

/* 1 when /proc/PID/stat shows the command "sleep" in state S. */
static int sleeping(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("open /proc/PID/stat");
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0)
        fail("read /proc/PID/stat");
    buf[len] = '\0';
    char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
    if (!open_paren || !close_paren || close_paren[1] == '\0')
        return 0;
    *close_paren = '\0';
    return strcmp(open_paren + 1, "sleep") == 0 && close_paren[2] == 'S';
}

static void run_reap(int64_t *ns, long n) {
    char *argv[] = {(char *)sleep_path, "600", NULL};
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    int *pidfds = calloc((size_t)n, sizeof *pidfds);
    if (!pids || !pidfds)
        fail("calloc");
    for (long i = 0; i < n; i++) {
        int err = posix_spawn(&pids[i], sleep_path, NULL, NULL, argv, environ);
        if (err) {
            errno = err;
            fail("posix_spawn");
        }
        pidfds[i] = (int)syscall(SYS_pidfd_open, pids[i], 0);
        if (pidfds[i] < 0) {
            kill(pids[i], SIGKILL);
            fail("pidfd_open");
        }
    }
    int64_t deadline = now_ns() + 10 * (int64_t)1000000000;
    for (long i = 0; i < n; i++) {
        while (!sleeping(pids[i])) {
            if (now_ns() > deadline) {
                errno = ETIMEDOUT;
                for (long j = 0; j < n; j++)
                    kill(pids[j], SIGKILL);
                fail("children did not reach their sleep");
            }
            usleep(1000);
        }
    }
    for (long i = 0; i < n; i++) {
        siginfo_t info;
        struct pollfd pfd = {.fd = pidfds[i], .events = POLLIN};
        int64_t start = now_ns();
        if (syscall(SYS_pidfd_send_signal, pidfds[i], SIGKILL, NULL, 0) != 0)
            fail("pidfd_send_signal");
        while (poll(&pfd, 1, -1) < 0)
            if (errno != EINTR)
                fail("poll");
        memset(&info, 0, sizeof info);
        if (waitid((idtype_t)P_PIDFD, (id_t)pidfds[i], &info, WEXITED) != 0)
            fail("waitid");
        ns[i] = now_ns() - start;
        if (info.si_code != CLD_KILLED || info.si_status != SIGKILL) {
            errno = 0;
            fail("child did not die of SIGKILL");
        }
        close(pidfds[i]);
    }
    free(pids);
    free(pidfds);
}

static int child(const char *delay_text, const char *fd_text) {
    long delay_us = strtol(delay_text, NULL, 10);
    int fd = (int)strtol(fd_text, NULL, 10);
    char line[64];
    if (delay_us > 0) {
        struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    int len = snprintf(line, sizeof line, "%d %lld\n", (int)getpid(), (long long)now_ns());
    if (write(fd, line, (size_t)len) != len)
        _exit(1);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--child") == 0)
        return child(argv[2], argv[3]);
    if (argc != 3) {
        fprintf(stderr, "usage: %s TRUE_PATH SLEEP_PATH | --child DELAY_US FD\n", argv[0]);
        return 2;
    }
    true_path = argv[1];
    sleep_path = argv[2];
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        char mode[16];
        long n;
        if (strncmp(line, "quit", 4) == 0)
            return 0;
        if (sscanf(line, "%15s %ld", mode, &n) != 2 || n < 1 || n > 1000000) {
            errno = EINVAL;
            fail("bad command");
        }
        int64_t *ns = calloc((size_t)n, sizeof *ns);
        if (!ns)
            fail("calloc");
        if (strcmp(mode, "spawn") == 0)
            run_spawn(ns, n);
        else if (strcmp(mode, "vfork") == 0)
            run_vfork(ns, n);
        else if (strcmp(mode, "reap") == 0)
            run_reap(ns, n);
        else {
            errno = EINVAL;
            fail("unknown mode");
        }
        reply(mode, ns, n);
        free(ns);
    }
    return 0;
}
