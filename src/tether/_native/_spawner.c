/*
 * tether's native spawner: a vfork-style clone, the child set up in C, then execve.
 *
 * The child is created with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD): it shares
 * our memory (nothing is copied, so the cost does not grow with the parent's heap),
 * the calling thread sleeps until the child has exec'd or exited, and the kernel
 * hands back a pidfd that names the child from birth. When CLONE_PIDFD is refused
 * (kernels before 5.2, some seccomp profiles) the child is cloned without it and a
 * pidfd is opened right after, while the unreaped child still holds its pid.
 *
 * Between clone and execve the child runs on its own small stack, in the parent's
 * memory, and may only make system calls: no malloc, no locks, no Python. Every
 * signal is blocked in the calling thread across the clone, so no parent signal
 * handler can run in the child before the child has reset them. Failures are
 * written into the shared argument block (errno and the stage that failed); the
 * parent reads them after the clone returns, reaps the failed child and reports.
 *
 * Why raw system calls, and not their libc wrappers: the child runs on the parent's
 * memory while the parent's other threads hold whatever locks they hold. glibc's
 * setresuid, setresgid and setgroups broadcast the change to every thread of the
 * process (a signal to each, and a wait), which in a vfork child would reach the
 * parent's threads; setrlimit and others may take locks a parent thread holds. So the
 * ids, groups and limits are set with syscall(2) (SYS_setres[ug]id, SYS_setgroups,
 * SYS_prlimit64), and nothing between clone and execve allocates, locks or touches
 * errno-dependent library state beyond the calling thread's own.
 *
 * Order of the child's steps, where it matters: signal handlers reset, setsid or
 * setpgid, fd map (dup2), closing every fd not kept, chdir, umask, rlimits, cgroup
 * placement, PR_SET_NO_NEW_PRIVS, setgroups/setgid/setuid, PR_SET_PDEATHSIG (after
 * the ids: changing them clears it), signal mask emptied, getppid() re-check, execve.
 * A child that changes its uid or gid execs the id helper (_setids.c) right after
 * PR_SET_NO_NEW_PRIVS instead, and the helper does the rest on a memory map of its own.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
/* clone3's argument, its first version (Linux 5.3), spelled out: older headers lack it */
struct clone3_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
};
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL /* Linux 5.5: handled signals start at SIG_DFL */
#endif
#ifndef CLONE_PIDFD_AUTOKILL
#define CLONE_PIDFD_AUTOKILL (1ULL << 36) /* Linux 7.1: SIGKILL the child when its pidfd closes */
#endif

extern char **environ;

#define CHILD_STACK_SIZE (64 * 1024)

enum stage {
    STAGE_NONE = 0,
    STAGE_SIGNALS,
    STAGE_SETSID,
    STAGE_SETPGID,
    STAGE_FD_MAP,
    STAGE_CLOSE_FDS,
    STAGE_CHDIR,
    STAGE_RLIMIT,
    STAGE_CGROUP,
    STAGE_NO_NEW_PRIVS,
    STAGE_SETGROUPS,
    STAGE_SETGID,
    STAGE_SETUID,
    STAGE_PDEATHSIG,
    STAGE_EXEC,
};

/* Named as tether._errors.SpawnStage names them; exported as STAGES (without "none")
 * and checked against the Python side by tests/test_native.py. */
static const char *const stage_names[] = {
    "none",     "signals",   "setsid",    "setpgid",       "fd_map",
    "close_fds", "chdir",    "setrlimit", "cgroup",
    "no_new_privs", "setgroups", "setgid",   "setuid",   "pdeathsig",
    "exec",
};
_Static_assert(sizeof stage_names / sizeof stage_names[0] == STAGE_EXEC + 1,
               "one name per stage");

/* Not a stage of its own to Python: the id helper could not be exec'd, so the spawn is
 * made again without it (see spawn_with_flags). */
#define STAGE_HELPER (STAGE_EXEC + 1)

struct limit {
    int resource;
    struct rlimit64 value; /* what SYS_prlimit64 takes, on 32-bit machines too */
};

struct outcome {
    volatile int error;
    volatile int stage;
};

struct spawn_args {
    const char *program;
    char **argv;
    char **envp;
    const char *cwd;
    int *fd_map; /* pairs: source, target */
    Py_ssize_t n_fd_map;
    int *keep_fds; /* sorted, unique, includes 0..2 */
    Py_ssize_t n_keep;
    int *pass_fds;
    Py_ssize_t n_pass;
    int *default_signals;
    Py_ssize_t n_default_signals;
    struct limit *limits;
    Py_ssize_t n_limits;
    gid_t *groups;
    Py_ssize_t n_groups;
    int set_groups;
    int new_session;
    int pgid;
    int umask_value;
    int cgroup_fd;
    int pdeathsig;
    pid_t parent_pid;
    int no_new_privs;
    long gid;
    long uid;
    int clone_flags; /* more clone flags: CLONE_NEWPID for a namespace init */
    int autokill;    /* clone3 with CLONE_PIDFD_AUTOKILL (a namespace init, Linux 7.1+) */
    int handlers_cleared; /* cloned with CLONE_CLEAR_SIGHAND: only SIG_IGN is left to undo */
    int share_vm;         /* CLONE_VM: no change of ids, or the id helper makes it */
    /* The id helper (_setids.c), exec'd in place of the program to change the ids on a
     * memory map of its own; NULL when the child changes none, or changes them itself. */
    const char *helper;
    char **helper_argv;
    int helper_fds[2]; /* its report pipe's write end and its command block */
    /* written by the child, into memory the parent sees even without CLONE_VM */
    struct outcome *outcome;
};

static int
contains(const int *values, Py_ssize_t n, int value)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (values[i] == value) {
            return 1;
        }
    }
    return 0;
}

static int
clear_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) {
        return -1;
    }
    return (flags & FD_CLOEXEC) ? fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) : 0;
}

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Without close_range (Linux < 5.9): close what /proc/self/fd lists. */
static int
close_listed_fds(const struct spawn_args *a)
{
    char buffer[2048];
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        return -1;
    }
    for (;;) {
        long got = syscall(SYS_getdents64, dir, buffer, sizeof buffer);
        if (got < 0) {
            close(dir);
            return -1;
        }
        if (got == 0) {
            break;
        }
        for (long offset = 0; offset < got;) {
            struct linux_dirent64 *entry = (struct linux_dirent64 *)(buffer + offset);
            offset += entry->d_reclen;
            int fd = 0;
            const char *c = entry->d_name;
            if (*c < '0' || *c > '9') {
                continue;
            }
            for (; *c >= '0' && *c <= '9'; c++) {
                fd = fd * 10 + (*c - '0');
            }
            if (fd != dir && !contains(a->keep_fds, a->n_keep, fd)) {
                close(fd);
            }
        }
    }
    close(dir);
    return 0;
}

static int
close_fds_except_kept(const struct spawn_args *a)
{
    unsigned int low = 0;
    for (Py_ssize_t i = 0; i < a->n_keep; i++) {
        unsigned int kept = (unsigned int)a->keep_fds[i];
        if (kept > low && syscall(SYS_close_range, low, kept - 1, 0) < 0) {
            return errno == ENOSYS ? close_listed_fds(a) : -1;
        }
        low = kept + 1;
    }
    if (syscall(SYS_close_range, low, ~0U, 0) < 0) {
        return errno == ENOSYS ? close_listed_fds(a) : -1;
    }
    return 0;
}

/*
 * No parent handler may run in the child (it would run on our memory), and the child
 * must exec with the dispositions tether promises: every handled signal at SIG_DFL
 * (execve would do that too, but only at exec), ignored ones still ignored, except
 * default_signals (SIGPIPE, SIGXFSZ unless restore_signals=False), which go back to
 * SIG_DFL. Cloned with CLONE_CLEAR_SIGHAND, the kernel has reset the handled ones
 * already (it leaves SIG_IGN alone), so only default_signals are left: a call each.
 * Otherwise every signal is read and the handled ones reset, a call or two each.
 */
static int
reset_signal_handlers(const struct spawn_args *a)
{
    struct sigaction to_default;
    memset(&to_default, 0, sizeof to_default);
    to_default.sa_handler = SIG_DFL;
    if (a->handlers_cleared) {
        for (Py_ssize_t i = 0; i < a->n_default_signals; i++) {
            if (sigaction(a->default_signals[i], &to_default, NULL) != 0) {
                return -1;
            }
        }
        return 0;
    }
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction current;
        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &current) != 0) {
            continue; /* glibc keeps a few real-time signals to itself */
        }
        int restore = contains(a->default_signals, a->n_default_signals, sig);
        if (current.sa_handler == SIG_DFL || (current.sa_handler == SIG_IGN && !restore)) {
            continue;
        }
        if (sigaction(sig, &to_default, NULL) != 0) {
            return -1;
        }
    }
    return 0;
}

static int
write_own_pid_zero(int fd)
{
    /* "0" names the writing process in cgroup.procs, v1 and v2 alike. */
    return write(fd, "0", 1) == 1 ? 0 : -1;
}

static int
child_main(void *arg)
{
    struct spawn_args *a = arg;
    int stage = STAGE_SIGNALS;
    if (reset_signal_handlers(a) < 0) {
        goto fail;
    }
    stage = STAGE_SETSID;
    if (a->new_session && setsid() < 0) {
        goto fail;
    }
    stage = STAGE_SETPGID;
    if (a->pgid >= 0 && setpgid(0, a->pgid) < 0) {
        goto fail;
    }
    stage = STAGE_FD_MAP;
    for (Py_ssize_t i = 0; i < a->n_fd_map; i++) {
        int source = a->fd_map[2 * i], target = a->fd_map[2 * i + 1];
        if (source == target ? clear_cloexec(target) < 0 : dup2(source, target) < 0) {
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < a->n_pass; i++) {
        if (clear_cloexec(a->pass_fds[i]) < 0) {
            goto fail;
        }
    }
    stage = STAGE_CLOSE_FDS;
    if (close_fds_except_kept(a) < 0) {
        goto fail;
    }
    stage = STAGE_CHDIR;
    if (a->cwd != NULL && chdir(a->cwd) < 0) {
        goto fail;
    }
    if (a->umask_value >= 0) {
        umask((mode_t)a->umask_value); /* cannot fail */
    }
    stage = STAGE_RLIMIT;
    for (Py_ssize_t i = 0; i < a->n_limits; i++) {
        if (syscall(SYS_prlimit64, 0, a->limits[i].resource, &a->limits[i].value, NULL) < 0) {
            goto fail;
        }
    }
    stage = STAGE_CGROUP;
    if (a->cgroup_fd >= 0 && write_own_pid_zero(a->cgroup_fd) < 0) {
        goto fail;
    }
    stage = STAGE_NO_NEW_PRIVS;
    if (a->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        goto fail;
    }
    if (a->helper != NULL) {
        stage = STAGE_HELPER;
        if (clear_cloexec(a->helper_fds[0]) < 0 || clear_cloexec(a->helper_fds[1]) < 0) {
            goto fail;
        }
        sigset_t none;
        sigemptyset(&none);
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, _NSIG / 8);
        static char *const no_environment[] = {NULL};
        execve(a->helper, a->helper_argv, no_environment);
        goto fail;
    }
    stage = STAGE_SETGROUPS;
    if (a->set_groups && syscall(SYS_setgroups, (size_t)a->n_groups, a->groups) < 0) {
        goto fail;
    }
    stage = STAGE_SETGID;
    if (a->gid >= 0 && syscall(SYS_setresgid, (gid_t)a->gid, (gid_t)a->gid, (gid_t)a->gid) < 0) {
        goto fail;
    }
    stage = STAGE_SETUID;
    if (a->uid >= 0 && syscall(SYS_setresuid, (uid_t)a->uid, (uid_t)a->uid, (uid_t)a->uid) < 0) {
        goto fail;
    }
    /* Last before exec: a change of ids clears the parent-death signal. */
    stage = STAGE_PDEATHSIG;
    if (a->pdeathsig > 0 && prctl(PR_SET_PDEATHSIG, a->pdeathsig, 0, 0, 0) < 0) {
        goto fail;
    }
    stage = STAGE_EXEC;
    sigset_t empty;
    sigemptyset(&empty);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, _NSIG / 8);
    if (a->pdeathsig > 0 && getppid() != a->parent_pid) {
        /* the parent died before the signal was armed: deliver it now */
        syscall(SYS_kill, getpid(), a->pdeathsig);
        _exit(128 + a->pdeathsig);
    }
    execve(a->program, a->argv, a->envp ? a->envp : environ);
