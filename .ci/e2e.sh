#!/usr/bin/env bash
# End to end on a temporary copy of the repository with tiny params (the checkout is never edited):
# dvc repro from nothing, then the EGAT experiment, dvc exp show / metrics diff, and ggik compare.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$src" "$work/repo"
cd "$work/repo"
git config user.email ci@ggik.invalid
git config user.name "ggik ci"
python3 - <<'PY'
import yaml
params = yaml.safe_load(open("params.yaml"))
for section, values in yaml.safe_load(open(".ci/tiny-params.yaml")).items():
    params[section].update(values)
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
PY
git commit -qam "ci: tiny params"
export OMP_NUM_THREADS=2

dvc repro
for f in metrics/train.json metrics/train_loss.csv metrics/eval.json metrics/eval_samples.parquet \
         metrics/report/losses.md metrics/report/errors.md metrics/report/arms.md \
         metrics/report/box_position.png metrics/report/box_rotation.png metrics/report/loss_curves.png; do
  test -s "$f" || { echo "e2e: missing output $f" >&2; exit 1; }
done
dvc status | grep -q "up to date" || { echo "e2e: pipeline not up to date after repro" >&2; dvc status; exit 1; }
git add -A && git commit -qm "ci: baseline results"

dvc exp run -S model.layer=egat
dvc exp show --no-pager --md > exp_show.md
grep -q egat exp_show.md || { echo "e2e: the EGAT experiment is missing from dvc exp show" >&2; cat exp_show.md; exit 1; }
python -c "import json,sys; d=json.load(open('metrics/train.json')); sys.exit(0 if d['layer']=='egat' and d['complete'] else 1)"
dvc metrics diff HEAD --md > metrics_diff.md
grep -q "eval.json" metrics_diff.md || { echo "e2e: dvc metrics diff shows no eval change" >&2; cat metrics_diff.md; exit 1; }
ggik compare --out compare
grep -q "egat/coplanar" compare/compare.md && grep -q "egnn/coplanar" compare/compare.md || { echo "e2e: compare lacks a model" >&2; cat compare/compare.md; exit 1; }
echo "e2e: dvc repro, dvc exp run -S model.layer=egat, metrics diff and compare all passed"
