/*
 * tether's id helper: change a child's user and group ids, then exec its command.
 *
 * The hazard it answers: the kernel marks a memory map non-dumpable when a task's uid
 * or gid changes, and the native spawner's child shares the parent's map (CLONE_VM) until
 * it execs. A child that changed its ids there would mark the *parent* non-dumpable for
 * the rest of its life; so, without this program, such a child is cloned with a copy of
 * the parent's memory instead, at fork's cost, which grows with the parent's heap.
 * With it, the child does every other step of its setup on the shared map, then execs
 * this small program, which has a fresh map of its own: the id change lands there, and
 * the parent's cost stays flat.
 *
 * Usage (by the spawner only):
 *   _setids REPORT_FD BLOCK_FD PARENT_PID PDEATHSIG CAPS GID UID NGROUPS [GROUP ...]
 *
 * BLOCK_FD is a memfd holding the command as NUL-terminated strings: the program's path,
 * the count of its arguments, the arguments, then the environment's entries to the end.
 * The environment does not come in this program's own argv, which any local user may
 * read in /proc/PID/cmdline, nor in its own environment, which the dynamic loader and
 * libc would act on while this program still runs with the parent's ids: it is started
 * with an empty one.
 *
 * CAPS is the spawning thread's capability sets, "EFFECTIVE:PERMITTED:INHERITABLE" in
 * hex. An exec by root gets every capability of the bounding set back, so a caller that
 * had dropped some (CAP_SETUID, say) would otherwise find them restored here: the helper
 * first narrows its own sets to the caller's, so that each id step is allowed exactly
 * when it would have been in the caller. (An exec may also lose privileges the caller
 * had, such as capabilities from a file; the spawner then makes the child without this
 * program.) Then the groups (NGROUPS -1: keep), GID and UID (-1: keep) are set, in
 * that order, then PR_SET_PDEATHSIG (PDEATHSIG 0: none; a change of ids clears it), and
 * if PARENT_PID is no longer our parent by then, the signal is sent at once, as the
 * spawner does for its other children.
 *
 * REPORT_FD is the write end of a pipe the spawner reads until EOF. It is made
 * close-on-exec first, so a successful exec closes it with nothing written; a failed
 * step writes two ints, errno and the step's number (enum step below, which the
 * spawner maps to its stage names), and exits 127; bad arguments are the first step's
 * EINVAL. Only when REPORT_FD itself is not an open fd (a start by hand) does it print
 * its usage and exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* Numbered as _spawner.c's helper_stage() reads them. */
enum step {
    STEP_READ = 1, /* the arguments and the command block */
    STEP_SETGROUPS = 2,
    STEP_SETGID = 3,
    STEP_SETUID = 4,
    STEP_PDEATHSIG = 5,
    STEP_EXEC = 6,
    STEP_CAPABILITIES = 7, /* narrowing ours to the caller's, before the id steps */
};

static int report_fd = -1;

static void
fail(int step)
{
    int report[2] = {errno, step};
    ssize_t written = write(report_fd, report, sizeof report);
    (void)written; /* nothing else can be told: the spawner then sees a child exiting 127 */
    _exit(127);
}

/* A decimal in [low, high] into *out; -1 otherwise. 64-bit on 32-bit machines too. */
static int
parse_number(const char *text, long long low, long long high, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < low || value > high) {
        return -1;
    }
    *out = value;
    return 0;
}

/* "EFFECTIVE:PERMITTED:INHERITABLE", each a 64-bit hex mask; -1 when malformed. */
static int
parse_capabilities(const char *text, unsigned long long sets[3])
{
    for (int i = 0; i < 3; i++) {
        char *end = NULL;
        errno = 0;
        if (*text < '0' || *text > 'f') {
            return -1; /* strtoull would take a sign or spaces */
        }
        sets[i] = strtoull(text, &end, 16);
        if (errno != 0 || end == text || *end != (i < 2 ? ':' : '\0')) {
            return -1;
        }
        text = end + 1;
    }
    return 0;
}

static void
usage(void)
{
    fputs("usage: _setids REPORT_FD BLOCK_FD PARENT_PID PDEATHSIG CAPS GID UID NGROUPS [GROUP "
          "...]\n(tether's id helper: started by tether's spawner, not by hand)\n",
          stderr);
    exit(2);
}

static void
bad_arguments(void)
{
    errno = EINVAL;
    fail(STEP_READ);
}

/* Our capability sets, each narrowed to the caller's (dropping is always allowed). */
static int
narrow_capabilities(const unsigned long long caller[3])
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) < 0) {
        return -1;
    }
    for (int word = 0; word < 2; word++) {
        data[word].effective &= (uint32_t)(caller[0] >> (32 * word));
        data[word].permitted &= (uint32_t)(caller[1] >> (32 * word));
        data[word].inheritable &= (uint32_t)(caller[2] >> (32 * word));
    }
    return (int)syscall(SYS_capset, &header, data);
}