fail:
    a->outcome->error = errno;
    a->outcome->stage = stage;
    _exit(127);
}

/* --- child stacks: a small pool, reused across spawns -------------------------------
 *
 * mmap and munmap of a fresh stack cost ~20-30 us per spawn (the munmap shoots down
 * TLBs on every CPU the process ran on), so stacks are kept in a few slots and handed
 * out one per call: a slot is taken with an atomic exchange of its busy flag and given
 * back with a release store, so concurrent spawns from any number of threads never
 * share one, and a spawn that finds every slot busy maps a stack of its own and unmaps
 * it after (today's cost, only under that much concurrency).
 *
 * The stacks are MAP_SHARED because a child cloned without CLONE_VM (one that changes
 * its ids) runs on a copy of our memory and must still write its outcome where we can
 * read it. That is also the hazard after fork(): a forked child of ours would share
 * the cached stacks with us, and its spawns would run on memory our spawns use. So a
 * forked child drops them: at fork (pthread_atfork) and, for a fork made with a raw
 * system call that runs no at-fork handler, when a slot's owner pid is not ours.
 */
#define STACK_SLOTS 8

struct stack_slot {
    int busy;   /* taken with __atomic_exchange_n, given back with a release store */
    pid_t owner; /* the process that mapped it */
    char *stack;
};

static struct stack_slot stack_slots[STACK_SLOTS];

static char *
map_stack(void)
{
    char *stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    return stack == MAP_FAILED ? NULL : stack;
}

/* A stack for one spawn: *slot is its pool slot, or -1 for a stack of its own. */
static char *
take_stack(int *slot)
{
    pid_t self = getpid();
    for (int i = 0; i < STACK_SLOTS; i++) {
        struct stack_slot *s = &stack_slots[i];
        if (__atomic_exchange_n(&s->busy, 1, __ATOMIC_ACQUIRE)) {
            continue;
        }
        if (s->stack != NULL && s->owner != self) {
            munmap(s->stack, CHILD_STACK_SIZE); /* inherited from a parent: shared with it */
            s->stack = NULL;
        }
        if (s->stack == NULL) {
            s->stack = map_stack();
            s->owner = self;
        }
        if (s->stack == NULL) {
            __atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
            return NULL;
        }
        *slot = i;
        return s->stack;
    }
    *slot = -1;
    return map_stack();
}

static void
give_back_stack(char *stack, int slot)
{
    if (slot < 0) {
        munmap(stack, CHILD_STACK_SIZE);
        return;
    }
    __atomic_store_n(&stack_slots[slot].busy, 0, __ATOMIC_RELEASE);
}

/* In a forked child (one thread, no spawn in progress): drop every inherited stack. */
static void
drop_stacks_after_fork(void)
{
    for (int i = 0; i < STACK_SLOTS; i++) {
        if (stack_slots[i].stack != NULL) {
            munmap(stack_slots[i].stack, CHILD_STACK_SIZE);
        }
        stack_slots[i].stack = NULL;
        stack_slots[i].owner = 0;
        __atomic_store_n(&stack_slots[i].busy, 0, __ATOMIC_RELEASE);
    }
}

/* The stacks the pool holds (mapped by this process), for the tests. */
static PyObject *
native_cached_stacks(PyObject *module, PyObject *unused)
{
    pid_t self = getpid();
    int count = 0;
    for (int i = 0; i < STACK_SLOTS; i++) {
        count += stack_slots[i].stack != NULL && stack_slots[i].owner == self;
    }
    return PyLong_FromLong(count);
}

/* 1: CLONE_PIDFD works, 0: refused (use pidfd_open), -1: not tried yet. */
static int clone_pidfd_works = -1;

/*
 * clone3(CLONE_PIDFD | CLONE_PIDFD_AUTOKILL): the kernel SIGKILLs the child when the last
 * reference to its pidfd goes, so a namespace init dies with the supervising process
 * however that process dies, with no thread-exit race (pdeathsig fires on the spawning
 * thread's exit). clone3 cannot run the child on a stack of its own without assembly,
 * so this child gets a copy-on-write copy of our memory (fork's cost, vfork's wait) and
 * goes on from the syscall on that copy of the stack. Used only where the probe found
 * the flag, and only for namespace inits.
 */
static pid_t
clone3_autokill(struct spawn_args *a, int *pidfd)
{
    struct clone3_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_PIDFD | CLONE_PIDFD_AUTOKILL | CLONE_VFORK | (uint64_t)a->clone_flags;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        child_main(a); /* does not return */
    }
    return (pid_t)pid;
}

/* 1: clone3 accepts CLONE_PIDFD_AUTOKILL, 0: refused, -1: not probed yet. */
static int pidfd_autokill_works = -1;

/* Probe once: a child that exits at once, cloned with the flag (fork-like, see above). */
static int
probe_pidfd_autokill(void)
{
    if (pidfd_autokill_works >= 0) {
        return pidfd_autokill_works;
    }
    struct clone3_args args;
    memset(&args, 0, sizeof args);
    int pidfd = -1;
    args.flags = CLONE_PIDFD | CLONE_PIDFD_AUTOKILL;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* no handler of ours runs in the child */
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        syscall(SYS_exit_group, 0);
    }
    int error = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        /* EINVAL: unknown flag (before 7.1); ENOSYS/EPERM: no clone3 (old kernel, seccomp) */
        pidfd_autokill_works = error == EINVAL || error == ENOSYS || error == EPERM ? 0 : -1;
        return pidfd_autokill_works;
    }
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(pidfd);
    pidfd_autokill_works = 1;
    return 1;
}

/*
 * clone3 with CLONE_CLEAR_SIGHAND, the child on a stack of its own: the kernel resets
 * every handled signal to SIG_DFL as it makes the child, which saves the child ~63
 * rt_sigaction calls. clone3 takes a stack but, unlike glibc's clone(), nothing runs the
 * child's function on it: the child comes back from the system call with the new stack
 * pointer and no frame to return into. So the call is made by a small trampoline that,
 * in the child, calls fn(arg) on the new stack and exits with its result. Written for
 * x86_64 only; elsewhere (and where clone3 or the flag is refused: before Linux 5.5,
 * seccomp profiles that answer ENOSYS or EPERM) the child is cloned with clone() and
 * resets its handlers itself.
 */
#if defined(__x86_64__)
#define HAVE_CLONE3_TRAMPOLINE 1
/* (args, size, fn, arg) in rdi, rsi, rdx, rcx: the child's pid or -errno to the parent.
 * rdx and r8 survive the system call, in the parent and, copied, in the child. */
extern long tether_clone3(struct clone3_args *args, size_t size, int (*fn)(void *), void *arg)
    __attribute__((visibility("hidden")));
__asm__(".text\n"
        ".globl tether_clone3\n"
        ".hidden tether_clone3\n"
        ".type tether_clone3, @function\n"
        ".p2align 4\n"
        "tether_clone3:\n"
        "    movq %rcx, %r8\n"
        "    movl $435, %eax\n" /* SYS_clone3 */
        "    syscall\n"
        "    testq %rax, %rax\n"
        "    jz 1f\n"
        "    ret\n"
        "1:  xorl %ebp, %ebp\n" /* the child: the outermost frame of its stack */
        "    movq %r8, %rdi\n"
        "    callq *%rdx\n"
        "    movl %eax, %edi\n"
        "    movl $60, %eax\n" /* SYS_exit; child_main never comes back anyway */
        "    syscall\n"
        "    hlt\n"
        ".size tether_clone3, .-tether_clone3\n");
#endif

/* 1: clone3 with CLONE_CLEAR_SIGHAND works, 0: refused or not built, -1: not tried yet. */
#ifdef HAVE_CLONE3_TRAMPOLINE
static int clone3_works = -1;
#else
static int clone3_works = 0;
#endif

#ifdef HAVE_CLONE3_TRAMPOLINE
/* -2: fall back to clone() (clone3 refused, or no fd left for the pidfd). */
static pid_t
clone3_cleared(struct spawn_args *a, char *stack, int flags, int want_pidfd, int *pidfd)
{
    struct clone3_args args;
    memset(&args, 0, sizeof args);
    args.flags = (uint64_t)(unsigned int)flags | CLONE_CLEAR_SIGHAND | (want_pidfd ? CLONE_PIDFD : 0);
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = CHILD_STACK_SIZE;
    a->handlers_cleared = 1;
    long pid = tether_clone3(&args, sizeof args, child_main, a);
    if (pid >= 0) {
        clone3_works = 1;
        if (want_pidfd) {
            clone_pidfd_works = 1;
        }
        return (pid_t)pid;
    }
    a->handlers_cleared = 0;
    *pidfd = -1;
    if (pid == -ENOSYS || pid == -EPERM || pid == -EINVAL || pid == -E2BIG) {
        clone3_works = 0; /* no clone3, or no CLONE_CLEAR_SIGHAND: clone() from now on */
        return -2;
    }
    if (pid == -EMFILE || pid == -ENFILE) {
        return -2; /* no fd for the pidfd: clone() deals with that */
    }
    errno = (int)-pid;
    return -1;
}
#endif

