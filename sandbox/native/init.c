/* openlive-init MONITOR_FD JOB_PID: PID 1 of one runner's namespaces, exec'd by the monitor (spawn.c).
 *
 * Reaps every orphan while the job runs. A byte or end of file on MONITOR_FD (a kill request, or the
 * server gone) kills the job. Once the job has ended it kills and reaps everything left in the
 * namespace, and only then reports the job's wait status and CPU seconds on MONITOR_FD as one frame
 * (u32 length, JSON), the same report as the Python monitor's. The job cannot signal it: an init
 * receives from inside its namespace only signals it handles, and it handles none.
 *
 * Built without a C library where it can be (OPENLIVE_NOLIBC, x86_64 and aarch64): a static glibc
 * program starts by probing the CPU's features and caches with dozens of cpuid instructions, and in a
 * virtual machine each one traps to the hypervisor; that start-up cost more CPU than everything else
 * an init does for a job. So it makes its few system calls itself. Elsewhere, the C library's syscall().
 */
#define _GNU_SOURCE
#include <asm/unistd.h>
#include <stdint.h>

#define SIGKILL 9
#define SIGCHLD 17
#define SIG_BLOCK 0
#define SFD_CLOEXEC 02000000
#define WNOHANG 1
#define POLLIN 1
#define EINTR 4
#define ECHILD 10
#define EAGAIN 11

struct timeval_ {
    long sec, usec;
};
struct rusage_ {
    struct timeval_ utime, stime;
    long rest[14];
};
struct pollfd_ {
    int fd;
    short events, revents;
};

#ifdef OPENLIVE_NOLIBC
#if defined(__x86_64__)
static long sys(long n, long a, long b, long c, long d, long e) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start\n  hlt\n");
#elif defined(__aarch64__)
static long sys(long n, long a, long b, long c, long d, long e) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n"
        "  mov x29, #0\n  mov x30, #0\n  mov x0, sp\n  and sp, x0, #-16\n  bl start\n  brk #0\n");
#else
#error "no system call convention for this architecture: build with the C library"
#endif
/* What the compiler may call for a struct copy or zeroing, even without a C library. */
void *memset(void *s, int c, unsigned long n) {
    unsigned char *p = s;
    while (n--)
        *p++ = (unsigned char)c;
    return s;
}
void *memcpy(void *d, const void *s, unsigned long n) {
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}
#else
#include <errno.h>
#include <unistd.h>
static long sys(long n, long a, long b, long c, long d, long e) {
    long ret = syscall(n, a, b, c, d, e);
    return ret < 0 ? -errno : ret;
}
#endif

static int number(const char *s) {
    int n = 0;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (*s++ - '0');
    return n;
}

/* Appends the decimal digits of n (at least `width` of them) at p; returns the end. */
static char *digits(char *p, unsigned long n, int width) {
    char buf[24];
    int i = 0;
    do {
        buf[i++] = (char)('0' + n % 10);
        n /= 10;
    } while (n || i < width);
    while (i)
        *p++ = buf[--i];
    return p;
}

static char *text(char *p, const char *s) {
    while (*s)
        *p++ = *s++;
    return p;
}

static void kill_job(int job) {
    sys(__NR_kill, job, SIGKILL, 0, 0, 0);
}

static int run(int argc, char **argv) {
    /* Its kill(-1) reaches every process it may signal: only ever as PID 1 of a namespace of its own. */
    if (argc != 3 || sys(__NR_getpid, 0, 0, 0, 0, 0) != 1)
        return 2;
    int monitor = number(argv[1]);
    int job = number(argv[2]);
    /* Only the report socket and stdio: the job's pipes must reach end of file when the job closes them. */
    sys(__NR_close_range, 3, monitor - 1, 0, 0, 0);
    sys(__NR_close_range, monitor + 1, ~0U, 0, 0, 0);
    unsigned long chld = 1UL << (SIGCHLD - 1);
    sys(__NR_rt_sigprocmask, SIG_BLOCK, (long)&chld, 0, sizeof chld, 0);
    int sfd = (int)sys(__NR_signalfd4, -1, (long)&chld, sizeof chld, SFD_CLOEXEC, 0);
    int status = 0, done = 0, killing = 0;
    struct rusage_ usage = {0};
    while (!done) {
        struct rusage_ ru;
        int st = 0;
        long pid;
        while ((pid = sys(__NR_wait4, -1, (long)&st, WNOHANG, (long)&ru, 0)) > 0) {
            if (pid == job) {
                status = st;
                usage = ru;
                done = 1;
            }
        }
        if (done || pid == -ECHILD)
            break;
        if (sfd < 0) { /* no signalfd to wait on: end the job rather than run it unwatched */
            kill_job(job);
            if (sys(__NR_wait4, job, (long)&status, 0, (long)&usage, 0) == job)
                break;
            continue;
        }
        struct pollfd_ fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = killing ? -1 : monitor, .events = POLLIN}};
        long polled = sys(__NR_ppoll, (long)fds, 2, 0, 0, 0);
        if (polled < 0 && polled != -EINTR) {
            kill_job(job);
            killing = 1;
        }
        if (fds[0].revents) {
            char info[128]; /* struct signalfd_siginfo */
            long got = sys(__NR_read, sfd, (long)info, sizeof info, 0, 0);
            if (got < 0 && got != -EAGAIN)
                kill_job(job);
        }
        if (fds[1].revents) {
            kill_job(job);
            killing = 1;
        }
    }
    /* Everything else in the namespace: as its PID 1, kill(-1) reaches every other process in it. */
    for (;;) {
        sys(__NR_kill, -1, SIGKILL, 0, 0, 0);
        if (sys(__NR_wait4, -1, 0, 0, 0, 0) == -ECHILD)
            break;
    }
    unsigned long us = (unsigned long)(usage.utime.sec + usage.stime.sec) * 1000000UL +
                       (unsigned long)(usage.utime.usec + usage.stime.usec);
    char frame[128];
    char *p = text(frame + 4, "{\"t\": \"exit\", \"status\": ");
    p = digits(p, (unsigned)status, 1);
    p = text(p, ", \"cpu\": ");
    p = digits(p, us / 1000000UL, 1);
    *p++ = '.';
    p = digits(p, us % 1000000UL, 6);
    *p++ = '}';
    uint32_t len = (uint32_t)(p - frame - 4);
    for (int i = 0; i < 4; i++) /* little-endian, as frames.py reads it */
        frame[i] = (char)(len >> (8 * i));
    long off = 0;
    while (off < p - frame) {
        long w = sys(__NR_write, monitor, (long)(frame + off), p - frame - off, 0, 0);
        if (w <= 0)
            break;
        off += w;
    }
    return 0;
}

#ifdef OPENLIVE_NOLIBC
__attribute__((used, noreturn)) void start(long *sp) {
    sys(__NR_exit_group, run((int)sp[0], (char **)(sp + 1)), 0, 0, 0, 0);
    for (;;)
        ;
}
#else
int main(int argc, char **argv) {
    return run(argc, argv);
}
#endif