/* The whole memfd, read from its start. NULL with errno set on failure. */
static char *
read_block(int fd, size_t *size)
{
    struct stat info;
    if (fstat(fd, &info) < 0) {
        return NULL;
    }
    *size = (size_t)info.st_size;
    char *block = malloc(*size + 1);
    if (block == NULL) {
        return NULL;
    }
    size_t done = 0;
    while (done < *size) {
        ssize_t got = pread(fd, block + done, *size - done, (off_t)done);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            errno = got < 0 ? errno : EIO;
            free(block);
            return NULL;
        }
        done += (size_t)got;
    }
    block[*size] = '\0';
    return block;
}

/* The strings of block[0:size] into a new NULL-terminated array, from *offset on:
 * count of them, or every one left when count is -1. */
static char **
split(char *block, size_t size, size_t *offset, long long count)
{
    long n = 0;
    for (size_t at = *offset; at < size && (count < 0 || n < count); at += strlen(block + at) + 1) {
        n++;
    }
    if (count >= 0 && n != count) {
        errno = EINVAL;
        return NULL;
    }
    char **strings = calloc((size_t)n + 1, sizeof *strings);
    if (strings == NULL) {
        return NULL;
    }
    for (long i = 0; i < n; i++) {
        strings[i] = block + *offset;
        *offset += strlen(block + *offset) + 1;
    }
    return strings;
}

int
main(int argc, char **argv)
{
    const long long max_id = 4294967294LL; /* (uid_t)-1 means "unchanged" to the kernel */
    long long report, block_fd, parent, pdeathsig, gid, uid, ngroups;
    unsigned long long caller_capabilities[3];
    if (argc < 2 || parse_number(argv[1], 0, INT32_MAX, &report) < 0 ||
        fcntl((int)report, F_SETFD, FD_CLOEXEC) < 0) {
        usage(); /* no report fd: not started by the spawner */
    }
    report_fd = (int)report;
    if (argc < 9 || parse_number(argv[2], 0, INT32_MAX, &block_fd) < 0 ||
        parse_number(argv[3], 0, INT32_MAX, &parent) < 0 ||
        parse_number(argv[4], 0, 64, &pdeathsig) < 0 ||
        parse_capabilities(argv[5], caller_capabilities) < 0 ||
        parse_number(argv[6], -1, max_id, &gid) < 0 ||
        parse_number(argv[7], -1, max_id, &uid) < 0 ||
        parse_number(argv[8], -1, INT32_MAX, &ngroups) < 0 ||
        argc - 9 != (ngroups > 0 ? ngroups : 0)) {
        bad_arguments();
    }
    gid_t *groups = calloc(ngroups > 0 ? (size_t)ngroups : 1, sizeof *groups);
    for (long long i = 0; groups != NULL && i < ngroups; i++) {
        long long group;
        if (parse_number(argv[9 + i], 0, max_id, &group) < 0) {
            bad_arguments();
        }
        groups[i] = (gid_t)group;
    }

    size_t size = 0, offset = 0;
    char *block = groups == NULL ? NULL : read_block((int)block_fd, &size);
    if (block == NULL) {
        fail(STEP_READ);
    }
    close((int)block_fd);
    char **program = split(block, size, &offset, 2);
    long long count;
    if (program == NULL || parse_number(program[1], 1, INT32_MAX, &count) < 0) {
        errno = errno ? errno : EINVAL;
        fail(STEP_READ);
    }
    char **command = split(block, size, &offset, count);
    char **environment = command == NULL ? NULL : split(block, size, &offset, -1);
    if (environment == NULL) {
        fail(STEP_READ);
    }

    if (narrow_capabilities(caller_capabilities) < 0) {
        fail(STEP_CAPABILITIES);
    }
    if (ngroups >= 0 && setgroups((size_t)ngroups, groups) < 0) {
        fail(STEP_SETGROUPS);
    }
    if (gid >= 0 && setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) {
        fail(STEP_SETGID);
    }
    if (uid >= 0 && setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) {
        fail(STEP_SETUID);
    }
    if (pdeathsig > 0) {
        if (prctl(PR_SET_PDEATHSIG, pdeathsig, 0, 0, 0) < 0) {
            fail(STEP_PDEATHSIG);
        }
        if (getppid() != (pid_t)parent) {
            /* the parent died before the signal was armed: deliver it now */
            kill(getpid(), (int)pdeathsig);
            _exit(128 + (int)pdeathsig);
        }
    }
    execve(program[0], command, environment);
    fail(STEP_EXEC);
    return 127;
}