/*
 * Whether the child's user or group ids will differ from ours (the calling thread's,
 * which the child copies). Only then may the change not happen on our memory: the
 * kernel marks the mm non-dumpable when euid, egid, fsuid or fsgid change
 * (commit_creds), and with CLONE_VM that mm is ours (no core dumps, root-owned
 * /proc/self, refused ptrace for the rest of our life); and a child on our memory with
 * ids of its own could be reached (ptrace, /proc/PID/mem) by someone who cannot reach
 * us. Setting our flag back after the child's exec is no way out (docs/backends.md).
 * So such a child execs the id helper, which changes the ids on a memory map of its
 * own; without the helper it is cloned with a copy-on-write copy of our memory (fork's
 * cost, still vfork's wait). Supplementary groups play no part in either, so
 * extra_groups alone, or user/group equal to all our ids, need neither.
 */
static int
ids_change(const struct spawn_args *a)
{
    if (a->uid >= 0) {
        uid_t real, effective, saved;
        uid_t wanted = (uid_t)a->uid;
        if (getresuid(&real, &effective, &saved) != 0 || real != wanted ||
            effective != wanted || saved != wanted ||
            (uid_t)syscall(SYS_setfsuid, (uid_t)-1) != wanted) {
            return 1; /* setfsuid(-1) changes nothing and tells the fsuid */
        }
    }
    if (a->gid >= 0) {
        gid_t real, effective, saved;
        gid_t wanted = (gid_t)a->gid;
        if (getresgid(&real, &effective, &saved) != 0 || real != wanted ||
            effective != wanted || saved != wanted ||
            (gid_t)syscall(SYS_setfsgid, (gid_t)-1) != wanted) {
            return 1;
        }
    }
    return 0;
}

static pid_t
clone_child(struct spawn_args *a, char *stack, int want_pidfd, int *pidfd)
{
    char *stack_top = stack + CHILD_STACK_SIZE;
    int flags = (a->share_vm ? CLONE_VM : 0) | CLONE_VFORK | SIGCHLD | a->clone_flags;
    pid_t pid;
    *pidfd = -1;
    if (a->autokill) {
        return clone3_autokill(a, pidfd);
    }
#ifdef HAVE_CLONE3_TRAMPOLINE
    if (clone3_works != 0 && a->clone_flags == 0) {
        pid = clone3_cleared(a, stack, flags & ~0xff, want_pidfd, pidfd);
        if (pid != -2) {
            return pid;
        }
    }
#endif
    if (want_pidfd && clone_pidfd_works != 0) {
        pid = clone(child_main, stack_top, flags | CLONE_PIDFD, a, pidfd);
        if (pid >= 0) {
            clone_pidfd_works = 1;
            return pid;
        }
        if (errno == EMFILE || errno == ENFILE) {
            /* no fd for the pidfd: this child goes without (the caller falls back) */
            return clone(child_main, stack_top, flags, a);
        }
        if ((errno != EINVAL && errno != ENOSYS && errno != EPERM) || a->clone_flags) {
            return -1; /* a refused namespace says nothing about CLONE_PIDFD */
        }
        clone_pidfd_works = 0;
        *pidfd = -1;
    }
    pid = clone(child_main, stack_top, flags, a);
    if (pid > 0 && want_pidfd) {
        *pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    }
    return pid;
}

/* --- argument conversion (parent side, with the GIL) ------------------------------ */

struct owned {
    PyObject *argv_seq;
    PyObject *env_seq;
    void *blocks[16];
    int n_blocks;
    /* A plain spawn's few small arrays come from here, not from the allocator. */
    size_t arena_used;
    _Alignas(16) char arena[1024];
};

static void *
own(struct owned *o, size_t size)
{
    size_t rounded = (size + 15) & ~(size_t)15;
    if (rounded <= sizeof o->arena - o->arena_used) {
        void *block = o->arena + o->arena_used;
        o->arena_used += rounded;
        return memset(block, 0, size);
    }
    if (o->n_blocks >= (int)(sizeof o->blocks / sizeof o->blocks[0])) {
        PyErr_SetString(PyExc_RuntimeError, "tether spawner: too many argument blocks");
        return NULL;
    }
    void *block = PyMem_Calloc(1, size ? size : 1);
    if (block == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    o->blocks[o->n_blocks++] = block;
    return block;
}

static void
release(struct owned *o)
{
    for (int i = 0; i < o->n_blocks; i++) {
        PyMem_Free(o->blocks[i]);
    }
    Py_XDECREF(o->argv_seq);
    Py_XDECREF(o->env_seq);
}

static char **
string_array(struct owned *o, PyObject *seq, PyObject **keep)
{
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of bytes");
    if (fast == NULL) {
        return NULL;
    }
    *keep = fast;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    char **array = own(o, sizeof(char *) * (size_t)(n + 1));
    if (array == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "expected bytes");
            return NULL;
        }
        array[i] = PyBytes_AS_STRING(item);
    }
    return array;
}

static long long *
number_array(struct owned *o, PyObject *seq, Py_ssize_t *count)
{
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of ints");
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    long long *array = own(o, sizeof(long long) * (size_t)n);
    for (Py_ssize_t i = 0; array != NULL && i < n; i++) {
        array[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (array[i] == -1 && PyErr_Occurred()) {
            array = NULL;
        }
    }
    Py_DECREF(fast);
    *count = n;
    return array;
}

static int
int_arg(PyObject *obj, int *out)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < INT_MIN || value > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value does not fit in a C int");
        return -1;
    }
    *out = (int)value;
    return 0;
}

static int *
int_array(struct owned *o, PyObject *seq, Py_ssize_t *count)
{
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of ints");
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int *array = own(o, sizeof(int) * (size_t)n);
    for (Py_ssize_t i = 0; array != NULL && i < n; i++) {
        if (int_arg(PySequence_Fast_GET_ITEM(fast, i), &array[i]) < 0) {
            array = NULL;
        }
    }
    Py_DECREF(fast);
    *count = n;
    return array;
}

/* --- the id helper: a change of ids on a memory map of the child's own ---------------
 *
 * A child that changes its ids (ids_change) does its other steps on our memory, then
 * execs _setids (_setids.c) with a fresh map, which changes the ids and execs the
 * program. The vfork wait ends at the helper's exec, so we then read the helper's report
 * pipe until EOF: its exec of the program closes it (close-on-exec), a failed step
 * writes errno and the step first. The command (program, argv, environment) goes to the
 * helper in a memfd: not in its argv, which /proc/PID/cmdline shows to every local user,
 * nor in its environment, which the loader and libc would act on while it still has our
 * ids. Both fds are numbered above every fd the child maps or keeps, so that no dup2 of
 * the child's setup lands on them.
 *
 * Like subprocess's error pipe, the report pipe's write end exists in our fd table
 * between its creation and the clone; a fork() made by another thread in that window
 * (without exec) holds it too, and our read then waits for that process to exit or exec.
 */
static char id_helper_path[PATH_MAX];
static int id_helper_on; /* set_id_helper() gave a path, and no exec of it has failed */

struct helper_run {
    int report_read;
    int report_write;
    int block;
    int *keep_without; /* the child's keep set before the helper's two fds joined it */
    Py_ssize_t n_keep_without;
};

static void
close_helper_fds(struct helper_run *h)
{
    int *fds[] = {&h->report_read, &h->report_write, &h->block};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    }
}

/* fd, moved to the lowest free number >= floor when below it (still close-on-exec). */
static int
raise_fd(int fd, int floor)
{
    if (fd < 0 || fd >= floor) {
        return fd;
    }
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, floor);
    close(fd);
    return moved;
}

static int
write_all(int fd, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t done = write(fd, data, size);
        if (done < 0 && errno == EINTR) {
            continue;
        }
        if (done < 0) {
            return -1;
        }
        data += done;
        size -= (size_t)done;
    }
    return 0;
}

/* The helper's command block: program, argc, argv, environment, each NUL-terminated. */
static int
write_command_block(int fd, const struct spawn_args *a)
{
    char count[24];
    Py_ssize_t argc = 0;
    while (a->argv[argc] != NULL) {
        argc++;
    }
    snprintf(count, sizeof count, "%zd", argc);
    char **env = a->envp ? a->envp : environ;
    size_t size = strlen(a->program) + 1 + strlen(count) + 1;
    for (Py_ssize_t i = 0; i < argc; i++) {
        size += strlen(a->argv[i]) + 1;
    }
    for (char **e = env; *e != NULL; e++) {
        size += strlen(*e) + 1;
    }
    char *block = PyMem_Malloc(size);
    if (block == NULL) {
        errno = ENOMEM;
        return -1;
    }
    char *at = block;
    const char *head[] = {a->program, count};
    for (size_t i = 0; i < 2; i++) {
        at = stpcpy(at, head[i]) + 1;
    }
    for (Py_ssize_t i = 0; i < argc; i++) {
        at = stpcpy(at, a->argv[i]) + 1;
    }
    for (char **e = env; *e != NULL; e++) {
        at = stpcpy(at, *e) + 1;
    }
    int result = write_all(fd, block, size);
    PyMem_Free(block);
    return result;
}

/*
 * Make ready the helper's fds, argv and the child's keep set. 0 on success; -1 (errno
 * set, no Python error) when the helper cannot be used for this spawn, which then
 * changes the ids on a copy of our memory instead.
 */
