"""What a job sees and gets back, through the executor the server uses, with real processes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sandbox import Executor, File, Job, LocalPool, Outcome


@pytest.fixture(scope="module")
async def executor() -> AsyncIterator[Executor]:
    pool = LocalPool()
    await pool.start()
    yield pool
    await pool.close()


def _mark() -> tuple[str, str]:
    """A process name the job gives itself (inherited by its children), to find its processes from outside."""
    name = "olt" + uuid.uuid4().hex[:10]
    return name, f"import ctypes\nctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n"


def _processes_named(name: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        if comm == name and state not in "ZX":  # a zombie is dead; its reaping is the host init's business
            found.append(int(pid))
    return found


async def test_prints(executor: Executor) -> None:
    r = await executor.run(Job(code="print(1 + 1)"))
    assert (r.outcome, r.output) == (Outcome.OK, "2\n")
    assert r.duration_s > 0


async def test_traceback_without_runner_frames(executor: Executor) -> None:
    r = await executor.run(Job(code="print('before')\n1 / 0\n"))
    assert r.outcome == Outcome.FAILED
    assert r.output.startswith('before\nTraceback (most recent call last):\n  File "<code>", line 2')
    assert "ZeroDivisionError: division by zero" in r.output
    assert "runner.py" not in r.output


async def test_sys_exit_codes(executor: Executor) -> None:
    ok = await executor.run(Job(code="import sys\nprint('x')\nsys.exit(0)"))
    bad = await executor.run(Job(code="import sys\nprint('x')\nsys.exit(3)"))
    assert (ok.outcome, ok.output) == (Outcome.OK, "x\n")
    assert (bad.outcome, bad.output) == (Outcome.FAILED, "x\n")


async def test_figures_come_back_as_png(executor: Executor) -> None:
    code = (
        "import numpy as np, matplotlib.pyplot as plt\n"
        "x = np.linspace(0, 10, 50)\nplt.plot(x, np.sin(x))\nplt.figure()\nplt.bar([1, 2], [3, 4])\n"
    )
    r = await executor.run(Job(code=code))
    assert r.outcome == Outcome.OK, r.output
    assert len(r.images) == 2
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in r.images)


_SAVEFIG_PIXELS = """
import hashlib, io
import numpy as np
from PIL import Image
for num in plt.get_fignums():
    buf = io.BytesIO()
    plt.figure(num).savefig(buf, format="png", dpi=100)
    print(hashlib.sha256(np.asarray(Image.open(buf).convert("RGBA")).tobytes()).hexdigest())
"""


@pytest.mark.parametrize("bbox", ["standard", "tight"])
async def test_figures_are_the_pixels_savefig_draws(executor: Executor, bbox: str) -> None:
    """The runner encodes figures itself; what comes back must match matplotlib's own PNG exactly."""
    code = (
        "import matplotlib.pyplot as plt\n"
        f"plt.rcParams['savefig.bbox'] = {bbox!r}\n"
        "plt.plot([0, 1, 4], [2, -1, 3])\nplt.title('opaque')\n"
        "transparent = plt.figure()\ntransparent.patch.set_alpha(0)\nplt.plot([1, 0], color='red')\n"
        + _SAVEFIG_PIXELS
    )
    r = await executor.run(Job(code=code))
    assert r.outcome == Outcome.OK, r.output
    decoded = [Image.open(io.BytesIO(png)) for png in r.images]
    assert [(image.format, image.mode) for image in decoded] == [("PNG", "RGBA")] * 2
    assert not any("Software" in image.info for image in decoded)  # encoded by the runner, not Pillow
    pixels = [np.asarray(image) for image in decoded]
    assert [hashlib.sha256(p.tobytes()).hexdigest() for p in pixels] == r.output.split()
    sizes = [image.size for image in decoded]
    if bbox == "standard":
        assert sizes == [(640, 480)] * 2
    else:
        assert all(w < 640 and h < 480 for w, h in sizes)
    assert tuple(pixels[0][0, 0]) == (255, 255, 255, 255) and pixels[1][0, 0][3] == 0


async def test_input_and_output_files(executor: Executor) -> None:
    code = (
        "rows = open('data.csv').read().split()\n"
        "open('sum.txt', 'w').write(str(sum(int(x) for x in rows)))\n"
        "print(len(rows))\n"
    )
    job = Job(code=code, files=[File(name="data.csv", data=b"1\n2\n3\n", mime_type="text/csv")])
    r = await executor.run(job)
    assert (r.outcome, r.output) == (Outcome.OK, "3\n")
    assert [(f.name, f.data, f.mime_type) for f in r.files] == [("sum.txt", b"6", "text/plain")]


