"""`openlive sandbox run FILE.py --input data.csv`: one job through the real pool, results beside the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    boot = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom sandbox.cli import main\n"
    boot += "sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", boot, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_run_prints_the_result_and_saves_figures_and_files(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n1,2\n3,5\n")
    (tmp_path / "job.py").write_text(
        "import csv, matplotlib.pyplot as plt\nrows = list(csv.DictReader(open('data.csv')))\n"
        "plt.plot([int(r['x']) for r in rows], [int(r['y']) for r in rows])\n"
        "open('n.txt', 'w').write(str(len(rows)))\nprint('rows', len(rows))\n"
    )
    done = _cli("run", "job.py", "--input", "data.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OUTCOME_OK in ") and "\nrows 2\n" in done.stdout
    assert (tmp_path / "job-figure-1.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "job-files" / "n.txt").read_text() == "2"


def test_run_reports_a_failure(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("raise SystemExit('no luck')\n")
    done = _cli("run", "bad.py", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == "OUTCOME_FAILED in " + done.stdout.split(" in ")[1].split("\n")[0] + "\nno luck\n"


def test_status_prints_the_health_report(tmp_path: Path) -> None:
    done = _cli("status", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"isolation": "full"' in done.stdout and '"state": "ready"' in done.stdout