static int
prepare_helper(struct owned *o, struct spawn_args *a, struct helper_run *h)
{
    int floor = 3;
    for (Py_ssize_t i = 0; i < a->n_keep; i++) {
        floor = a->keep_fds[i] >= floor ? a->keep_fds[i] + 1 : floor;
    }
    for (Py_ssize_t i = 0; i < a->n_fd_map; i++) {
        floor = a->fd_map[2 * i + 1] >= floor ? a->fd_map[2 * i + 1] + 1 : floor;
    }
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) {
        return -1;
    }
    h->report_read = report[0];
    h->report_write = raise_fd(report[1], floor);
    h->block = raise_fd((int)syscall(SYS_memfd_create, "tether-command", MFD_CLOEXEC), floor);
    if (h->report_write < 0 || h->block < 0 || write_command_block(h->block, a) < 0) {
        close_helper_fds(h);
        return -1;
    }
    /* The calling thread's capabilities, which the child has until its exec (see
     * _setids.c: the helper narrows its own to them). */
    struct __user_cap_header_struct cap_header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2];
    if (syscall(SYS_capget, &cap_header, caps) < 0) {
        close_helper_fds(h);
        return -1;
    }
    int n_groups = a->set_groups ? (int)a->n_groups : 0;
    size_t n_args = 9 + (size_t)n_groups;
    char **argv = own(o, sizeof(char *) * (n_args + 1));
    char *numbers = own(o, 64 * (n_args - 1));
    int *keep = own(o, sizeof(int) * (size_t)(a->n_keep + 2));
    char *path = own(o, strlen(id_helper_path) + 1); /* set_id_helper may change it */
    if (argv == NULL || numbers == NULL || keep == NULL || path == NULL) {
        PyErr_Clear();
        close_helper_fds(h);
        errno = ENOMEM;
        return -1;
    }
    long long values[] = {h->report_write, h->block, a->parent_pid, a->pdeathsig, 0,
                          a->gid, a->uid, a->set_groups ? (long long)a->n_groups : -1};
    a->helper = argv[0] = strcpy(path, id_helper_path);
    for (size_t i = 1; i < n_args; i++) {
        argv[i] = numbers + 64 * (i - 1);
        if (i == 5) {
            snprintf(argv[i], 64, "%llx:%llx:%llx",
                     (unsigned long long)caps[1].effective << 32 | caps[0].effective,
                     (unsigned long long)caps[1].permitted << 32 | caps[0].permitted,
                     (unsigned long long)caps[1].inheritable << 32 | caps[0].inheritable);
        }
        else if (i <= 8) {
            snprintf(argv[i], 64, "%lld", values[i - 1]);
        }
        else {
            snprintf(argv[i], 64, "%u", (unsigned int)a->groups[i - 9]);
        }
    }
    argv[n_args] = NULL;
    a->helper_argv = argv;
    a->helper_fds[0] = h->report_write;
    a->helper_fds[1] = h->block;
    /* Both are above every kept fd: the keep set stays sorted with them at its end. */
    memcpy(keep, a->keep_fds, sizeof(int) * (size_t)a->n_keep);
    keep[a->n_keep] = h->report_write < h->block ? h->report_write : h->block;
    keep[a->n_keep + 1] = h->report_write < h->block ? h->block : h->report_write;
    h->keep_without = a->keep_fds;
    h->n_keep_without = a->n_keep;
    a->keep_fds = keep;
    a->n_keep += 2;
    return 0;
}

/* Whether a failed exec of the helper will fail again for every spawn. */
static int
helper_gone_for_good(int error)
{
    switch (error) {
    case ENOENT: case ENOTDIR: case EACCES: case EPERM: case ENOEXEC: case ELIBBAD:
    case ELOOP: case ENAMETOOLONG:
        return 1;
    default:
        return 0; /* ETXTBSY, E2BIG, ENOMEM...: this spawn's, not the helper's */
    }
}

/* After the clone, with the GIL released: the helper's report, as the child's outcome.
 * EOF with nothing written means the program was exec'd. */
