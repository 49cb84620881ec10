"""Each isolation layer alone stops its attack, and the pool refuses to run without one unless told to.

A pool here keeps a single layer (allow_weak_isolation): that also runs the weak-mode fallbacks (no PID
namespace: the monitor reaps as a subreaper; no mount namespace: a scratch dir on the host).
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import uuid
from collections.abc import AsyncIterator

import pytest

from sandbox import LAYERS, Job, Layer, LocalPool, Outcome, PoolConfig, SandboxUnavailable

LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def _attempt(expr: str) -> str:
    return f"try:\n    print('DONE', {expr})\nexcept OSError as e:\n    print(e.errno)\n"


DAEMON = """
    import ctypes, os, time
    ctypes.CDLL(None).prctl(15, b'MARK', 0, 0, 0)
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, b'x')
            time.sleep(600)
        os._exit(0)
    os.read(r, 1)
    """

# What each layer must stop on its own: code, and the output it must print.
ALONE: dict[Layer, list[tuple[str, str]]] = {
    "netns": [
        ("import socket\n" + _attempt("socket.create_connection(('127.0.0.1', PORT))"), "101\n"),
        ("import socket\n" + _attempt("socket.socket(socket.AF_UNIX).connect('\\0ABSTRACT')"), "111\n"),
    ],
    "seccomp": [
        ("import socket\n" + _attempt("socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"), "1\n"),
        (LIBC + "print(libc.unshare(0x10000000), ctypes.get_errno())", "-1 1\n"),  # a new user namespace
    ],
    "landlock": [
        ("import socket\n" + _attempt("socket.create_connection(('127.0.0.1', PORT))"), "13\n"),
        (_attempt("open('SERVER_DIR/MARK', 'w')"), "13\n"),
        ("import socket\n" + _attempt("socket.socket(socket.AF_UNIX).connect('\\0ABSTRACT')"), "1\n"),
    ],
    "mountns": [
        ("import os\nprint(os.path.exists('SERVER_DIR'), os.getcwd())", "False /scratch\n"),
        ("open('/tmp/MARK', 'w').write('x')\nprint('ok')", "ok\n"),  # private: the host's /tmp stays clean
    ],
    "pidns": [("import os\nprint(os.getpid(), os.getppid())", "2 1\n")],
    "uid": [
        (_attempt("open('/etc/shadow').read()"), "13\n"),
        ("import os\nprint(os.getuid() >= UID_BASE, os.getgroups())", "True []\n"),
    ],
}


@pytest.fixture(scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, str]]:
    server_dir = tmp_path_factory.mktemp("server")
    server_dir.chmod(0o777)
    abstract = "openlive-layers-" + uuid.uuid4().hex[:8]

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    tcp = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    unix = await asyncio.start_unix_server(on_connect, "\0" + abstract)
    yield {"PORT": str(tcp.sockets[0].getsockname()[1]), "ABSTRACT": abstract, "SERVER_DIR": str(server_dir)}
    tcp.close()
    unix.close()


def _existing(*paths: str) -> list[str]:
    return [p for p in paths if os.path.exists(p)]


def _processes_named(name: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == name:
                    found.append(int(pid))
        except OSError:
            continue
    return found


async def test_refuses_to_start_without_every_layer() -> None:
    pool = LocalPool(PoolConfig(skip_layers=frozenset({"seccomp"}), slots=1, spare_runners=0))
    with pytest.raises(SandboxUnavailable, match=r"seccomp.*allow_weak_isolation"):
        await pool.start()
    assert pool.status().state == "closed"


@pytest.mark.parametrize("layer", LAYERS)
async def test_layer_alone(layer: Layer, target: dict[str, str]) -> None:
    others = frozenset(LAYERS) - {layer}
    config = PoolConfig(slots=1, spare_runners=0, skip_layers=others, allow_weak_isolation=True)
    pool = LocalPool(config)
    await pool.start()
    try:
        status = pool.status()
        assert status.isolation == "weak"
        assert {name for name, s in status.layers.items() if s.ok} == {layer}
        mark = "oll" + uuid.uuid4().hex[:10]
        tokens = {**target, "MARK": mark, "UID_BASE": str(pool.config.uid_base)}
        for code, expected in [*ALONE[layer], (textwrap.dedent(DAEMON), "")]:
            for token, value in tokens.items():
                code = code.replace(token, value)
            r = await pool.run(Job(code=code, deadline_s=10))
            assert (r.outcome, r.output) == (Outcome.OK, expected), code
        await asyncio.wait_for(pool.wait_idle(), 30)
        assert _processes_named(mark) == []  # the daemon died with its job, with or without a PID namespace
        assert _existing(f"/tmp/{mark}", f"{target['SERVER_DIR']}/{mark}") == []
    finally:
        await pool.close()
