#!/usr/bin/env bash
# CI: the README's solver-only install (base dependencies, no extras) in a fresh virtualenv that sees
# nothing of this machine's packages, then `ggik solve` (random and model seeds) and the Python API,
# run from an empty folder so that the installed package, not this checkout, is what runs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap '(rm -rf "$tmp" &)' EXIT  # in the background: deleting the 1.7 GB venv took minutes on a busy disk
start=$SECONDS
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q "torch==2.13.0" "$repo"
installed=$((SECONDS - start))
mkdir "$tmp/run" && cd "$tmp/run"
export PYTHONPATH="" OMP_NUM_THREADS=1
py="$tmp/venv/bin/python"
"$py" -c "import importlib.util as u; extra = [m for m in ('pytest', 'eaik', 'yourdfpy', 'pinocchio', 'coal') if u.find_spec(m)]; assert not extra, extra"
"$tmp/venv/bin/ggik" solve --robot panda --goal "0.4 0.1 0.5 0 1 0 0" -k 8 > random.csv 2> random.err
"$tmp/venv/bin/ggik" solve --robot panda --goal "0.4 0.1 0.5 0 1 0 0" -k 8 --seeds model > model.csv 2> model.err
"$py" - <<'PY'
import csv
from pathlib import Path

import numpy as np

import ggik_core
from ggik_core.api import Solver

assert Path(ggik_core.__file__).resolve().is_relative_to(Path(np.__file__).resolve().parents[1]), ggik_core.__file__
for name in ("random", "model"):
    rows = list(csv.DictReader(open(f"{name}.csv")))
    err = Path(f"{name}.err").read_text()
    assert len(rows) == 8 and any(r["solved"] == "True" for r in rows), (name, rows[:1], err)
    assert "panda: 1/1 goals solved" in err, err
res = Solver("panda", threads=1).solve(np.array([[0.4, 0.1, 0.5, 0, 1, 0, 0]]), k=8, seed=0)
assert res.solved_goals.all(), res
PY
echo "solver-only install: ok (install ${installed} s, all $((SECONDS - start)) s)" >&2