static void
read_helper_report(struct helper_run *h, int *error, int *stage)
{
    close(h->report_write);
    h->report_write = -1;
    close(h->block);
    h->block = -1;
    int report[2];
    size_t got = 0;
    while (got < sizeof report) {
        ssize_t n = read(h->report_read, (char *)report + got, sizeof report - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    if (got == 0) {
        return;
    }
    if (got < sizeof report || report[0] == 0) {
        report[0] = got < sizeof report ? EIO : EINVAL;
        report[1] = 6;
    }
    /* _setids.c's enum step: 1 its arguments and the command, 2..5 the id steps, 6 the
     * exec, 7 narrowing its capabilities (which prepares the id steps, so counts as
     * the first of them). */
    static const int stages[] = {STAGE_EXEC,   STAGE_EXEC,      STAGE_SETGROUPS, STAGE_SETGID,
                                 STAGE_SETUID, STAGE_PDEATHSIG, STAGE_EXEC,      STAGE_SETGROUPS};
    *error = report[0];
    *stage = report[1] >= 1 && report[1] <= 7 ? stages[report[1]] : STAGE_EXEC;
}

PyDoc_STRVAR(set_id_helper_doc,
"set_id_helper(path) -> None\n\n"
"The id helper's path (bytes), which children that change their user or group ids\n"
"exec to do it on a memory map of their own; None: they are cloned with a copy of\n"
"ours instead. Set at import by tether._native; a failed exec of it unsets it.");

static PyObject *
native_set_id_helper(PyObject *module, PyObject *path)
{
    if (path == Py_None) {
        id_helper_on = 0;
        Py_RETURN_NONE;
    }
    if (!PyBytes_Check(path)) {
        PyErr_SetString(PyExc_TypeError, "set_id_helper(): the path must be bytes or None");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(path);
    if (size == 0 || (size_t)size >= sizeof id_helper_path ||
        strlen(PyBytes_AS_STRING(path)) != (size_t)size) {
        PyErr_SetString(PyExc_ValueError, "set_id_helper(): not a usable path");
        return NULL;
    }
    id_helper_on = 0;
    memcpy(id_helper_path, PyBytes_AS_STRING(path), (size_t)size + 1);
    id_helper_on = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(id_helper_doc,
"id_helper() -> bytes | None\n\n"
"The id helper's path, or None when children that change ids do not use one.");

static PyObject *
native_id_helper(PyObject *module, PyObject *unused)
{
    if (!id_helper_on) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromString(id_helper_path);
}

PyDoc_STRVAR(spawn_doc,
"spawn(program, argv, envp, cwd, fd_map, keep_fds, pass_fds, default_signals,\n"
"      limits, groups, new_session, pgid, umask, cgroup_fd, pdeathsig,\n"
"      no_new_privs, gid, uid, want_pidfd, receipt) -> (pid, pidfd, errno, stage)\n\n"
"Start a child. On success errno is 0 and stage None; pidfd is -1 when none\n"
"could be had, and receipt.pid and receipt.pidfd (None when -1) were set before\n"
"returning. On failure pid is 0: the failed child has been reaped already.\n"
"fd_map is a flat sequence of (source, target) pairs; limits a flat sequence of\n"
"(resource, soft, hard) triples; envp None inherits the environment; groups\n"
"None leaves the supplementary groups alone; -1 means 'unset' for pgid, umask,\n"
"cgroup_fd, gid and uid.");

/*
 * Write the new child into the caller's receipt (its "pid" and "pidfd" attributes)
 * before control returns to Python. A Python signal handler runs only between
 * bytecodes, so from the moment the child exists until these stores, nothing can
 * raise and lose it; once they are done, whoever holds the receipt holds the child.
 * Should a store fail (no memory), the child is killed and reaped here instead.
 */
static PyObject *pid_name, *pidfd_name; /* "pid" and "pidfd", interned at import */

static int
record_child(PyObject *receipt, pid_t pid, int pidfd)
{
    PyObject *pid_obj = PyLong_FromLong((long)pid);
    PyObject *pidfd_obj = pidfd >= 0 ? PyLong_FromLong(pidfd) : Py_NewRef(Py_None);
    int failed = pid_obj == NULL || pidfd_obj == NULL ||
                 PyObject_SetAttr(receipt, pidfd_name, pidfd_obj) < 0 ||
                 PyObject_SetAttr(receipt, pid_name, pid_obj) < 0;
    Py_XDECREF(pid_obj);
    Py_XDECREF(pidfd_obj);
    if (!failed) {
        return 0;
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (pidfd >= 0) {
        close(pidfd);
    }
    /* Nothing is left: the receipt must not name the closed fd or the reaped pid. */
    PyObject *zero = PyLong_FromLong(0);
    if (zero != NULL) {
        PyObject_SetAttrString(receipt, "pid", zero);
        Py_DECREF(zero);
    }
    PyObject_SetAttrString(receipt, "pidfd", Py_None);
    PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    return -1;
}

static int
long_arg(PyObject *obj, long *out)
{
    *out = PyLong_AsLong(obj);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
bool_arg(PyObject *obj, int *out)
{
    *out = PyObject_IsTrue(obj);
    return *out < 0 ? -1 : 0;
}

#define SPAWN_NARGS 20

/* args are spawn()'s SPAWN_NARGS arguments, read in place (METH_FASTCALL): parsing a
 * format string would cost a plain spawn more than everything else done here. */
static PyObject *
spawn_with_flags(PyObject *const *args, Py_ssize_t nargs, int clone_flags,
                 int in_child_namespace)
{
    if (nargs != SPAWN_NARGS) {
        PyErr_Format(PyExc_TypeError, "spawn() takes %d arguments (%zd given)", SPAWN_NARGS,
                     nargs);
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "spawn(): the program must be bytes");
        return NULL;
    }
    const char *program = PyBytes_AS_STRING(args[0]);
    if (strlen(program) != (size_t)PyBytes_GET_SIZE(args[0])) {
        PyErr_SetString(PyExc_ValueError, "spawn(): embedded null byte in the program");
        return NULL;
    }
    PyObject *argv = args[1], *envp = args[2], *cwd_obj = args[3], *fd_map = args[4];
    PyObject *keep = args[5], *pass = args[6], *defaults = args[7], *limits = args[8];
    PyObject *groups = args[9], *receipt = args[19];
    int new_session, pgid, umask_value, cgroup_fd, pdeathsig, no_new_privs, want_pidfd;
    long gid, uid;
    if (bool_arg(args[10], &new_session) < 0 || int_arg(args[11], &pgid) < 0 ||
        int_arg(args[12], &umask_value) < 0 || int_arg(args[13], &cgroup_fd) < 0 ||
        int_arg(args[14], &pdeathsig) < 0 || bool_arg(args[15], &no_new_privs) < 0 ||
        long_arg(args[16], &gid) < 0 || long_arg(args[17], &uid) < 0 ||
        bool_arg(args[18], &want_pidfd) < 0) {
        return NULL;
    }
    if (cwd_obj != Py_None && !PyBytes_Check(cwd_obj)) {
        PyErr_SetString(PyExc_TypeError, "spawn(): cwd must be bytes or None");
        return NULL;
    }
    struct owned o = {0};
    struct helper_run helper = {-1, -1, -1, NULL, 0};
    struct spawn_args a;
    memset(&a, 0, sizeof a);
    a.program = program;
    a.cwd = cwd_obj == Py_None ? NULL : PyBytes_AsString(cwd_obj);
    a.new_session = new_session;
    a.pgid = pgid;
    a.umask_value = umask_value;
    a.cgroup_fd = cgroup_fd;
    a.pdeathsig = pdeathsig;
    /* seen from a child PID namespace, a parent outside it is pid 0 */
    a.parent_pid = in_child_namespace ? 0 : getpid();
    a.no_new_privs = no_new_privs;
    a.gid = gid;
    a.uid = uid;
    a.clone_flags = clone_flags;
    a.autokill = (clone_flags & CLONE_NEWPID) && want_pidfd && probe_pidfd_autokill() == 1;
    PyObject *result = NULL;
    Py_ssize_t n_limit_values = 0, n_group_values = 0, n_map_values = 0;
    long long *limit_values = NULL;
    int *group_values = NULL;
    if ((cwd_obj != Py_None && a.cwd == NULL) ||
        (a.argv = string_array(&o, argv, &o.argv_seq)) == NULL ||
        (envp != Py_None && (a.envp = string_array(&o, envp, &o.env_seq)) == NULL) ||
        (a.fd_map = int_array(&o, fd_map, &n_map_values)) == NULL ||
        (a.keep_fds = int_array(&o, keep, &a.n_keep)) == NULL ||
        (a.pass_fds = int_array(&o, pass, &a.n_pass)) == NULL ||
        (a.default_signals = int_array(&o, defaults, &a.n_default_signals)) == NULL ||
        (limit_values = number_array(&o, limits, &n_limit_values)) == NULL ||
        (groups != Py_None && (group_values = int_array(&o, groups, &n_group_values)) == NULL)) {
        goto done;
    }
    a.n_fd_map = n_map_values / 2;
    a.n_limits = n_limit_values / 3;
    a.limits = own(&o, sizeof(struct limit) * (size_t)a.n_limits);
    if (a.limits == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < a.n_limits; i++) {
        long long soft = limit_values[3 * i + 1], hard = limit_values[3 * i + 2];
        a.limits[i].resource = (int)limit_values[3 * i];
        a.limits[i].value.rlim_cur = soft < 0 ? RLIM64_INFINITY : (rlim64_t)soft;
        a.limits[i].value.rlim_max = hard < 0 ? RLIM64_INFINITY : (rlim64_t)hard;
    }
    if (groups != Py_None) {
        a.set_groups = 1;
        a.n_groups = n_group_values;
        a.groups = own(&o, sizeof(gid_t) * (size_t)n_group_values);
        if (a.groups == NULL) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < n_group_values; i++) {
            a.groups[i] = (gid_t)group_values[i];
        }
    }

    a.share_vm = !ids_change(&a);
    if (!a.share_vm && id_helper_on && clone_flags == 0 && !a.autokill &&
        prepare_helper(&o, &a, &helper) == 0) {
        a.share_vm = 1;
    }
    /* Shared, so that a child cloned without CLONE_VM still reports into it. */
    int stack_slot;
    char *stack = take_stack(&stack_slot);
    if (stack == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    struct outcome *outcome = (struct outcome *)stack; /* the stack grows down, far above */
    a.outcome = outcome;
    pid_t pid;
    int pidfd, clone_error, child_error, child_stage, helper_refused = 0;
    sigset_t all, old;
clone_again:
    outcome->error = 0;
    outcome->stage = STAGE_NONE;
    clone_error = 0;
    Py_BEGIN_ALLOW_THREADS
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone_child(&a, stack, want_pidfd, &pidfd);
    if (pid < 0) {
        clone_error = errno;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    child_error = outcome->error;
    child_stage = outcome->stage;
    if (pid > 0 && child_error == 0 && a.helper != NULL) {
        /* The helper runs on a map of its own: our handlers may run again meanwhile. */
        read_helper_report(&helper, &child_error, &child_stage);
    }
    if (pid > 0 && child_error != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (pidfd >= 0) {
            close(pidfd);
        }
    }
    Py_END_ALLOW_THREADS
    if (a.helper != NULL) {
        close_helper_fds(&helper);
        /* The helper could not be exec'd: this child changes its ids on a copy of our
         * memory, and so does every later one when the cause will not go away (removed,
         * a noexec mount...; not a busy file or a limit of this child's). Or the helper
         * was refused an id step: the exec may have lost privileges this process holds
         * (capabilities from a file, or outside the bounding set), so the copy path
         * tries too, and the error it gets is the one that counts. */
        int unusable = pid > 0 && child_stage == STAGE_HELPER;
        helper_refused = pid > 0 && child_error == EPERM &&
                         (child_stage == STAGE_SETGROUPS || child_stage == STAGE_SETGID ||
                          child_stage == STAGE_SETUID);
        if (unusable || helper_refused) {
            if (unusable && helper_gone_for_good(child_error)) {
                id_helper_on = 0;
            }
            a.helper = NULL;
            a.keep_fds = helper.keep_without;
            a.n_keep = helper.n_keep_without;
            a.share_vm = 0;
            a.handlers_cleared = 0;
            goto clone_again;
        }
    }
    else if (helper_refused && pid > 0 && child_error == 0) {
        id_helper_on = 0; /* the copy path could: our privileges do not survive an exec */
    }
    give_back_stack(stack, stack_slot);
    if (pid < 0) {
        result = Py_BuildValue("(iiis)", 0, -1, clone_error, "fork");
    }
    else if (child_error != 0) {
        result = Py_BuildValue("(iiis)", 0, -1, child_error, stage_names[child_stage]);
    }
    else if (record_child(receipt, pid, pidfd) == 0) {
        result = PyTuple_New(4);
        if (result != NULL) {
            PyObject *pid_obj = PyLong_FromLong((long)pid);
            PyObject *pidfd_obj = PyLong_FromLong(pidfd);
            PyObject *zero = PyLong_FromLong(0);
            PyTuple_SET_ITEM(result, 0, pid_obj);
            PyTuple_SET_ITEM(result, 1, pidfd_obj);
            PyTuple_SET_ITEM(result, 2, zero);
            PyTuple_SET_ITEM(result, 3, Py_NewRef(Py_None));
            if (pid_obj == NULL || pidfd_obj == NULL || zero == NULL) {
                Py_CLEAR(result); /* the child is the receipt's already */
            }
        }
    }
done:
    close_helper_fds(&helper);
    release(&o);
    return result;
}

static PyObject *
native_spawn(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return spawn_with_flags(args, nargs, 0, 0);
}

/* --- kill="namespace": a PID namespace per child ---------------------------------- */

/*
 * spawn_pid_namespace_init(*spawn args): spawn() with CLONE_NEWPID, so that the child
 * is PID 1 of a new PID namespace (tether execs _nsinit there). Its parent lives
 * outside the namespace, so its getppid() is 0 (and so for every child born into a
 * namespace below ours): the parent-death re-check expects 0. The init arms its own
 * pdeathsig and watches its lifeline, which also closes the race that check is for.
 */
static PyObject *
native_spawn_pid_namespace_init(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return spawn_with_flags(args, nargs, CLONE_NEWPID, 1);
}

/*
 * spawn_in_pid_namespace(init_pidfd, *spawn args): spawn() into the PID namespace of
 * the init that init_pidfd names. setns(CLONE_NEWPID) changes where the *calling
 * thread's* next children are born, not where it lives, and nothing else: so the
 * thread joins the namespace for its children, clones, and goes back to its own. The
 * child is still our child (we reap it and read its real wait status); its pid as we
 * see it is what clone returned.
 */
static PyObject *
native_spawn_in_pid_namespace(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "spawn_in_pid_namespace needs the init's pidfd");
        return NULL;
    }
    long init_pidfd = PyLong_AsLong(args[0]);
    if (init_pidfd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (init_pidfd < 0 || init_pidfd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "init_pidfd must be an open fd");
        return NULL;
    }
    if (nargs - 1 != SPAWN_NARGS) {
        PyErr_Format(PyExc_TypeError, "spawn() takes %d arguments (%zd given)", SPAWN_NARGS,
                     nargs - 1);
        return NULL;
    }
    int home = open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (home < 0) {
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/proc/thread-self/ns/pid");
    }
    if (setns((int)init_pidfd, CLONE_NEWPID) < 0) {
        int error = errno;
        close(home);
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *result = spawn_with_flags(args + 1, nargs - 1, 0, 1);
    if (setns(home, CLONE_NEWPID) < 0) {
        /* Going back to our own namespace cannot be refused to a thread that could
         * leave it; if it ever were, every later child of this thread would be born
         * into a namespace that dies with its init. No safe way on exists. */
        Py_FatalError("tether: cannot return to our own PID namespace after a spawn");
    }
    close(home);
    return result;
}

/*
 * fork_into(receipt): os.fork() for the fork backend, with its failure-report pipe.
 * The pipe's read end is stored as receipt.report before the fork, and the child's pid
 * as receipt.pid right after it, both before control returns to Python: no signal
 * handler can raise between a new fd or a new child and its record. Returns
 * (pid, -1) in the parent and (0, write end of the pipe) in the child. The interpreter's
 * own before/after-fork steps and at-fork handlers run as with os.fork().
 */
static PyObject *
native_fork_into(PyObject *module, PyObject *receipt)
{
    if (PySys_Audit("os.fork", NULL) < 0) {
        return NULL;
    }
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *read_obj = PyLong_FromLong(report[0]);
    if (read_obj == NULL || PyObject_SetAttrString(receipt, "report", read_obj) < 0) {
        Py_XDECREF(read_obj);
        close(report[0]);
        close(report[1]);
        return NULL;
    }
    Py_DECREF(read_obj);
    PyOS_BeforeFork();
    pid_t pid = fork();
    int saved_errno = errno;
    if (pid == 0) {
        PyOS_AfterFork_Child();
        close(report[0]);
        return Py_BuildValue("(ii)", 0, report[1]);
    }
    PyOS_AfterFork_Parent();
    close(report[1]);
    if (pid < 0) {
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError); /* receipt.report is closed by undo */
    }
    PyObject *pid_obj = PyLong_FromLong((long)pid);
    if (pid_obj == NULL || PyObject_SetAttrString(receipt, "pid", pid_obj) < 0) {
        int status;
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        Py_XDECREF(pid_obj);
        return NULL;
    }
    Py_DECREF(pid_obj);
    return Py_BuildValue("(ii)", (int)pid, -1);
}

/*
 * pidfd_open_into(receipt, pid): pidfd_open(pid), stored as receipt.pidfd before
 * control returns to Python. Raises OSError as os.pidfd_open does.
 */
static PyObject *
native_pidfd_open_into(PyObject *module, PyObject *args)
{
    PyObject *receipt;
    int pid;
    if (!PyArg_ParseTuple(args, "Oi:pidfd_open_into", &receipt, &pid)) {
        return NULL;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *pidfd_obj = PyLong_FromLong(pidfd);
    if (pidfd_obj == NULL || PyObject_SetAttrString(receipt, "pidfd", pidfd_obj) < 0) {
        Py_XDECREF(pidfd_obj);
        close(pidfd);
        return NULL;
    }
    return pidfd_obj;
}

/*
 * dup_into(target, attribute, fd): dup fd (close-on-exec) and store the new fd as
 * target.attribute before returning to Python, so that no signal handler can raise
 * between the new fd and its record and leak it.
 */
static PyObject *
native_dup_into(PyObject *module, PyObject *args)
{
    PyObject *target;
    const char *attribute;
    int fd;
    if (!PyArg_ParseTuple(args, "Osi:dup_into", &target, &attribute, &fd)) {
        return NULL;
    }
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *copy_obj = PyLong_FromLong(copy);
    if (copy_obj == NULL || PyObject_SetAttrString(target, attribute, copy_obj) < 0) {
        Py_XDECREF(copy_obj);
        close(copy);
        return NULL;
    }
    return copy_obj;
}

static PyObject *
native_clone_pidfd(PyObject *module, PyObject *unused)
{
    if (clone_pidfd_works < 0) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(clone_pidfd_works);
}

static PyObject *
native_clone3_clear_sighand(PyObject *module, PyObject *args)
{
    int enable = -1;
    if (!PyArg_ParseTuple(args, "|p:clone3_clear_sighand", &enable)) {
        return NULL;
    }
    int was = clone3_works;
#ifdef HAVE_CLONE3_TRAMPOLINE
    if (enable >= 0) {
        clone3_works = enable ? -1 : 0; /* enabling re-probes at the next spawn */
    }
#endif
    if (was < 0) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(was);
}

static PyObject *
native_pidfd_autokill(PyObject *module, PyObject *unused)
{
    int works = probe_pidfd_autokill();
    if (works < 0) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(works);
}

/* --- posix_spawn_into: the posix_spawn backend, its child recorded in C ------------
 *
 * The hazard is the same as for spawn(): a pid that is only a return value is lost if a
 * Python signal handler raises before it is stored. os.posix_spawn returns its pid, so
 * the posix_spawn backend used to hop to tether's spawner thread from the main thread.
 * Here glibc's (or musl's) posix_spawn runs with the GIL released, the pidfd is opened
 * right after, and both are written into the receipt (record_child) before control
 * returns to Python: no hop, and nothing can raise in between.
 *
 * The child must keep exactly fds 0-2 (per the fd map), the fd map's other targets and
 * pass_fds; every other inheritable fd of ours is closed in it (close-on-exec ones go
 * at exec anyway). With posix_spawn_file_actions_addclosefrom_np (glibc 2.34) that is
 * one closefrom above the highest kept fd, which also reaches fds above the soft
 * RLIMIT_NOFILE (close_range does not care about the limit), plus a close action for
 * each inheritable fd below it, found with F_GETFD, without listing /proc/self/fd.
 * Without it (older glibc, musl), /proc/self/fd is listed and each inheritable fd gets
 * a close action; glibc refuses one at or above the soft limit (EBADF), reported as
 * stage "close_fds" with that fd, and so is the rare closefrom glibc refuses because
 * the highest kept fd is just below the limit while an inheritable fd lies above it.
 */
#include <spawn.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define HAVE_SPAWN_CLOSEFROM 1
static int spawn_closefrom = 1; /* 0: list, as without it (switched off by the tests) */
#else
static int spawn_closefrom = 0;
#endif

/* Above this many fds between 3 and the highest kept one, listing costs less than F_GETFD. */
#define SPAWN_PROBE_RANGE 64

struct spawn_kept {
    int *fds; /* sorted, unique, 0..2 included */
    Py_ssize_t n;
};

static int
is_kept(const struct spawn_kept *kept, int fd)
{
    return contains(kept->fds, kept->n, fd);
}

/* Add a close action for an inheritable fd that is not kept; EBADF names it in *bad_fd. */
static int
add_close_if_inheritable(posix_spawn_file_actions_t *actions, const struct spawn_kept *kept,
                         int fd, int *bad_fd)
{
    if (is_kept(kept, fd)) {
        return 0;
    }
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || (flags & FD_CLOEXEC)) {
        return 0; /* not open, or closed at exec */
    }
    int error = posix_spawn_file_actions_addclose(actions, fd);
    if (error == EBADF) {
        *bad_fd = fd; /* at or above the soft RLIMIT_NOFILE */
    }
    return error;
}

/* Close actions for the inheritable, unkept fds in [low, high) that /proc/self/fd lists. */
static int
add_listed_closes(posix_spawn_file_actions_t *actions, const struct spawn_kept *kept, int low,
                  long high, int *bad_fd)
{
    char buffer[2048];
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        return errno;
    }
    int error = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, dir, buffer, sizeof buffer);
        if (got <= 0) {
            error = got < 0 ? errno : 0;
            break;
        }
        for (long offset = 0; offset < got && error == 0;) {
            struct linux_dirent64 *entry = (struct linux_dirent64 *)(buffer + offset);
            offset += entry->d_reclen;
            const char *c = entry->d_name;
            if (*c < '0' || *c > '9') {
                continue;
            }
            long fd = 0;
            for (; *c >= '0' && *c <= '9' && fd <= INT_MAX; c++) {
                fd = fd * 10 + (*c - '0');
            }
            if (fd >= low && fd < high && fd != dir) {
                error = add_close_if_inheritable(actions, kept, (int)fd, bad_fd);
            }
        }
        if (error != 0) {
            break;
        }
    }
    close(dir);
    return error;
}

static int
add_fd_closes(posix_spawn_file_actions_t *actions, const struct spawn_kept *kept, int *bad_fd)
{
    int top = kept->fds[kept->n - 1];
#ifdef HAVE_SPAWN_CLOSEFROM
    if (!spawn_closefrom) {
        return add_listed_closes(actions, kept, 3, LONG_MAX, bad_fd);
    }
    int error = 0;
    if (top - 3 > SPAWN_PROBE_RANGE) {
        error = add_listed_closes(actions, kept, 3, top, bad_fd);
    }
    else {
        for (int fd = 3; fd < top && error == 0; fd++) {
            error = add_close_if_inheritable(actions, kept, fd, bad_fd);
        }
    }
    if (error != 0) {
        return error;
    }
    error = posix_spawn_file_actions_addclosefrom_np(actions, top + 1);
    if (error == EBADF) {
        /* top + 1 is at or above the soft limit: only what lies above it is in question */
        return add_listed_closes(actions, kept, top + 1, LONG_MAX, bad_fd);
    }
    return error;
#else
    (void)top;
    return add_listed_closes(actions, kept, 3, LONG_MAX, bad_fd);
#endif
}

static int
compare_ints(const void *left, const void *right)
{
    int a = *(const int *)left, b = *(const int *)right;
    return (a > b) - (a < b);
}

/* Each target of fd_map (a list of (source, target) pairs) and each of pass_fds. */
static int
read_fd_plan(PyObject *fd_map, PyObject *pass_fds, posix_spawn_file_actions_t *actions,
             struct owned *o, struct spawn_kept *kept, int *action_error)
{
    PyObject *map = PySequence_Fast(fd_map, "fd_map must be a sequence of pairs");
    if (map == NULL) {
        return -1;
    }
    PyObject *passed = PySequence_Fast(pass_fds, "pass_fds must be a sequence of ints");
    if (passed == NULL) {
        Py_DECREF(map);
        return -1;
    }
    Py_ssize_t n_map = PySequence_Fast_GET_SIZE(map), n_pass = PySequence_Fast_GET_SIZE(passed);
    int result = -1;
    kept->fds = own(o, sizeof(int) * (size_t)(3 + n_map + n_pass));
    if (kept->fds == NULL) {
        goto done;
    }
    kept->n = 0;
    for (int fd = 0; fd < 3; fd++) {
        kept->fds[kept->n++] = fd;
    }
    for (Py_ssize_t i = 0; i < n_map; i++) {
        int source, target;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(map, i), "ii", &source, &target)) {
            goto done;
        }
        if (*action_error == 0) {
            *action_error = posix_spawn_file_actions_adddup2(actions, source, target);
        }
        kept->fds[kept->n++] = target;
    }
    for (Py_ssize_t i = 0; i < n_pass; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(passed, i));
        if (fd == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (fd < 0 || fd > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "pass_fds must be open fds");
            goto done;
        }
        if (fd > 2) {
            if (*action_error == 0) {
                /* the same fd twice: glibc clears its close-on-exec flag in the child */
                *action_error = posix_spawn_file_actions_adddup2(actions, (int)fd, (int)fd);
            }
            kept->fds[kept->n++] = (int)fd;
        }
    }
    qsort(kept->fds, (size_t)kept->n, sizeof(int), compare_ints);
    Py_ssize_t unique = 0;
    for (Py_ssize_t i = 0; i < kept->n; i++) {
        if (unique == 0 || kept->fds[unique - 1] != kept->fds[i]) {
            kept->fds[unique++] = kept->fds[i];
        }
    }
    kept->n = unique;
    result = 0;
