"""The training record, kept with DVCLive in ``metrics/train/``: one DVCLive step per epoch.

* ``metrics/train/metrics.json`` (the DVC metrics file, rewritten after every epoch, so
  ``dvc exp show`` shows a running experiment): the last epoch's losses (``train/rec`` ...
  ``val/total``), ``lr``, ``beta``, ``minutes``, the last accuracy probe (``probe/...``),
  ``epochs_done``, ``complete``, ``layer``, ``device``, ``processes`` and DVCLive's ``step``;
* ``metrics/train/plots/metrics/<name>.tsv``: each of those per epoch (``step`` = epoch - 1);
* ``metrics/train/plots/custom/accuracy_time.json``: the accuracy probes
  (:mod:`pipeline.stages.probe`) against training minutes.

Resuming continues DVCLive's step count (``resume=True``) from the checkpoint's epoch. When the
files on disk do not hold exactly the checkpoint's epochs (deleted, or from an interrupted
epoch), they are written afresh from the checkpoint's history instead.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.common.metrics_files import EPOCH_METRICS, LIVE_DIR

#: the accuracy-probe figures kept in the summary (the full rows go to the custom plot)
PROBE_SUMMARY = ("raw_median_mm", "best_of_k_mm")


def logged_epochs(live_dir: Path) -> int:
    """Epochs recorded in DVCLive's files under ``live_dir`` (rows of the validation loss)."""
    tsv = live_dir / "plots" / "metrics" / "val" / "rec.tsv"
    if not tsv.is_file():
        return 0
    with tsv.open(newline="") as f:
        return sum(1 for _ in csv.DictReader(f, delimiter="\t"))


class TrainLog:
    """DVCLive logger of one training run (rank 0 only): :meth:`epoch` after each epoch's
    checkpoint, :meth:`probes` after each accuracy probe."""

    def __init__(self, metrics_dir: Path, history: list[dict], probes: list[dict], info: dict):
        from dvclive import Live

        live_dir = Path(metrics_dir) / LIVE_DIR
        done = len(history)
        resume = done > 0 and logged_epochs(live_dir) == done
        self.live = Live(str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=False)
        self.info = info
        if resume:
            self.live.step = done  # the next epoch's step: DVCLive's count goes on from the checkpoint
        else:  # a fresh record, or the checkpoint's epochs written again
            for row in history:
                self._log_row(row)
                self.live.next_step()
        self.probes(probes)

    def _log_row(self, row: dict) -> None:
        for key, name in EPOCH_METRICS.items():
            self.live.log_metric(name, float(row.get(key, 0.0)))  # rows from before the timing column: 0 minutes

    def _log_info(self, epochs_done: int, complete: bool) -> None:
        for key, value in {**self.info, "epochs_done": epochs_done, "complete": complete}.items():
            self.live.log_metric(key, value, plot=False)

    def probes(self, rows: list[dict]) -> None:
        """The accuracy probes so far (all of them: the custom plot is rewritten)."""
        if not rows:
            return
        self.live.log_plot("accuracy_time", rows, x="minutes", y=list(PROBE_SUMMARY), template="linear",
                           title="raw-sample position error (mm) against training minutes")
        for key in PROBE_SUMMARY:
            self.live.log_metric(f"probe/{key}", float(rows[-1][key]), plot=False)
        self.live.make_summary()

    def epoch(self, row: dict, epochs_done: int, complete: bool) -> None:
        """One finished epoch's history row; the summary is written and the step advanced."""
        self._log_row(row)
        self._log_info(epochs_done, complete)
        self.live.next_step()

    def paused(self, epochs_done: int) -> None:
        """A chunk stopped mid-epoch by ``train.max_minutes``: the summary says the run is not complete."""
        self._log_info(epochs_done, False)
        self.live.make_summary()

    def finish(self, epochs_done: int, complete: bool) -> None:
        """A run with nothing left to train: the summary states it (the step stays that of the last epoch)."""
        self.live.step = max(epochs_done - 1, 0)
        self._log_info(epochs_done, complete)
        self.live.make_summary()

    def close(self) -> None:
        """The end of this run's logging (DVCLive's ``end``: the summary as last written, its step kept)."""
        self.live.end()
