/*
 * tether's namespace init: PID 1 of the PID namespace of one supervised child.
 *
 * The hazard it answers: when a supervising process is SIGKILLed, nothing runs in it
 * any more, so nothing of it can stop the grandchildren its children started. Only the
 * kernel can, and it does so for a PID namespace: when the namespace's init (its PID 1)
 * dies, the kernel SIGKILLs every process left in the namespace, setsid double-forked
 * daemons included. So in kill="namespace" mode every child gets a namespace of its
 * own, and this program is its init. It dies with the supervisor three ways over:
 *
 *   - PR_SET_PDEATHSIG(SIGKILL), armed by the spawner before exec (tether spawns inits
 *     from a thread that lives as long as the process) and again here. The kernel
 *     forces a SIGKILL sent from an ancestor namespace onto an init, so it is
 *     delivered. But it fires when the spawning *thread* exits, and not at all if the
 *     supervisor died before the prctl ran;
 *   - so the supervisor also holds the other end of a socket, the lifeline (argv[1]).
 *     The kernel closes it when the supervising process dies, however it dies; poll
 *     then reports a hang-up, here at once if that happened before we even started;
 *   - and in the usual case the lifeline carries one message: a pidfd of the target
 *     (the supervised child). The target is the supervisor's own child, born into this
 *     namespace by setns from the supervisor's side, so that the supervisor reaps it
 *     and reads its real wait status. When that pidfd turns readable the target has
 *     exited, and this init exits too: the kernel kills whatever the target left.
 *
 * Meanwhile it does an init's work: it reaps the orphans re-parented to it, and it
 * forwards to the target the signals others send it (with no handler, PID 1 ignores
 * them). Every signal is blocked and read from a signalfd, so nothing runs
 * asynchronously. It never exits with an error it could have avoided: exit 0 means
 * "done", 2 a misuse (not PID 1, bad arguments).
 *
 * It is a separate executable built by setup.py next to the spawner extension (a
 * process that shares the supervisor's memory cannot stay alive as an init).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

static int
parse_fd(const char *text)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 1 << 30) {
        return -1;
    }
    return (int)value;
}

/* One message on the lifeline: a byte, and the target's pidfd as SCM_RIGHTS.
 * Returns 1 when the lifeline is closed (the supervisor is gone or let go). */
static int
read_lifeline(int lifeline, int *target)
{
    char byte;
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t got = recvmsg(lifeline, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (got < 0) {
        return errno == EAGAIN || errno == EINTR ? 0 : 1;
    }
    if (got == 0) {
        return 1;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        if (*target < 0) {
            *target = fd;
        }
        else {
            close(fd); /* only the first target counts */
        }
    }
    return 0;
}

static void
reap_orphans(void)
{
    int status;
    while (waitpid(-1, &status, WNOHANG) > 0) {
    }
}

static void
handle_signals(int signals, int target)
{
    struct signalfd_siginfo info;
    while (read(signals, &info, sizeof info) == (ssize_t)sizeof info) {
        if (info.ssi_signo == SIGCHLD) {
            reap_orphans();
        }
        else if (target >= 0) {
            syscall(SYS_pidfd_send_signal, target, (int)info.ssi_signo, NULL, 0);
        }
    }
}

int
main(int argc, char **argv)
{
    int lifeline = argc == 2 ? parse_fd(argv[1]) : -1;
    if (lifeline < 0) {
        fprintf(stderr, "usage: %s LIFELINE_FD (started by tether, kill=\"namespace\")\n",
                argc > 0 ? argv[0] : "_nsinit");
        return 2;
    }
    if (getpid() != 1) {
        fprintf(stderr, "%s: not PID 1 of a new PID namespace\n", argv[0]);
        return 2;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        return 2;
    }
    /* Let go of the supervisor's stdin and stdout (a pipe someone may wait on for EOF);
     * stderr stays, for the messages above. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        close(null);
    }
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    int signals = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signals < 0) {
        return 2;
    }
    int target = -1;
    for (;;) {
        struct pollfd watch[3] = {
            {.fd = lifeline, .events = POLLIN},
            {.fd = signals, .events = POLLIN},
            {.fd = target, .events = POLLIN},
        };
        if (poll(watch, target >= 0 ? 3 : 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return 0;
        }
        if (target >= 0 && watch[2].revents != 0) {
            return 0; /* the target exited: the kernel ends the rest with us */
        }
        if (watch[1].revents != 0) {
            handle_signals(signals, target);
        }
        if (watch[0].revents & POLLIN) {
            if (read_lifeline(lifeline, &target)) {
                return 0;
            }
        }
        else if (watch[0].revents != 0) {
            return 0; /* hung up: the supervisor is gone */
        }
    }
}