async def test_written_files_come_back_in_path_order_without_links_or_unchanged_inputs(
    executor: Executor,
) -> None:
    code = (
        "import os\n"
        "os.makedirs('a/b')\n"
        "for name in ('a-b', 'a/b/deep.txt', 'a/z.txt', '.hidden', 'changed.txt'):\n"
        "    open(name, 'w').write(name)\n"
        "os.symlink('a/z.txt', 'link.txt')\n"
        "os.symlink('a', 'linked-dir')\n"
    )
    inputs = [File(name="same.txt", data=b"same"), File(name="changed.txt", data=b"before")]
    r = await executor.run(Job(code=code, files=inputs))
    assert r.outcome == Outcome.OK, r.output
    # Ordered as paths ('a' < 'a-b' part by part), hidden files included, symlinks and their targets'
    # second names left out, inputs only when changed.
    assert [(f.name, f.data) for f in r.files] == [
        (".hidden", b".hidden"),
        ("a/b/deep.txt", b"a/b/deep.txt"),
        ("a/z.txt", b"a/z.txt"),
        ("a-b", b"a-b"),
        ("changed.txt", b"changed.txt"),
    ]


async def test_bad_input_file_name_is_rejected(executor: Executor) -> None:
    r = await executor.run(Job(code="print(1)", files=[File(name="../escape", data=b"")]))
    assert (r.outcome, r.output) == (Outcome.FAILED, "[sandbox] bad input file name '../escape'")


async def test_deadline_keeps_output_so_far(executor: Executor) -> None:
    r = await executor.run(Job(code="import time\nprint('started')\ntime.sleep(60)", deadline_s=1.5))
    assert r.outcome == Outcome.DEADLINE_EXCEEDED
    assert r.output.startswith("started\n")
    assert "deadline of 1.5 s exceeded" in r.output
    assert 1.5 <= r.duration_s < 10


async def test_segfault_is_reported(executor: Executor) -> None:
    r = await executor.run(Job(code="print('hi')\nimport ctypes\nctypes.string_at(0)"))
    assert r.outcome == Outcome.FAILED
    assert r.output.startswith("hi\n")
    assert "SIGSEGV" in r.output


async def test_os_exit_keeps_output(executor: Executor) -> None:
    ok = await executor.run(Job(code="print('a')\nimport os\nos._exit(0)"))
    bad = await executor.run(Job(code="print('a')\nimport os\nos._exit(4)"))
    assert (ok.outcome, ok.output) == (Outcome.OK, "a\n")
    assert bad.outcome == Outcome.FAILED
    assert bad.output.startswith("a\n") and "status 4" in bad.output


async def test_stdout_is_capped_with_a_note(executor: Executor) -> None:
    code = "import sys\nfor _ in range(3000):\n    sys.stdout.write('x' * 1000 + '\\n')"
    r = await executor.run(Job(code=code))
    assert r.outcome == Outcome.OK
    kept, note = r.output[: 1 << 20], r.output[1 << 20 :]
    assert set(kept) <= {"x", "\n"}
    assert "output cut" in note


async def test_host_call_round_trip(executor: Executor) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def host_call(name: str, args: dict[str, Any]) -> Any:
        calls.append((name, args))
        return {"city": args["city"], "temp_c": 21.5}

    code = "w = default_api.get_weather(city='Paris')\nprint(w['city'], w['temp_c'])"
    r = await executor.run(Job(code=code, host_functions=["get_weather"]), host_call)
    assert (r.outcome, r.output) == (Outcome.OK, "Paris 21.5\n")
    assert calls == [("get_weather", {"city": "Paris"})]


async def test_host_call_errors_reach_the_code(executor: Executor) -> None:
    async def host_call(name: str, args: dict[str, Any]) -> Any:
        raise RuntimeError("client said no")

    code = (
        "try:\n    default_api.book(seat=3)\nexcept RuntimeError as e:\n    print('caught', e)\n"
        "try:\n    default_api.undeclared()\nexcept AttributeError as e:\n    print('attr', e)\n"
    )
    r = await executor.run(Job(code=code, host_functions=["book"]), host_call)
    assert r.outcome == Outcome.OK, r.output
    assert "caught default_api.book: client said no" in r.output
    assert "attr default_api has no function 'undeclared' (declared: book)" in r.output


async def test_deadline_counts_while_a_host_call_waits(executor: Executor) -> None:
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def host_call(name: str, args: dict[str, Any]) -> Any:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    code = "print('asking')\ndefault_api.slow()\nprint('never')"
    r = await executor.run(Job(code=code, host_functions=["slow"], deadline_s=1.0), host_call)
    assert r.outcome == Outcome.DEADLINE_EXCEEDED
    assert r.output.startswith("asking\n") and "never" not in r.output
    assert cancelled.is_set()


async def test_cancel_kills_the_tree_and_fails_the_pending_call(executor: Executor) -> None:
    name, mark = _mark()
    called = asyncio.Event()
    outcome: list[str] = []

    async def host_call(fn: str, args: dict[str, Any]) -> Any:
        called.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    code = mark + "import os\nif os.fork() == 0:\n    import time\n    time.sleep(600)\ndefault_api.wait()\n"
    task = asyncio.create_task(executor.run(Job(code=code, host_functions=["wait"]), host_call))
    await asyncio.wait_for(called.wait(), 30)
    assert len(_processes_named(name)) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled"]
    assert _processes_named(name) == []
