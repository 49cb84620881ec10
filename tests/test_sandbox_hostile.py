"""The hostile battery: programs that attack the sandbox, each with its expected outcome.

After every program: the pool still serves a healthy job, no process of the attacker is left (its own
marker name, and no process under a job uid but the ready runners), nothing outside the scratch dir
changed (the "server's" files, the host's /tmp and /dev/shm), and the server's listeners saw nothing.
No program sends traffic to a non-loopback address: they only show that socket() fails first.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox import Job, LocalPool, Outcome, PoolConfig, Result

SECRET_NAME = "OPENLIVE_TEST_SECRET"
REPO = Path(__file__).resolve().parents[1]  # this checkout, wherever it lives


@dataclass
class Battery:
    pool: LocalPool
    server_dir: Path
    port: int
    unix_path: str
    abstract_name: str
    secret: str
    connections: list[str]

    def tokens(self, mark: str) -> dict[str, str]:
        return {
            "MARK": mark,
            "SERVER_DIR": str(self.server_dir),
            "PORT": str(self.port),
            "UNIX_PATH": self.unix_path,
            "ABSTRACT": self.abstract_name,
            "SECRET_NAME": SECRET_NAME,
            "SECRET_HEAD": self.secret[:8],
            "SECRET_TAIL": self.secret[8:],
            "SERVER_PID": str(os.getpid()),
            "WORKER_PID": str(self.pool.status().worker_pid),
            "VENV_PYTHON": sys.executable,
            "REPO_DIR": str(REPO),
        }

    def snapshot(self) -> dict[str, tuple[int, str]]:
        state = {}
        for path in sorted(self.server_dir.rglob("*")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            state[str(path)] = (path.lstat().st_mode, digest)
        return state

    def job_uid_processes(self) -> list[int]:
        base = self.pool.config.uid_base
        assert base is not None
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                uid = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[0])
            except (OSError, IndexError):
                continue
            if base <= uid < base + self.pool.config.runners:
                found.append(int(pid))
        return found


@pytest.fixture(scope="module")
async def battery(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Battery]:
    secret = "s3cr3t-" + uuid.uuid4().hex
    os.environ[SECRET_NAME] = secret  # the server has a secret; no job may ever see it
    server_dir = tmp_path_factory.mktemp("server")
    (server_dir / "server.py").write_text("print('the server')\n")
    careless = server_dir / "careless"
    careless.mkdir()
    careless.chmod(0o777)
    (careless / "data.txt").write_text("precious\n")
    (careless / "data.txt").chmod(0o666)
    connections: list[str] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(repr(writer.get_extra_info("peername")))
        writer.close()

    tcp = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    unix_path = str(server_dir / "server.sock")
    unix = await asyncio.start_unix_server(on_connect, unix_path)
    os.chmod(unix_path, 0o666)
    abstract_name = "openlive-test-" + uuid.uuid4().hex[:8]
    abstract = await asyncio.start_unix_server(on_connect, "\0" + abstract_name)
    # The listeners are reachable from outside a sandbox, so "blocked" below really means blocked.
    for connecting in (
        asyncio.open_connection("127.0.0.1", tcp.sockets[0].getsockname()[1]),
        asyncio.open_unix_connection(unix_path),
        asyncio.open_unix_connection("\0" + abstract_name),
    ):
        reader, writer = await connecting
        assert await reader.read() == b""  # the listener accepted and hung up
        writer.close()
    assert len(connections) == 3
    connections.clear()
    config = PoolConfig(
        slots=2, spare_runners=1, memory_mb=512, processes=16, cpu_s=1, file_size_mb=16,
        scratch_mb=48, tmp_mb=16, shm_mb=16, output_drain_bytes=16 << 20,
    )  # fmt: skip
    pool = LocalPool(config)
    await pool.start()
    try:
        yield Battery(
            pool, server_dir, tcp.sockets[0].getsockname()[1], unix_path, abstract_name, secret, connections
        )
    finally:
        await pool.close()
        for server in (tcp, unix, abstract):
            server.close()
        del os.environ[SECRET_NAME]


def _processes_named(name: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] == name:
            found.append(int(pid))
    return found


def _host_paths_named(mark: str) -> list[str]:
    """Where a job that got out would have written (the job's own /tmp and /dev/shm are private)."""
    candidates = (f"/tmp/{mark}", f"/tmp/{mark}0", f"/dev/shm/{mark}", f"/var/tmp/{mark}", f"/{mark}")
    return [p for p in candidates if os.path.exists(p)]


def _failed_with(*needles: str) -> Callable[[Result], None]:
    def check(r: Result) -> None:
        assert r.outcome == Outcome.FAILED, r.output[-2000:]
        for needle in needles:
            assert needle in r.output, r.output[-2000:]

    return check


def _ok_printing(pattern: str) -> Callable[[Result], None]:
    def check(r: Result) -> None:
        assert r.outcome == Outcome.OK, r.output[-2000:]
        assert re.search(pattern, r.output), r.output[-2000:]

    return check


def _deadline(prefix: str = "") -> Callable[[Result], None]:
    def deadline_check(r: Result) -> None:
        assert r.outcome == Outcome.DEADLINE_EXCEEDED, r.output[-2000:]
        assert r.output.startswith(prefix) and "deadline of 3 s exceeded" in r.output

    return deadline_check


def _sigsegv(r: Result) -> None:
    assert r.outcome == Outcome.FAILED and "SIGSEGV" in r.output, r.output


def _stdout_flood(r: Result) -> None:
    assert r.outcome == Outcome.FAILED, r.output[-2000:]
    assert "output cut" in r.output and "BrokenPipeError" in r.output
    assert len(r.output) < 3 << 20 and r.duration_s < 10


def _forged_report(r: Result) -> None:
    assert (r.outcome, r.images, r.files) == (Outcome.OK, [], [])  # no fake PNG, no path outside


def _exit_with_figure(r: Result) -> None:
    assert r.outcome == Outcome.FAILED and r.output == "before exit\n", r.output
    assert len(r.images) == 1 and r.images[0].startswith(b"\x89PNG")


LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def _attempts(setup: str, attempts: str) -> str:
    """A program that tries each expression of `attempts` (one per line) and prints how it went."""
    lines = [f"    lambda: {a.strip()}," for a in attempts.strip().splitlines()]
    loop = (
        "]:\n    try:\n        print('DONE', attempt())\n    except OSError as e:\n        print(e.errno)\n"
    )
    return setup + "for attempt in [\n" + "\n".join(lines) + "\n" + loop


CASES: dict[str, tuple[str, Callable[[Result], None]]] = {
    "fork_bomb": (
        """
        import os
        while True:
            os.fork()
        """,
        _failed_with("BlockingIOError", "process/thread limit"),
    ),
    "fork_bomb_ignoring_errors": (
        """
        import os
        print('bombing')
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        _deadline("bombing\n"),
    ),
    "thread_bomb": (
        """
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(60,)).start()
        """,
        _failed_with("can't start new thread", "process/thread limit"),
    ),
    "memory_one_allocation": ("x = bytearray(8 << 30)", _failed_with("MemoryError", "memory limit")),
    "memory_gradual_growth": (
        """
        chunks = []
        while True:
            chunks.append(b'x' * (32 << 20))
        """,
        _failed_with("MemoryError", "memory limit"),
    ),
    "memory_many_children": (  # each child under the per-process limit; the process limit caps their number
        """
        import os, time
        r, w = os.pipe()
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    b = bytearray(64 << 20)
                    b[::4096] = b'x' * len(b[::4096])
                    os.write(w, b'+')
                    time.sleep(60)
                os.read(r, 1)
                n += 1
        finally:
            print('children', n)
        """,
        _failed_with("children 15\n", "process/thread limit"),
    ),
    "cpu_burn": ("while True:\n    pass", _failed_with("CPU time limit")),
    "cpu_burn_ignoring_signals": (
        """
        import signal
        for s in (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        while True:
            pass
        """,
        _failed_with("CPU time limit"),
    ),
    "sleep_forever": (
        """
        import time
        print('waiting')
        while True:
            time.sleep(1)
        """,
        _deadline("waiting\n"),
    ),
    "stdout_gigabyte": (
        """
        import sys
        line = 'x' * 1023 + '\\n'
        for _ in range(1 << 20):
            sys.stdout.write(line)
        """,
        _stdout_flood,
    ),
    "file_10_gb": (
        """
        chunk = b'0' * (1 << 20)
        with open('big', 'wb') as f:
            for _ in range(10240):
                f.write(chunk)
        """,
        _failed_with("File too large", "file size limit"),
    ),
    "many_files": (
        """
        for i in range(100):
            open(f'f{i}', 'wb').write(b'0' * (8 << 20))
        """,
        _failed_with("No space left on device", "disk full"),
    ),
    "fill_tmp_and_shm": (
        """
        for d in ('/tmp', '/dev/shm'):
            try:
                for i in range(100):
                    open(f'{d}/MARK{i}', 'wb').write(b'0' * (4 << 20))
            except OSError as e:
                print(d, e.errno)
        """,
        _ok_printing(r"^/tmp 28\n/dev/shm 28\n$"),
    ),
    "tcp_to_server_port": (
        _attempts("import socket\n", "socket.create_connection(('127.0.0.1', PORT), timeout=2)"),
        _ok_printing(r"^1\n$"),
    ),
    "outside_address_sockets": (  # socket() itself fails: nothing can leave
        _attempts(
            "import socket\n",
            """
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
            """,
        ),
        _ok_printing(r"^(1\n){5}$"),
    ),
    "secrets_in_environment_and_proc": (
        """
        import glob, os
        secret = 'SECRET_HEAD' + 'SECRET_TAIL'
        found = []
        if 'SECRET_NAME' in os.environ or any(secret in v for v in os.environ.values()):
            found.append('environ')
        for path in [*glob.glob('/proc/*/environ'), '/proc/1/environ', '/proc/self/environ']:
            try:
                if secret.encode() in open(path, 'rb').read():
                    found.append(path)
            except OSError:
                pass
        for line in open('/proc/self/maps'):
            if '[stack]' in line:
                lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
                try:
                    with open('/proc/self/mem', 'rb') as m:
                        m.seek(lo)
                        if secret.encode() in m.read(hi - lo):
                            found.append('stack')
                except OSError as e:
                    print('mem', e.errno)
        print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
        print('found', found)
        """,
        _ok_printing(r"^mem 13\npids \[2\]\nfound \[\]\n$"),
    ),
    "read_etc_shadow": ("print(open('/etc/shadow').read())", _failed_with("FileNotFoundError")),
    "write_outside_scratch": (
        _attempts(
            "import os\n",
            """
            open('/tmp/MARK', 'w').write('x')
            open('/dev/shm/MARK', 'w').write('x')
            open('/var/tmp/MARK', 'w').write('x')
            open('SERVER_DIR/MARK', 'w').write('x')
            open('SERVER_DIR/careless/MARK', 'w').write('x')
            open('/etc/MARK', 'w').write('x')
            open('/usr/MARK', 'w').write('x')
            open('/MARK', 'w').write('x')
            open('/root/MARK', 'w').write('x')
            open('REPO_DIR/MARK', 'w').write('x')
            open(os.path.dirname('VENV_PYTHON') + '/MARK', 'w').write('x')
            open('/proc/sys/kernel/hostname', 'w').write('x')
            """,
        ),
        _ok_printing(r"^DONE 1\nDONE 1\n((2|13|30)\n){10}$"),  # /tmp and /dev/shm are the job's own
    ),
    "delete_server_files": (
        _attempts(
            "import os, shutil\n",
            """
            os.remove('SERVER_DIR/server.py')
            os.remove('SERVER_DIR/careless/data.txt')
            os.remove('/usr/bin/env')
            os.remove('VENV_PYTHON')
            os.remove('/etc/hosts')
            os.rename('/usr/bin/env', '/usr/bin/x')
            os.rmdir('/usr/bin')
            shutil.rmtree('/usr/bin')
            """,
        ),
        _ok_printing(r"^((2|13|30|39)\n){8}$"),
    ),
    "kill_parent_and_server": (
        _attempts(
            "import os\n",
            """
            os.kill(os.getppid(), 9)
            os.kill(1, 9)
            os.kill(SERVER_PID, 9)
            os.kill(WORKER_PID, 9)
            """,
        ),
        _ok_printing(r"^1\n1\n3\n3\n$"),  # EPERM for its init, ESRCH for what it cannot even see
    ),
    "kill_everything": (
        _attempts("import os\n", "os.kill(-1, 9)") + "print('alive')\n",
        _ok_printing(r"^3\nalive\n$"),
    ),
    "setsid_double_fork_escape": (
        """
        import os, time
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(w, b'x')
                time.sleep(600)
            os._exit(0)
        os.read(r, 1)
        print('left a daemon')
        """,
        _ok_printing(r"^left a daemon\n$"),
    ),
    "ctypes_segfault": ("import ctypes\nctypes.string_at(0)", _sigsegv),
    "os_exit": ("import os\nprint('bye')\nos._exit(0)", _ok_printing(r"^bye\n$")),
    "sys_exit_after_figure": (
        """
        import sys, matplotlib.pyplot as plt
        print('before exit')
        plt.plot([1, 2])
        sys.exit(3)
        """,
        _exit_with_figure,
    ),
    "namespaces_and_kernel_surface": (  # x86_64 syscall numbers
        LIBC
        + textwrap.dedent("""
        calls = {
            'unshare(NEWUSER)': (272, 0x10000000), 'unshare(NEWNS)': (272, 0x20000),
            'setns': (308, 0, 0), 'ptrace(TRACEME)': (101, 0, 0, 0, 0),
            'mount': (165, b'none', b'/tmp', b'tmpfs', 0, None), 'pivot_root': (155, b'/', b'/'),
            'chroot': (161, b'/tmp'), 'bpf': (321, 0, None, 0), 'userfaultfd': (323, 0),
            'io_uring_setup': (425, 1, None), 'keyctl': (250, 0, 0),
            'perf_event_open': (298, None, 0, -1, -1, 0),
        }
        for name, args in calls.items():
            print(name, libc.syscall(*args), ctypes.get_errno())
        """),
        _ok_printing(r"^([\w()]+ -1 1\n){12}$"),
    ),
    "privilege_escalation": (
        _attempts("import os\n", "os.setuid(0)\nos.setgid(0)\nos.chown('.', 0, 0)"),
        _ok_printing(r"^1\n1\n1\n$"),
    ),
    "server_unix_socket": (
        _attempts("import socket\n", "socket.socket(socket.AF_UNIX).connect('UNIX_PATH')"),
        _ok_printing(r"^2\n$"),  # the path does not exist in the job's file system
    ),
    "server_abstract_socket": (
        _attempts("import socket\n", "socket.socket(socket.AF_UNIX).connect('\\0ABSTRACT')"),
        _ok_printing(r"^111\n$"),  # another network namespace: the name does not exist there
    ),
    "hidden_paths": (
        """
        import os
        print([p for p in ('SERVER_DIR', 'REPO_DIR/sandbox', '/home', '/var', '/run', '/sys', '/mnt',
                           '/etc/shadow', '/root/.bash_history', '/proc/1/environ') if os.path.exists(p)])
        print(os.listdir('/.old'))  # where pivot_root put the host's root: detached, empty
        """,
        _ok_printing(r"^\[\]\n\[\]\n$"),
    ),
    "forged_oversized_frame": (  # the job writes to the channel itself
        """
        import os, struct, time
        print('forging')
        os.write(3, struct.pack('<I', 1 << 31))
        time.sleep(60)
        """,
        _failed_with("forging\n", "broken job channel: header of 2147483648 bytes"),
    ),
    "forged_report": (
        """
        import json, os, struct, time
        blobs = [b'not a png', b'x']
        report = {'t': 'done', 'exit': 0, 'limit': None, 'images': 1, 'files': ['../../etc/passwd'],
                  '_blobs': [len(b) for b in blobs]}
        header = json.dumps(report).encode()
        os.write(3, struct.pack('<I', len(header)) + header + b''.join(blobs))
        time.sleep(60)
        """,
        _forged_report,
    ),
    "open_files_exhaustion": (
        "files = [open('/dev/null') for _ in range(100000)]",
        _failed_with("Too many open files", "open file limit"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_hostile_program(battery: Battery, name: str) -> None:
    code, check = CASES[name]
    code = textwrap.dedent(code).strip() + "\n"
    mark = "olh" + uuid.uuid4().hex[:10]
    tokens = battery.tokens(mark)
    for token, value in tokens.items():
        code = code.replace(token, value)
    before = battery.snapshot()
    worker_pid = battery.pool.status().worker_pid
    preamble = f"import ctypes\nctypes.CDLL(None).prctl(15, b'{mark}', 0, 0, 0)\n"
    # Programs that must hit the deadline get a short one; the rest end on their own, a busy machine or not.
    deadline = 3.0 if check.__name__ == "deadline_check" else 20.0

    result = await battery.pool.run(Job(code=preamble + code, deadline_s=deadline))

    check(result)
    await asyncio.wait_for(battery.pool.wait_idle(), 30)
    assert _processes_named(mark) == []
    assert len(battery.job_uid_processes()) == battery.pool.config.runners  # just the ready runners
    assert battery.snapshot() == before
    assert _host_paths_named(mark) == []
    assert battery.connections == []
    healthy = await battery.pool.run(Job(code="print(1 + 1)"))
    assert (healthy.outcome, healthy.output) == (Outcome.OK, "2\n")
    status = battery.pool.status()
    assert (status.worker_pid, status.worker_restarts, status.state) == (worker_pid, 0, "ready")


async def test_no_state_leaks_to_the_next_job(battery: Battery) -> None:
    plant = """
        import builtins, json, os, sys
        import matplotlib.pyplot as plt
        for p in ('leak.txt', '/tmp/leak', '/dev/shm/leak'):
            open(p, 'w').write('x')
        os.environ['LEAK'] = '1'
        json.LEAK = builtins.LEAK = 1
        sys.modules['leak'] = json
        plt.figure()
        print('planted')
        """
    probe = """
        import builtins, json, os, sys
        import matplotlib.pyplot as plt
        print([p for p in ('leak.txt', '/tmp/leak', '/dev/shm/leak') if os.path.exists(p)], os.listdir('.'),
              'LEAK' in os.environ, hasattr(json, 'LEAK'), hasattr(builtins, 'LEAK'), 'leak' in sys.modules,
              plt.get_fignums())
        """
    planted = await battery.pool.run(Job(code=textwrap.dedent(plant)))
    assert planted.output == "planted\n" and len(planted.images) == 1
    for _ in range(battery.pool.config.runners):  # whichever runner comes next, it starts clean
        r = await battery.pool.run(Job(code=textwrap.dedent(probe)))
        assert (r.outcome, r.output) == (Outcome.OK, "[] [] False False False False []\n")


async def test_random_state_differs_between_jobs(battery: Battery) -> None:
    code = """
        import random
        import numpy as np
        print(random.random(), np.random.rand(), np.random.default_rng().random())
        """
    code = textwrap.dedent(code)
    outputs = [(await battery.pool.run(Job(code=code))).output for _ in range(4)]
    draws = [line.split() for line in outputs]
    for column in range(3):
        assert len({d[column] for d in draws}) == 4, outputs


async def test_concurrent_jobs_cannot_reach_each_other(battery: Battery) -> None:
    """All jobs share the worker's network namespace; Landlock scoping keeps their abstract sockets apart."""
    name = "openlive-job-" + uuid.uuid4().hex[:8]
    listener = f"""
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.bind('\\0{name}')
        s.listen()
        default_api.listening()
        print('done')
        """
    prober = _attempts("import socket\n", f"socket.socket(socket.AF_UNIX).connect('\\0{name}')")
    probes: list[Result] = []

    async def host_call(fn: str, args: dict[str, object]) -> None:
        probes.append(await battery.pool.run(Job(code=prober)))  # runs while the listener is listening

    r = await battery.pool.run(Job(code=textwrap.dedent(listener), host_functions=["listening"]), host_call)
    assert (r.outcome, r.output) == (Outcome.OK, "done\n")
    assert [(p.outcome, p.output) for p in probes] == [(Outcome.OK, "1\n")]
