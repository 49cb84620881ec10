/* The warm worker's loop once it is warm: receive runner requests and spawn each runner, in C.
 *
 * A runner is a monitor that is PID 1 of new namespaces, with the job as its child, both made from the
 * worker's large warm image. The monitor is cloned with CLONE_VM | CLONE_VFORK: it shares the worker's
 * memory (the worker waits) just long enough to fork the job and exec the small init (init.c), which
 * then watches the job. The job, a copy-on-write copy as a plain fork makes, resumes here and returns
 * to Python with its request. So the image is copied once per runner, and the worker itself runs no
 * Python between runners: it writes none of its heap, which stays on the huge pages it was collapsed
 * onto (a Python loop would split every one it touches, at every fork).
 *
 * Loaded with ctypes.PyDLL (the GIL stays held). The worker is single-threaded, so no lock can be held
 * across the fork and Python's before-fork hooks are not needed; the job runs PyOS_AfterFork_Child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RUNNER_FDS 4 /* channel, stdout, stderr, monitor: the order of confine.RunnerFds */

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

/* Returns 0 in each job, with its runner index and descriptors; -1 in the worker once the server has
 * closed the control socket. A runner that cannot be made is reported on stderr; the server sees its
 * channel close and asks again. */
int openlive_serve(int control, int namespaces, const char *init, int *index, int fds[RUNNER_FDS]) {
    static char stack[1 << 16] __attribute__((aligned(16))); /* the monitor's, while the worker waits */
    for (;;) {
        int closed = 0;
        if (!receive(control, index, fds, &closed)) {
            if (closed)
                return -1;
            continue;
        }
        struct request r = {.init = init, .monitor_fd = fds[3], .error = 0};
        if (sigsetjmp(r.job, 0))
            return 0;
        int pid = clone(monitor, stack + sizeof stack, CLONE_VM | CLONE_VFORK | namespaces | SIGCHLD, &r);
        int error = pid < 0 ? errno : r.error;
        if (error)
            fprintf(stderr, "openlive sandbox worker: cannot start a runner: %s\n", strerror(error));
        for (int i = 0; i < RUNNER_FDS; i++)
            close(fds[i]);
    }
}
