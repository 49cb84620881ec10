"""The Gemini code-execution library set works inside the sandbox (after the uid drop, in the read-only root).

numpy, sympy and matplotlib always; the rest comes with the `sandbox-libs` extra and is skipped without it.
"""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from sandbox import File, Job, LocalPool, Outcome

ALWAYS = ["numpy", "sympy", "matplotlib.pyplot"]
EXTRA = [
    "pandas", "scipy", "sklearn", "seaborn", "PIL", "openpyxl", "docx", "pptx", "reportlab", "tabulate",
    "chess", "mpmath", "attrs", "fpdf", "geopandas", "imageio", "jinja2", "joblib", "jsonschema", "lxml",
    "cv2", "packaging", "google.protobuf", "pylatex", "PyPDF2", "dateutil", "six", "striprtf", "toolz",
    "xlrd",
]  # fmt: skip
INSTALLED_EXTRA = [m for m in EXTRA if importlib.util.find_spec(m.split(".")[0])]
MISSING_EXTRA = sorted(set(EXTRA) - set(INSTALLED_EXTRA))


async def test_core_libraries_are_preloaded(small_pool: LocalPool) -> None:
    code = f"import sys\nprint(all(m in sys.modules for m in {ALWAYS!r}))"
    r = await small_pool.run(Job(code=code))
    assert (r.outcome, r.output) == (Outcome.OK, "True\n")


@pytest.mark.skipif(bool(MISSING_EXTRA), reason=f"the sandbox-libs extra is not installed: {MISSING_EXTRA}")
async def test_the_whole_extra_set_imports_in_a_job(small_pool: LocalPool) -> None:
    code = f"""
        import importlib
        failed = {{}}
        for name in {EXTRA!r}:
            try:
                importlib.import_module(name)
            except Exception as e:
                failed[name] = repr(e)
        print(failed)
        """
    r = await small_pool.run(Job(code=textwrap.dedent(code), deadline_s=120))
    assert (r.outcome, r.output) == (Outcome.OK, "{}\n")


@pytest.mark.skipif(bool({"pandas", "seaborn"} & set(MISSING_EXTRA)), reason="needs the sandbox-libs extra")
async def test_csv_to_dataframe_to_seaborn_figure(small_pool: LocalPool) -> None:
    code = """
        import pandas as pd, seaborn as sns
        df = pd.read_csv('sales.csv')
        sns.barplot(data=df, x='region', y='amount')
        df.groupby('region').amount.sum().to_csv('totals.csv')
        print(df.amount.sum())
        """
    csv = b"region,amount\nnorth,10\nsouth,5\nnorth,7\n"
    job = Job(code=textwrap.dedent(code), files=[File(name="sales.csv", data=csv)], deadline_s=60)
    r = await small_pool.run(job)
    assert (r.outcome, r.output) == (Outcome.OK, "22\n"), r.output
    assert len(r.images) == 1 and r.images[0].startswith(b"\x89PNG")
    assert [(f.name, f.data) for f in r.files] == [("totals.csv", b"region,amount\nnorth,17\nsouth,5\n")]
