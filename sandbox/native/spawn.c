/* The warm worker's loop once it is warm: receive runner requests and spawn each runner, in C.
 *
 * A runner is a monitor that is PID 1 of new namespaces, with the job as its child, both made from the
 * worker's large warm image. The monitor is cloned with CLONE_VM | CLONE_VFORK: it shares the worker's
 * memory (the worker waits) just long enough to fork the job and exec the small init (init.c), which
 * then watches the job. The job, a copy-on-write copy as a plain fork makes, resumes here and returns
 * to Python with its request, already confined to its plan (sandbox/plan.py: mounts and pivot_root,
 * stdio, rlimits, uid, no_new_privs, Landlock, seccomp), which it carries out here in C before it runs
 * any Python: the job neither pays ctypes calls nor copies the pages their Python objects live on.
 * So the image is copied once per runner, and the worker itself runs no
 * Python between runners: it writes none of its heap, which stays on the huge pages it was collapsed
 * onto (a Python loop would split every one it touches, at every fork).
 *
 * Loaded with ctypes.PyDLL (the GIL stays held). The worker is single-threaded, so no lock can be held
 * across the fork and Python's before-fork hooks are not needed; the job runs PyOS_AfterFork_Child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RUNNER_FDS 4 /* channel, stdout, stderr, monitor: the order of confine.RunnerFds */

/* sandbox/plan.py's JobPlan, as native.py lays it out (the same order of steps as confine.py's path). */
struct mount_step {
    const char *source, *target, *fstype, *data; /* fstype and data may be NULL */
    unsigned long flags;
    int create; /* 1: make the mount point as a directory, 2: as a file, 0: it exists */
};
struct limit_step {
    int resource;
    unsigned long long soft, hard;
};
struct landlock_rule {
    const char *path;
    uint64_t allowed;
};
struct plan {
    const char *root; /* pivot into after the mounts; never NULL here (the native path needs mountns) */
    const struct mount_step *mounts;
    int n_mounts;
    const char *hostname; /* NULL: none */
    const char *cwd;
    const struct limit_step *limits;
    int n_limits;
    int uid; /* -1: unchanged */
    int landlock; /* 0: no Landlock */
    uint64_t ll_fs, ll_net, ll_scoped, ll_file_only;
    int ll_attr_size;
    const struct landlock_rule *ll_rules;
    int n_ll_rules;
    const struct sock_filter *bpf; /* NULL: no seccomp */
    int bpf_len;
};

struct request {
    sigjmp_buf job;    /* where the job resumes: in openlive_serve, returning 0 */
    const char *init;  /* the init program the monitor becomes */
    int monitor_fd;    /* its socket to the server */
    int error;         /* errno of a failure in the monitor, read by the worker after it resumes */
};

static int monitor(void *arg) {
    struct request *r = arg;
    char fd[16], job[16];
    /* Own signal table (no CLONE_SIGHAND): the worker ignores SIGCHLD; the init must see its job end. */
    signal(SIGCHLD, SIG_DFL);
    pid_t pid = fork();
    if (pid == 0)
        siglongjmp(r->job, 1);
    if (pid < 0) {
        r->error = errno;
        _exit(127);
    }
    fcntl(r->monitor_fd, F_SETFD, 0); /* the init keeps it across exec (and closes all else) */
    snprintf(fd, sizeof fd, "%d", r->monitor_fd);
    snprintf(job, sizeof job, "%d", (int)pid);
    char *argv[] = {"openlive-init", fd, job, NULL};
    char *envp[] = {NULL};
    execve(r->init, argv, envp);
    r->error = errno;
    _exit(127); /* the job dies with the namespace it is in */
}

