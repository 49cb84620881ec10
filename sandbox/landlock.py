"""Landlock: an unprivileged, per-job policy the job cannot undo.

Read-only everywhere except the given writable paths; no TCP bind/connect; and (ABI >= 6) no abstract
unix sockets or signals across the job's domain, which closes the channel between concurrent jobs that
share the worker's one network namespace.
"""

from __future__ import annotations

import ctypes
import os

from sandbox import linux
from sandbox.plan import LandlockRules

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

_READ = (1 << 0) | (1 << 2) | (1 << 3)  # EXECUTE | READ_FILE | READ_DIR
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # REFER (2), TRUNCATE (3), IOCTL_DEV (5)
_FILE_ONLY = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)  # rights that apply to a non-directory
_NET_TCP = (1 << 0) | (1 << 1)  # BIND_TCP | CONNECT_TCP, ABI >= 4
_SCOPE_ALL = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET | SIGNAL, ABI >= 6


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64))


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def abi_version() -> int:
    """0 when the kernel has no Landlock (or it is disabled)."""
    try:
        return linux.syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except OSError:
        return 0


def rules(abi: int, writable: list[str]) -> LandlockRules:
    """Read-only everywhere, everything under `writable`; no TCP (ABI >= 4); scoped (ABI >= 6)."""
    fs_all = (1 << _FS_BITS_BY_ABI[min(abi, 5)]) - 1
    return LandlockRules(
        fs=fs_all,
        net=_NET_TCP if abi >= 4 else 0,
        scoped=_SCOPE_ALL if abi >= 6 else 0,
        attr_size=ctypes.sizeof(_RulesetAttr) if abi >= 6 else 16,  # older kernels reject `scoped`
        file_only=_FILE_ONLY,
        rules=(("/", _READ), *((p, fs_all) for p in writable)),
    )


def restrict(ruleset_rules: LandlockRules) -> None:
    """The Python path of a plan's Landlock rules (native/spawn.c does the same): confine the calling
    thread (and its future children) for good. Requires no_new_privs."""
    r = ruleset_rules
    attr = _RulesetAttr(r.fs, r.net, r.scoped)
    ruleset = linux.syscall(_CREATE_RULESET, ctypes.c_void_p(ctypes.addressof(attr)), r.attr_size, 0)
    try:
        for path, allowed in r.rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                if not os.path.isdir(path):
                    allowed &= r.file_only
                rule = _PathBeneath(allowed & r.fs, fd)
                linux.syscall(
                    _ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.c_void_p(ctypes.addressof(rule)), 0
                )
            finally:
                os.close(fd)
        linux.syscall(_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