done:
    Py_DECREF(map);
    Py_DECREF(passed);
    return result;
}

/* "name=value" strings for each item of the dict env, in one block. */
static char **
env_strings(struct owned *o, PyObject *env)
{
    if (!PyDict_Check(env)) {
        PyErr_SetString(PyExc_TypeError, "env must be None or a dict of bytes to bytes");
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(env), position = 0, size = 0;
    PyObject *key, *value;
    while (PyDict_Next(env, &position, &key, &value)) {
        if (!PyBytes_Check(key) || !PyBytes_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "env must be None or a dict of bytes to bytes");
            return NULL;
        }
        size += PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value) + 2;
    }
    char **strings = own(o, sizeof(char *) * (size_t)(n + 1));
    char *text = strings == NULL ? NULL : own(o, (size_t)size);
    if (text == NULL) {
        return NULL;
    }
    Py_ssize_t i = 0;
    position = 0;
    while (PyDict_Next(env, &position, &key, &value) && i < n) {
        Py_ssize_t key_size = PyBytes_GET_SIZE(key), value_size = PyBytes_GET_SIZE(value);
        strings[i++] = text;
        memcpy(text, PyBytes_AS_STRING(key), (size_t)key_size);
        text[key_size] = '=';
        memcpy(text + key_size + 1, PyBytes_AS_STRING(value), (size_t)value_size);
        text[key_size + 1 + value_size] = '\0';
        text += key_size + value_size + 2;
    }
    strings[i] = NULL;
    return strings;
}

/*
 * After the spawn, a pidfd for the child, kept only if it names an unreaped child of
 * ours: a child reaped behind our back (SIGCHLD ignored) may have left its pid to a
 * stranger by now. *waitid_pidfd learns whether waitid(P_PIDFD) works (-1: not asked).
 */
static int
open_own_pidfd(pid_t pid, int *pidfd_error, int *waitid_pidfd)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        *pidfd_error = errno;
        return -1;
    }
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
        *waitid_pidfd = 1;
    }
    else if (errno == ECHILD) {
        *waitid_pidfd = 1;
        close(pidfd);
        return -1;
    }
    else if (errno == EINVAL) {
        *waitid_pidfd = 0; /* Linux 5.3: pidfds, no P_PIDFD yet; ours, as assumed there */
    }
    return pidfd;
}

PyDoc_STRVAR(posix_spawn_into_doc,
"posix_spawn_into(receipt, program, argv, env, fd_map, pass_fds, new_session, pgid,\n"
"                 default_signals, want_pidfd) -> (errno, stage, detail, waitid_pidfd)\n\n"
"posix_spawn(3) of program, the child stored as receipt.pid and receipt.pidfd\n"
"(None without one) before returning. env None passes the C environ, else a dict\n"
"of bytes; fd_map is a sequence of (source, target) pairs; pgid -1 leaves the\n"
"process group alone. On success errno is 0, stage None, detail the errno of a\n"
"failed pidfd_open (0 if none), waitid_pidfd 1 or 0 when the pidfd check learnt\n"
"whether waitid(P_PIDFD) works (-1 if not asked). On failure nothing is left,\n"
"stage names the step and detail the fd that could not be closed (-1 for others).");