/* mkdir -p of `path`'s parents (and of `path` itself if `self`), as root in the job's fresh tmpfs. */
static int make_dirs(const char *path, int self) {
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return self && mkdir(buf, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

struct landlock_attr {
    uint64_t fs, net, scoped;
};
struct __attribute__((packed)) landlock_beneath {
    uint64_t allowed;
    int32_t parent_fd;
};

static int landlock(const struct plan *p) {
    struct landlock_attr attr = {p->ll_fs, p->ll_net, p->ll_scoped};
    int ruleset = (int)syscall(444 /* landlock_create_ruleset */, &attr, (size_t)p->ll_attr_size, 0);
    if (ruleset < 0)
        return -1;
    for (int i = 0; i < p->n_ll_rules; i++) {
        struct stat st;
        int fd = open(p->ll_rules[i].path, O_PATH | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
            return -1;
        uint64_t allowed = p->ll_rules[i].allowed;
        if (!S_ISDIR(st.st_mode))
            allowed &= p->ll_file_only;
        struct landlock_beneath rule = {allowed & p->ll_fs, fd};
        if (syscall(445 /* landlock_add_rule */, ruleset, 1 /* PATH_BENEATH */, &rule, 0) < 0)
            return -1;
        close(fd);
    }
    if (syscall(446 /* landlock_restrict_self */, ruleset, 0) < 0)
        return -1;
    close(ruleset);
    return 0;
}

/* The job's plan, in the job: 0, or -1 with errno and the failed step in *step. */
static int confine(const struct plan *p, const int fds[RUNNER_FDS], const char **step) {
    *step = "close the monitor's socket";
    if (close(fds[3]) < 0)
        return -1;
    *step = "dup2 stderr"; /* a failure from here on is the start-up error the server reports */
    if (dup2(fds[2], 2) < 0)
        return -1;
    *step = "unshare the mount namespace";
    if (unshare(CLONE_NEWNS) < 0)
        return -1;
    for (int i = 0; i < p->n_mounts; i++) {
        const struct mount_step *m = &p->mounts[i];
        *step = m->target;
        if (m->create == 1 && make_dirs(m->target, 1) < 0)
            return -1;
        if (m->create == 2) {
            if (make_dirs(m->target, 0) < 0)
                return -1;
            int fd = open(m->target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0)
                return -1;
            close(fd);
        }
        if (mount(m->source, m->target, m->fstype, m->flags, m->data) < 0)
            return -1;
    }
    *step = "pivot_root";
    if (chdir(p->root) < 0 || syscall(SYS_pivot_root, ".", ".old") < 0 || chdir("/") < 0 ||
        umount2("/.old", MNT_DETACH) < 0)
        return -1;
    *step = "sethostname";
    if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0)
        return -1;
    *step = "stdio";
    int devnull = open("/dev/null", O_RDWR);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0 ||
        dup2(fds[0], 3) < 0 || syscall(SYS_close_range, 4, ~0U, 0) < 0)
        return -1;
    *step = "chdir";
    if (chdir(p->cwd) < 0)
        return -1;
    *step = "setsid";
    if (setsid() < 0)
        return -1;
    *step = "setrlimit";
    for (int i = 0; i < p->n_limits; i++) {
        struct rlimit rl = {p->limits[i].soft, p->limits[i].hard};
        if (setrlimit(p->limits[i].resource, &rl) < 0)
            return -1;
    }
    *step = "uid";
    if (p->uid >= 0 && (setgroups(0, NULL) < 0 || setresgid(p->uid, p->uid, p->uid) < 0 ||
                        setresuid(p->uid, p->uid, p->uid) < 0))
        return -1;
    *step = "prctl";
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || /* a uid change clears it */
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    *step = "landlock";
    if (p->landlock && landlock(p) < 0)
        return -1;
    *step = "seccomp";
    struct sock_fprog prog = {.len = (unsigned short)p->bpf_len, .filter = (struct sock_filter *)p->bpf};
    if (p->bpf && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        return -1;
    return 0;
}

/* A job whose plan fails ends here: the server reads why on its stderr pipe (fd 2 once dup'ed). */
static void fail(const char *step) {
    char message[512];
    int n = snprintf(message, sizeof message, "openlive sandbox runner: cannot confine the job: %s: %s\n",
                     step, strerror(errno));
    if (n > 0 && write(2, message, (size_t)n < sizeof message ? (size_t)n : sizeof message - 1) < 0)
        n = 0;
    _exit(1);
}

/* One request: a decimal runner index, with its four descriptors. 1 if well formed. */
static int receive(int control, int *index, int fds[RUNNER_FDS], int *closed) {
    char text[32];
    union {
        char buf[CMSG_SPACE(RUNNER_FDS * sizeof(int))];
        struct cmsghdr align;
    } control_buf;
    struct iovec iov = {.iov_base = text, .iov_len = sizeof text - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control_buf.buf,
                         .msg_controllen = sizeof control_buf.buf};
    ssize_t n = recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) {
        *closed = n == 0 || errno != EINTR;
        return 0;
    }
    int count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < got; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (count < RUNNER_FDS)
                fds[count++] = fd;
            else
                close(fd);
        }
    }
    text[n] = '\0';
    char *end;
    long value = strtol(text, &end, 10);
    if (count == RUNNER_FDS && end != text && *end == '\0' && value >= 0 && value < 1 << 20) {
        *index = (int)value;
        return 1;
    }
    for (int i = 0; i < count; i++)
        close(fds[i]);
    return 0;
}

/* Returns 0 in each job, confined to plans[its runner index], with that index (its descriptors are then
 * fd 3 the channel, 1 stdout, 2 stderr); -1 in the worker once the server has closed the control socket.
 * A runner that cannot be made is reported on stderr; the server sees its channel close and asks again. */
int openlive_serve(int control, int namespaces, const char *init, const struct plan *plans, int n_plans,
                   int *index) {
    int fds[RUNNER_FDS];
    static char stack[1 << 16] __attribute__((aligned(16))); /* the monitor's, while the worker waits */
    for (;;) {
        int closed = 0;
        if (!receive(control, index, fds, &closed)) {
            if (closed)
                return -1;
            continue;
        }
        if (*index >= n_plans) {
            for (int i = 0; i < RUNNER_FDS; i++)
                close(fds[i]);
            continue;
        }
        struct request r = {.init = init, .monitor_fd = fds[3], .error = 0};
        if (sigsetjmp(r.job, 0)) {
            const char *step;
            if (confine(&plans[*index], fds, &step) < 0)
                fail(step);
            return 0;
        }
        int pid = clone(monitor, stack + sizeof stack, CLONE_VM | CLONE_VFORK | namespaces | SIGCHLD, &r);
        int error = pid < 0 ? errno : r.error;
        if (error)
            fprintf(stderr, "openlive sandbox worker: cannot start a runner: %s\n", strerror(error));
        for (int i = 0; i < RUNNER_FDS; i++)
            close(fds[i]);
    }
}
