#!/usr/bin/env bash
# End to end on a temporary copy of the repository with tiny params (the checkout is never edited):
# dvc repro from nothing, dvc plots, a push to a local-directory remote and a pull into a fresh clone
# (the model without training, a clean dvc status), then the EGAT experiment, dvc exp show / metrics
# diff, and ggik compare.
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
for f in metrics/train/metrics.json metrics/train/plots/metrics/val/rec.tsv metrics/train/plots/metrics/minutes.tsv \
         metrics/eval.json metrics/eval_detail.json metrics/eval_samples.parquet metrics/report/losses.md metrics/report/errors.md metrics/report/arms.md \
         metrics/report/box_position.png metrics/report/box_rotation.png metrics/report/loss_curves.png; do
  test -s "$f" || { echo "e2e: missing output $f" >&2; exit 1; }
done
dvc status | grep -q "up to date" || { echo "e2e: pipeline not up to date after repro" >&2; dvc status; exit 1; }
python - <<'PY'
import json, sys
def keys(d): return sum(keys(v) for v in d.values()) if isinstance(d, dict) else 1
n = keys(json.load(open("metrics/eval.json"))) + keys(json.load(open("metrics/train/metrics.json")))
sys.exit(0 if n <= 60 else f"e2e: the metrics files hold {n} keys (at most 60)")
PY
dvc plots show --json > plots.json
python - <<'PY'
import json, sys
plots = json.load(open("plots.json"))["data"]
empty = [name for name in ("loss_rec", "loss_kl", "loss_total", "val_rec_vs_time", "raw_error_vs_time")
         if not plots.get(name) or not plots[name][0]["content"]["data"]["values"]]
sys.exit(f"e2e: dvc plots without data: {empty}" if empty else 0)
PY
rm -rf plots.json dvc_plots
dvc remote add -d store "$work/remote"
dvc push
git add -A && git commit -qm "ci: baseline results"

git clone -q "$work/repo" "$work/clone"
( cd "$work/clone"
  dvc remote list | grep -q store || { echo "e2e: the clone lacks the remote" >&2; exit 1; }
  dvc pull
  test -s data/model/model.pt || { echo "e2e: dvc pull did not bring data/model/model.pt" >&2; exit 1; }
  dvc status | grep -q "up to date" || { echo "e2e: the pulled clone is not up to date" >&2; dvc status; exit 1; }
  dvc repro --dry | grep -q "Running stage" && { echo "e2e: the pulled clone would rerun a stage" >&2; dvc repro --dry; exit 1; }
  echo "e2e: pulled clone has the model and a clean dvc status" )

dvc exp run -S model.layer=egat
dvc exp show --no-pager --md > exp_show.md
grep -q egat exp_show.md || { echo "e2e: the EGAT experiment is missing from dvc exp show" >&2; cat exp_show.md; exit 1; }
python -c "import json,sys; d=json.load(open('metrics/train/metrics.json')); sys.exit(0 if d['layer']=='egat' and d['complete'] else 1)"
dvc metrics diff HEAD --md > metrics_diff.md
grep -q "eval.json" metrics_diff.md || { echo "e2e: dvc metrics diff shows no eval change" >&2; cat metrics_diff.md; exit 1; }
python -m pipeline compare --out compare  # the clone's code, as the stages run it
grep -q "egat/coplanar" compare/compare.md && grep -q "egnn/coplanar" compare/compare.md || { echo "e2e: compare lacks a model" >&2; cat compare/compare.md; exit 1; }
COLUMNS=200 dvc exp show --no-pager --drop '.*' \
  --keep '^(Experiment|overall\.(raw_median_mm|raw_best_mm|refined_success|distinct_per_goal)|val\.rec|minutes|model\.layer)$' > exp_headline.txt
cat exp_headline.txt
python -c "import sys; t = open('exp_headline.txt', encoding='utf-8').read(); sys.exit(0 if '…' not in t and max(map(len, t.splitlines())) <= 200 else 'e2e: the headline view of dvc exp show does not fit 200 columns')"
echo "e2e: dvc repro, plots, remote push/pull, dvc exp run -S model.layer=egat, metrics diff and compare all passed"
