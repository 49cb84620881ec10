/* openlive-init MONITOR_FD JOB_PID: PID 1 of one runner's namespaces, exec'd by the monitor (spawn.c).
 *
 * Reaps every orphan while the job runs. A byte or end of file on MONITOR_FD (a kill request, or the
 * server gone) kills the job. Once the job has ended it kills and reaps everything left in the
 * namespace, and only then reports the job's wait status and CPU seconds on MONITOR_FD as one frame
 * (u32 length, JSON), the same report as the Python monitor's. The job cannot signal it: an init
 * receives from inside its namespace only signals it handles, and it handles none.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    int monitor = atoi(argv[1]);
    pid_t job = atoi(argv[2]);
    /* Only the report socket and stdio: the job's pipes must reach end of file when the job closes them. */
    syscall(SYS_close_range, 3, monitor - 1, 0);
    syscall(SYS_close_range, monitor + 1, ~0U, 0);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC);
    int status = 0, done = 0, killing = 0;
    struct rusage usage;
    memset(&usage, 0, sizeof usage);
    while (!done) {
        struct rusage ru;
        int st;
        pid_t pid;
        while ((pid = wait4(-1, &st, WNOHANG, &ru)) > 0) {
            if (pid == job) {
                status = st;
                usage = ru;
                done = 1;
            }
        }
        if (done || (pid < 0 && errno == ECHILD))
            break;
        if (sfd < 0) { /* no signalfd to wait on: end the job rather than run it unwatched */
            kill(job, SIGKILL);
            if (wait4(job, &status, 0, &usage) == job)
                break;
            continue;
        }
        struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = killing ? -1 : monitor, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0 && errno != EINTR) {
            kill(job, SIGKILL);
            killing = 1;
        }
        if (fds[0].revents) {
            struct signalfd_siginfo info;
            if (read(sfd, &info, sizeof info) < 0 && errno != EAGAIN)
                kill(job, SIGKILL);
        }
        if (fds[1].revents) {
            kill(job, SIGKILL);
            killing = 1;
        }
    }
    /* Everything else in the namespace: as its PID 1, kill(-1) reaches every other process in it. */
    for (;;) {
        kill(-1, SIGKILL);
        if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
            break;
    }
    double cpu = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
                 (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    char frame[160];
    int n = snprintf(frame + 4, sizeof frame - 4, "{\"t\": \"exit\", \"status\": %d, \"cpu\": %.6f}", status, cpu);
    uint32_t len = (uint32_t)n;
    memcpy(frame, &len, 4); /* little-endian on every architecture this runs on (x86_64, aarch64) */
    ssize_t off = 0;
    while (off < n + 4) {
        ssize_t w = write(monitor, frame + off, n + 4 - off);
        if (w <= 0)
            break;
        off += w;
    }
    return 0;
}
