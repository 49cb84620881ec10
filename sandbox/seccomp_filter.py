"""A seccomp filter that removes kernel attack surface a Python job never needs.

Built once in the warm worker with libseccomp (through pyseccomp) and exported as BPF, so confining a
job costs one prctl. Blocked calls fail with EPERM (the model sees a readable PermissionError) instead
of killing the job. Covers what Landlock and the namespaces do not: UDP and raw sockets, new user
namespaces, ptrace, bpf, io_uring, keyrings, mounts.
"""

from __future__ import annotations

import ctypes
import errno
import tempfile

from sandbox import linux

_DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "open_by_handle_at", "name_to_handle_at",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "personality", "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
)  # fmt: skip
_NAMESPACE_FLAGS = (
    linux.CLONE_NEWNS, linux.CLONE_NEWCGROUP, linux.CLONE_NEWUTS, linux.CLONE_NEWIPC,
    linux.CLONE_NEWUSER, linux.CLONE_NEWPID, linux.CLONE_NEWNET, linux.CLONE_NEWTIME,
)  # fmt: skip
_AF_UNIX = 1
_TIOCSTI = 0x5412


def build() -> bytes:
    """The filter as BPF bytes (sock_filter array). Raises ImportError/OSError where libseccomp is missing."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in _DENIED:
        f.add_rule(eperm, name)
    f.add_rule(eperm, "socket", sc.Arg(0, sc.NE, _AF_UNIX))
    for flag in _NAMESPACE_FLAGS:
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags live in memory; glibc falls back to clone
    f.add_rule(eperm, "ioctl", sc.Arg(1, sc.EQ, _TIOCSTI))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load(bpf: bytes) -> None:
    """Attach the filter to the calling thread for good. Requires no_new_privs (or CAP_SYS_ADMIN)."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    linux.prctl(linux.PR_SET_SECCOMP, linux.SECCOMP_MODE_FILTER, ctypes.c_void_p(ctypes.addressof(prog)))
