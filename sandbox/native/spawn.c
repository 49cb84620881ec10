/* The warm worker's runner spawn: a monitor that is PID 1 of new namespaces, with the job as its child,
 * at the price of one copy of the worker's large image instead of two.
 *
 * The monitor is cloned with CLONE_VM | CLONE_VFORK: it shares the worker's memory (the worker waits)
 * just long enough to fork the job and exec the small init (init.c), which then watches the job. The
 * job, a full copy-on-write copy as a plain fork would make, resumes here and returns 0 to Python,
 * which treats it as the child of a fork. No Python code runs in the monitor.
 * Loaded with ctypes.PyDLL (the GIL stays held, as across os.fork).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

struct request {
    sigjmp_buf job;    /* where the job resumes: in openlive_spawn, returning 0 */
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

/* Returns the monitor's pid in the worker, 0 in the job, -1 with *error set on failure. */
int openlive_spawn(int namespaces, const char *init, int monitor_fd, int *error) {
    static char stack[1 << 16] __attribute__((aligned(16))); /* used only while the worker waits */
    struct request r = {.init = init, .monitor_fd = monitor_fd, .error = 0};
    if (sigsetjmp(r.job, 0))
        return 0;
    int pid = clone(monitor, stack + sizeof stack, CLONE_VM | CLONE_VFORK | namespaces | SIGCHLD, &r);
    if (pid < 0) {
        *error = errno;
        return -1;
    }
    if (r.error) {
        *error = r.error;
        return -1;
    }
    return pid;
}
