"""The one-line note when the LM kernel compiles (a numba cache miss), and its absence when the
kernel comes from numba's cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ggik_core.solve.compile_note import NOTE

REPO = Path(__file__).resolve().parents[2]
SOLVE = "import numpy as np; from ggik_core.api import Solver; Solver('panda', threads=None).solve(np.array([[0.4, 0.1, 0.5, 0, 1, 0, 0]]), k=4, seed=0)"


def solve_in_a_fresh_process(cache: Path) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GGIK_THREADS": "1"}
    env.pop("NUMBA_DISABLE_JIT", None)
    res = subprocess.run([sys.executable, "-c", SOLVE], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    return res.stderr


def test_the_note_comes_once_on_a_compile_and_not_from_the_cache(tmp_path):
    first = solve_in_a_fresh_process(tmp_path)
    assert first.splitlines().count(NOTE) == 1, first
    assert any(tmp_path.rglob("*.nbi")), "numba wrote no cache index"
    again = solve_in_a_fresh_process(tmp_path)
    assert NOTE not in again, again