static PyObject *
native_posix_spawn_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_Format(PyExc_TypeError, "posix_spawn_into takes 10 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *receipt = args[0], *program = args[1], *env = args[3];
    if (!PyBytes_Check(program)) {
        PyErr_SetString(PyExc_TypeError, "program must be bytes");
        return NULL;
    }
    int new_session = PyObject_IsTrue(args[6]);
    long pgid = PyLong_AsLong(args[7]);
    int want_pidfd = PyObject_IsTrue(args[9]);
    if (new_session < 0 || (pgid == -1 && PyErr_Occurred()) || want_pidfd < 0) {
        return NULL;
    }
    if (pgid < -1 || pgid > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "pgid must be -1 or a process group id");
        return NULL;
    }
#ifndef POSIX_SPAWN_SETSID
    if (new_session) {
        return Py_BuildValue("(isii)", ENOSYS, "setsid", -1, -1);
    }
#define POSIX_SPAWN_SETSID 0
#endif
    struct owned o = {0};
    PyObject *result = NULL;
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int error = posix_spawn_file_actions_init(&actions);
    if (error != 0) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    error = posix_spawnattr_init(&attributes);
    if (error != 0) {
        posix_spawn_file_actions_destroy(&actions);
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    char **argv, **envp = NULL;
    Py_ssize_t n_defaults;
    int *defaults;
    struct spawn_kept kept;
    int fd_error = 0, bad_fd = -1;
    if ((argv = string_array(&o, args[2], &o.argv_seq)) == NULL ||
        (env != Py_None && (envp = env_strings(&o, env)) == NULL) ||
        (defaults = int_array(&o, args[8], &n_defaults)) == NULL ||
        read_fd_plan(args[4], args[5], &actions, &o, &kept, &fd_error) < 0) {
        goto done;
    }
    if (fd_error != 0) {
        result = Py_BuildValue("(isii)", fd_error, "fd_map", -1, -1);
        goto done;
    }
    fd_error = add_fd_closes(&actions, &kept, &bad_fd);
    if (fd_error != 0) {
        result = Py_BuildValue("(isii)", fd_error, "close_fds", bad_fd, -1);
        goto done;
    }
    sigset_t signals;
    sigemptyset(&signals);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    error = posix_spawnattr_setsigmask(&attributes, &signals);
    for (Py_ssize_t i = 0; error == 0 && i < n_defaults; i++) {
        if (sigaddset(&signals, defaults[i]) != 0) {
            error = errno;
        }
    }
    if (error == 0) {
        error = posix_spawnattr_setsigdefault(&attributes, &signals);
    }
    if (new_session) {
        flags |= POSIX_SPAWN_SETSID;
    }
    if (pgid >= 0) {
        flags |= POSIX_SPAWN_SETPGROUP;
        if (error == 0) {
            error = posix_spawnattr_setpgroup(&attributes, (pid_t)pgid);
        }
    }
    if (error == 0) {
        error = posix_spawnattr_setflags(&attributes, flags);
    }
    if (error != 0) {
        result = Py_BuildValue("(isii)", error, "signals", -1, -1);
        goto done;
    }
    const char *path = PyBytes_AS_STRING(program);
    pid_t pid = 0;
    int pidfd = -1, pidfd_error = 0, waitid_pidfd = -1;
    Py_BEGIN_ALLOW_THREADS
    error = posix_spawn(&pid, path, &actions, &attributes, argv, envp ? envp : environ);
    if (error == 0 && want_pidfd) {
        pidfd = open_own_pidfd(pid, &pidfd_error, &waitid_pidfd);
    }
    Py_END_ALLOW_THREADS
    if (error != 0) {
        /* glibc has reaped a child that failed; the file actions fail with EBADF */
        const char *stage = error == EBADF ? "fd_map" : error == EAGAIN ? "fork" : "exec";
        result = Py_BuildValue("(isii)", error, stage, -1, -1);
    }
    else if (record_child(receipt, pid, pidfd) == 0) {
        result = Py_BuildValue("(iOii)", 0, Py_None, pidfd_error, waitid_pidfd);
    }
done:
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    release(&o);
    return result;
}

static PyObject *
native_posix_spawn_closes_from(PyObject *module, PyObject *args)
{
    int enable = -1;
    if (!PyArg_ParseTuple(args, "|p:posix_spawn_closes_from", &enable)) {
        return NULL;
    }
    int was = spawn_closefrom;
#ifdef HAVE_SPAWN_CLOSEFROM
    if (enable >= 0) {
        spawn_closefrom = enable;
    }
#endif
    return PyBool_FromLong(was);
}

static PyObject *native_reap_pidfd(PyObject *module, PyObject *arg); /* see the end */
static PyObject *native_wait_readable(PyObject *module, PyObject *arg);
static PyObject *native_wait_exited(PyObject *module, PyObject *arg);
static PyObject *native_set_status_types(PyObject *module, PyObject *const *args,
                                         Py_ssize_t nargs);
static PyObject *native_reap_status(PyObject *module, PyObject *arg);

