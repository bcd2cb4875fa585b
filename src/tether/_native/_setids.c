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
 *   _setids REPORT_FD BLOCK_FD PARENT_PID PDEATHSIG GID UID NGROUPS [GROUP ...]
 *
 * BLOCK_FD is a memfd holding the command as NUL-terminated strings: the program's path,
 * the count of its arguments, the arguments, then the environment's entries to the end.
 * The environment does not come in this program's own argv, which any local user may
 * read in /proc/PID/cmdline, nor in its own environment, which the dynamic loader and
 * libc would act on while this program still runs with the parent's ids: it is started
 * with an empty one. GID, UID (-1: keep) and the groups (NGROUPS -1: keep) are set in
 * that order, then PR_SET_PDEATHSIG (PDEATHSIG 0: none; a change of ids clears it), and
 * if PARENT_PID is no longer our parent by then, the signal is sent at once, as the
 * spawner does for its other children.
 *
 * REPORT_FD is the write end of a pipe the spawner reads until EOF. It is made
 * close-on-exec first, so a successful exec closes it with nothing written; a failed
 * step writes two ints, errno and the step's number (enum step below, which the
 * spawner maps to its stage names), and exits 127. Exit 2 is a misuse: bad arguments.
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
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Numbered as _spawner.c's helper_stage() reads them. */
enum step {
    STEP_READ = 1, /* reading the command block */
    STEP_SETGROUPS = 2,
    STEP_SETGID = 3,
    STEP_SETUID = 4,
    STEP_PDEATHSIG = 5,
    STEP_EXEC = 6,
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

static int
parse_long(const char *text, long low, long high, long *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < low || value > high) {
        return -1;
    }
    *out = value;
    return 0;
}

static void
usage(void)
{
    fputs("usage: _setids REPORT_FD BLOCK_FD PARENT_PID PDEATHSIG GID UID NGROUPS [GROUP ...]\n"
          "(tether's id helper: started by tether's spawner, not by hand)\n",
          stderr);
    exit(2);
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
split(char *block, size_t size, size_t *offset, long count)
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
    long report, block_fd, parent, pdeathsig, gid, uid, ngroups;
    if (argc < 8 || parse_long(argv[1], 0, INT32_MAX, &report) < 0 ||
        parse_long(argv[2], 0, INT32_MAX, &block_fd) < 0 ||
        parse_long(argv[3], 0, INT32_MAX, &parent) < 0 ||
        parse_long(argv[4], 0, 64, &pdeathsig) < 0 ||
        parse_long(argv[5], -1, UINT32_MAX - 1L, &gid) < 0 ||
        parse_long(argv[6], -1, UINT32_MAX - 1L, &uid) < 0 ||
        parse_long(argv[7], -1, 65536, &ngroups) < 0 || argc != 8 + (ngroups > 0 ? ngroups : 0)) {
        usage();
    }
    report_fd = (int)report;
    if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0) {
        usage(); /* not an open fd: nobody to report to */
    }
    gid_t *groups = calloc(ngroups > 0 ? (size_t)ngroups : 1, sizeof *groups);
    for (long i = 0; groups != NULL && i < ngroups; i++) {
        long group;
        if (parse_long(argv[8 + i], 0, UINT32_MAX - 1L, &group) < 0) {
            usage();
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
    long count;
    if (program == NULL || parse_long(program[1], 1, INT32_MAX, &count) < 0) {
        errno = errno ? errno : EINVAL;
        fail(STEP_READ);
    }
    char **command = split(block, size, &offset, count);
    char **environment = command == NULL ? NULL : split(block, size, &offset, -1);
    if (environment == NULL) {
        fail(STEP_READ);
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