static PyMethodDef methods[] = {
    {"set_id_helper", native_set_id_helper, METH_O, set_id_helper_doc},
    {"id_helper", native_id_helper, METH_NOARGS, id_helper_doc},
    {"spawn", (PyCFunction)(void (*)(void))native_spawn, METH_FASTCALL, spawn_doc},
    {"clone3_clear_sighand", native_clone3_clear_sighand, METH_VARARGS,
     "clone3_clear_sighand([enable]): whether children are cloned with clone3 and\n"
     "CLONE_CLEAR_SIGHAND (None until the first spawn tried; False where refused or\n"
     "not built). With enable, switch it off (False) or let the next spawn try (True)."},
    {"cached_stacks", native_cached_stacks, METH_NOARGS,
     "How many child stacks this process keeps for reuse (mapped by it, not inherited)."},
    {"dup_into", native_dup_into, METH_VARARGS,
     "dup_into(target, attribute, fd): a close-on-exec dup of fd, also stored as\n"
     "target.attribute before returning to Python."},
    {"fork_into", native_fork_into, METH_O,
     "fork_into(receipt): os.fork() with a close-on-exec report pipe: receipt.report\n"
     "(its read end) and receipt.pid are stored before returning to Python; returns\n"
     "(pid, -1) in the parent, (0, write end) in the child."},
    {"pidfd_open_into", native_pidfd_open_into, METH_VARARGS,
     "pidfd_open_into(receipt, pid): pidfd_open(pid), also stored as receipt.pidfd\n"
     "before returning to Python."},
    {"posix_spawn_into", (PyCFunction)(void (*)(void))native_posix_spawn_into, METH_FASTCALL,
     posix_spawn_into_doc},
    {"posix_spawn_closes_from", native_posix_spawn_closes_from, METH_VARARGS,
     "posix_spawn_closes_from([enable]): whether posix_spawn_into closes fds with\n"
     "closefrom (glibc 2.34), not by listing /proc/self/fd. With enable False, it lists\n"
     "from now on (for the tests of that path); True goes back where it was built."},
    {"spawn_pid_namespace_init", (PyCFunction)(void (*)(void))native_spawn_pid_namespace_init,
     METH_FASTCALL,
     "spawn_pid_namespace_init(*spawn args): spawn() as PID 1 of a new PID namespace."},
    {"spawn_in_pid_namespace", (PyCFunction)(void (*)(void))native_spawn_in_pid_namespace,
     METH_FASTCALL,
     "spawn_in_pid_namespace(init_pidfd, *spawn args): spawn() into the PID namespace\n"
     "of the init that init_pidfd names; the child is still ours."},
    {"pidfd_autokill", native_pidfd_autokill, METH_NOARGS,
     "Whether clone3 accepts CLONE_PIDFD_AUTOKILL (Linux 7.1), probed once; None when\n"
     "the probe failed for another reason. Namespace inits are cloned with it when it does."},
    {"clone_pidfd", native_clone_pidfd, METH_NOARGS,
     "Whether clone(CLONE_PIDFD) worked (None until the first spawn)."},
    {"set_status_types", (PyCFunction)(void (*)(void))native_set_status_types, METH_FASTCALL,
     "set_status_types(Exited, Signaled, Rusage, signals, decode): the classes reap_status\n"
     "builds, the Signals member of each signal number, and the function that decodes\n"
     "any other waitid result (decode(si_code, si_status, rusage))."},
    {"reap_status", native_reap_status, METH_O,
     "reap_status(pidfd): reap_pidfd(), with the status built here: None while the child\n"
     "runs, else an Exited or Signaled (anything rarer comes from decode). Needs\n"
     "set_status_types first."},
    {"wait_exited", native_wait_exited, METH_O,
     "wait_exited(pidfd): block until the child behind pidfd has exited, leaving it\n"
     "unreaped (waitid with WNOWAIT; poll on the fd for a process not our child)."},
    {"wait_readable", native_wait_readable, METH_O,
     "wait_readable(fd): block until fd is readable (or hung up, or not open), with no\n"
     "timeout; a signal handler that raises interrupts it, one that returns does not."},
    {"reap_pidfd", native_reap_pidfd, METH_O,
     "reap_pidfd(pidfd): waitid(P_PIDFD, pidfd, WEXITED | WNOHANG) with its rusage, as one\n"
     "system call; None while the child runs, else (si_code, si_status, user seconds,\n"
     "system seconds, max RSS in bytes). ChildProcessError once someone else reaped it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tether._native._spawner",
    .m_doc = "tether's vfork-style C spawner (see _spawner.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__spawner(void)
{
    static int at_fork_registered = 0;
    if (!at_fork_registered) {
        if (pthread_atfork(NULL, NULL, drop_stacks_after_fork) != 0) {
            PyErr_SetString(PyExc_ImportError, "tether spawner: pthread_atfork failed");
            return NULL;
        }
        at_fork_registered = 1;
    }
    if (pid_name == NULL && (pid_name = PyUnicode_InternFromString("pid")) == NULL) {
        return NULL;
    }
    if (pidfd_name == NULL && (pidfd_name = PyUnicode_InternFromString("pidfd")) == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    PyObject *stages = PyTuple_New(STAGE_EXEC);
    if (stages == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    for (int i = 1; i <= STAGE_EXEC; i++) {
        PyObject *name = PyUnicode_FromString(stage_names[i]);
        if (name == NULL) {
            Py_DECREF(stages);
            Py_DECREF(module);
            return NULL;
        }
        PyTuple_SET_ITEM(stages, i - 1, name);
    }
    if (PyModule_AddObject(module, "STAGES", stages) < 0) {
        Py_DECREF(stages);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/* --- reaping through a pidfd --------------------------------------------------------
 *
 * The wait path of a handle ends in waitid(P_PIDFD, pidfd, WEXITED | WNOHANG): it reaps
 * exactly the child the pidfd names, never a recycled pid. glibc's waitid() hides the
 * kernel's fifth argument, the struct rusage, so the raw system call is made here, once,
 * and the result comes back as one tuple: no ctypes structures, no per-call argument
 * objects (the Python fallback in _linux/_pidfd.py does the same through ctypes when
 * this extension is missing or older). Linux 5.3 has pidfds but no P_PIDFD (EINVAL):
 * the caller uses this only once the kernel has accepted P_PIDFD.
 */
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* The fd in arg, or -1 with an exception set (TypeError, or ValueError naming what). */
static int
fd_arg(PyObject *arg, const char *what)
{
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s out of range", what);
        return -1;
    }
    return (int)fd;
}

/* waitid(P_PIDFD, the pidfd arg, WEXITED | WNOHANG) with its rusage: 0 with info and
 * usage filled (info->si_pid is 0 while the child runs), -1 with an exception set. EINTR
 * runs the signal handlers and tries again; one that raises ends it before any reap. */
static int
reap_pidfd_arg(PyObject *arg, siginfo_t *info, struct rusage *usage)
{
    int fd = fd_arg(arg, "pidfd");
    if (fd < 0) {
        return -1;
    }
    for (;;) {
        memset(info, 0, sizeof *info);
        memset(usage, 0, sizeof *usage);
        if (syscall(SYS_waitid, P_PIDFD, fd, info, WEXITED | WNOHANG, usage) == 0) {
            return 0;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
}

static PyObject *
native_reap_pidfd(PyObject *module, PyObject *arg)
{
    siginfo_t info;
    struct rusage usage;
    if (reap_pidfd_arg(arg, &info, &usage) < 0) {
        return NULL;
    }
    if (info.si_pid == 0) {
        Py_RETURN_NONE;
    }
    /* Built by hand: Py_BuildValue parses its format string on every reap. */
    PyObject *items[5] = {
        PyLong_FromLong(info.si_code),
        PyLong_FromLong(info.si_status),
        PyFloat_FromDouble((double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6),
        PyFloat_FromDouble((double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6),
        PyLong_FromLong((long)usage.ru_maxrss * 1024L),
    };
    PyObject *result = PyTuple_New(5);
    for (int i = 0; i < 5; i++) {
        if (items[i] == NULL || result == NULL) {
            Py_CLEAR(result);
            Py_XDECREF(items[i]);
        }
        else {
            PyTuple_SET_ITEM(result, i, items[i]);
        }
    }
    return result; /* NULL only without memory: the status is lost, as a failed alloc loses it */
}

/*
 * wait_readable(fd): the blocking half of a wait, as one call. select.poll() would
 * build a poll object and register the fd first; every call after a child's exit
 * runs with cold caches, and this one stands between a killed child and its reap.
 * EINTR runs the Python signal handlers (PEP 475): one that raises ends the wait.
 */
static PyObject *
poll_readable(int fd)
{
    struct pollfd entry = {.fd = fd, .events = POLLIN};
    for (;;) {
        int ready, error;
        Py_BEGIN_ALLOW_THREADS
        ready = poll(&entry, 1, -1);
        error = errno;
        Py_END_ALLOW_THREADS
        if (ready >= 0) {
            Py_RETURN_NONE;
        }
        if (error != EINTR) {
            errno = error;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
}

static PyObject *
native_wait_readable(PyObject *module, PyObject *arg)
{
    int fd = fd_arg(arg, "fd");
    return fd < 0 ? NULL : poll_readable(fd);
}

/*
 * wait_exited(pidfd): wait_readable for the pidfd of a child of ours, as a blocking
 * waitid(P_PIDFD, WEXITED | WNOWAIT): the child's exit wakes it the way it wakes a
 * blocking wait4, without poll's table of wait queues, and leaves the child unreaped,
 * so the reap still happens under the caller's lock (a bare blocking reap here would
 * free the pid while a group signal or a prlimit of another thread may still name it).
 * Any error but EINTR (the pidfd names no child of ours: ECHILD; a kernel before 5.4:
 * EINVAL) falls back to poll on the fd, which is readable once the process is gone.
 */
static PyObject *
native_wait_exited(PyObject *module, PyObject *arg)
{
    int fd = fd_arg(arg, "pidfd");
    if (fd < 0) {
        return NULL;
    }
    for (;;) {
        siginfo_t info;
        int done, error;
        Py_BEGIN_ALLOW_THREADS
        memset(&info, 0, sizeof info);
        done = waitid((idtype_t)P_PIDFD, (id_t)fd, &info, WEXITED | WNOWAIT);
        error = errno;
        Py_END_ALLOW_THREADS
        if (done == 0) {
            Py_RETURN_NONE;
        }
        if (error != EINTR) {
            return poll_readable(fd);
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
}

/*
 * reap_status(pidfd): the reap and the status it ends with, in one call. After a child's
 * exit every Python frame and bytecode runs on caches the exit evicted, and a waiter
 * pays for each one before it gets its answer; so the common statuses (Exited with a
 * code, Signaled by a known signal) and their Rusage are built here, the way
 * _status.decode_waitid builds them: the instance allocated by its type and each field
 * stored in the slot the class reads it from, as the dataclass __init__ would store it.
 */
static PyTypeObject *exited_type, *signaled_type, *rusage_type;
static PyObject *signal_members, *decode_other;
static Py_ssize_t exit_code_at, exited_rusage_at, signal_at, core_dumped_at, signaled_rusage_at;
static Py_ssize_t user_time_at, system_time_at, max_rss_at;

#ifndef Py_T_OBJECT_EX /* before 3.12, the member constants had other names */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_READONLY READONLY
#endif

/* The offset of the object slot that instances of type read field from (the nearest
 * along the MRO, as attribute lookup finds it), or -1 with an exception set. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *field)
{
    PyObject *descriptor = PyObject_GetAttrString((PyObject *)type, field);
    if (descriptor == NULL) {
        return -1;
    }
    Py_ssize_t offset = -1;
    /* a slot of type or of a base (not one borrowed from an unrelated class's layout) */
    if (PyObject_TypeCheck(descriptor, &PyMemberDescr_Type) &&
        PyType_IsSubtype(type, PyDescr_TYPE(descriptor))) {
        PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
        if (member->type == Py_T_OBJECT_EX && !(member->flags & Py_READONLY)) {
            offset = member->offset;
        }
    }
    Py_DECREF(descriptor);
    if (offset < 0) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", type->tp_name, field);
    }
    return offset;
}

static PyObject *
native_set_status_types(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
        !PyType_Check(args[2]) || !PyDict_Check(args[3]) || !PyCallable_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "set_status_types(Exited, Signaled, Rusage, signals, decode)");
        return NULL;
    }
    PyTypeObject *exited = (PyTypeObject *)args[0], *signaled = (PyTypeObject *)args[1];
    PyTypeObject *rusage = (PyTypeObject *)args[2];
    PyTypeObject *owners[8] = {exited, exited, signaled, signaled,
                               signaled, rusage, rusage, rusage};
    const char *fields[8] = {"exit_code", "rusage", "signal", "core_dumped",
                             "rusage", "user_time", "system_time", "max_rss"};
    Py_ssize_t offsets[8];
    for (int i = 0; i < 8; i++) {
        if ((offsets[i] = slot_offset(owners[i], fields[i])) < 0) {
            return NULL; /* nothing is kept until every one is found */
        }
    }
    exit_code_at = offsets[0];
    exited_rusage_at = offsets[1];
    signal_at = offsets[2];
    core_dumped_at = offsets[3];
    signaled_rusage_at = offsets[4];
    user_time_at = offsets[5];
    system_time_at = offsets[6];
    max_rss_at = offsets[7];
    Py_XSETREF(exited_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(signaled_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(rusage_type, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(signal_members, Py_NewRef(args[3]));
    Py_XSETREF(decode_other, Py_NewRef(args[4]));
    Py_RETURN_NONE;
}

/* A new instance of type with each (offset, value) stored; the values are stolen, and
 * on failure (a NULL value, no memory) all of them are released. */
static PyObject *
build(PyTypeObject *type, int n, const Py_ssize_t *offsets, PyObject **values)
{
    PyObject *instance = NULL;
    for (int i = 0; i < n; i++) {
        if (values[i] == NULL) {
            goto failed;
        }
    }
    instance = type->tp_alloc(type, 0);
    if (instance == NULL) {
        goto failed;
    }
    for (int i = 0; i < n; i++) {
        *(PyObject **)((char *)instance + offsets[i]) = values[i];
    }
    return instance;
failed:
    for (int i = 0; i < n; i++) {
        Py_XDECREF(values[i]);
    }
    return NULL;
}

static PyObject *
native_reap_status(PyObject *module, PyObject *arg)
{
    if (exited_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "reap_status: set_status_types was not called");
        return NULL;
    }
    siginfo_t info;
    struct rusage usage;
    if (reap_pidfd_arg(arg, &info, &usage) < 0) {
        return NULL;
    }
    if (info.si_pid == 0) {
        Py_RETURN_NONE;
    }
    /* From here the child is reaped: only running out of memory can lose its status. */
    Py_ssize_t usage_offsets[3] = {user_time_at, system_time_at, max_rss_at};
    PyObject *usage_values[3] = {
        PyFloat_FromDouble((double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6),
        PyFloat_FromDouble((double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6),
        PyLong_FromLong((long)usage.ru_maxrss * 1024L),
    };
    PyObject *rusage = build(rusage_type, 3, usage_offsets, usage_values);
    if (rusage == NULL) {
        return NULL;
    }
    int code = info.si_code, status = info.si_status;
    if (code == CLD_EXITED && status >= 0 && status <= 255) {
        Py_ssize_t offsets[2] = {exit_code_at, exited_rusage_at};
        PyObject *values[2] = {PyLong_FromLong(status), rusage};
        return build(exited_type, 2, offsets, values);
    }
    if (code == CLD_KILLED || code == CLD_DUMPED) {
        PyObject *key = PyLong_FromLong(status);
        PyObject *member = key == NULL ? NULL : PyDict_GetItemWithError(signal_members, key);
        Py_XDECREF(key);
        if (member != NULL) {
            Py_ssize_t offsets[3] = {signal_at, core_dumped_at, signaled_rusage_at};
            PyObject *values[3] = {Py_NewRef(member), PyBool_FromLong(code == CLD_DUMPED),
                                   rusage};
            return build(signaled_type, 3, offsets, values);
        }
        if (PyErr_Occurred()) {
            Py_DECREF(rusage);
            return NULL;
        }
    }
    PyObject *result = PyObject_CallFunction(decode_other, "iiO", code, status, rusage);
    Py_DECREF(rusage);
    return result;
}
