# ---------------------------------------------------------------------------------------------
# Training curves: a run folder's metrics.jsonl as per-epoch series, labelled by model and
# algorithm from its config.json. Reading only: nothing in a run folder is executed.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# the series a run's metrics hold, in the order the figure and the CSV show them
SERIES = ("train_loss", "test_loss", "train_acc", "test_acc", "test_top5", "lr")


class PlotError(ValueError):
    """A run folder that cannot be plotted; the message is for the user."""


@dataclass
class RunCurves:
    folder: Path
    model: str
    algorithm: str
    generative: bool                 # its losses are reconstruction errors, not costs
    epochs: list[int] = field(default_factory=list)
    series: dict[str, list] = field(default_factory=dict)   # name -> one value (or None) per epoch
    skipped_lines: int = 0           # unreadable lines of metrics.jsonl (a torn last line)

    @property
    def label(self) -> str:
        return f"{self.model} {self.algorithm.upper()} ({self.folder.name})"


def run_curves(folder: Path | str) -> RunCurves:
    folder = Path(folder)
    if not folder.is_dir():
        raise PlotError(f"{folder} is not a run folder (no such folder)")
    metrics = folder / "metrics.jsonl"
    if not metrics.exists():
        raise PlotError(f"{folder} has no metrics.jsonl: not a run folder, or no epoch has finished yet")
    records, skipped = [], 0
    for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1            # a line torn by a crash while it was written
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
        else:
            skipped += 1
    if not records:
        raise PlotError(f"{metrics} holds no completed epoch")
    config = _config(folder)
    described = config.get("model") if isinstance(config.get("model"), dict) else {}
    settings = config.get("config") if isinstance(config.get("config"), dict) else {}
    model = str(described.get("name") or folder.name)
    algorithm = str(records[-1].get("algorithm") or settings.get("algorithm") or "?")
    # a generative model logs no training accuracy (a generative classifier has a test accuracy)
    generative = all(r.get("train_acc") is None for r in records)
    curves = RunCurves(folder, model, algorithm, generative, skipped_lines=skipped)
    by_epoch = {r["epoch"]: r for r in records}        # a resumed run rewrote its file: the last wins
    curves.epochs = sorted(by_epoch)
    curves.series = {name: [_number(by_epoch[e].get(name)) for e in curves.epochs] for name in SERIES}
    return curves


def _config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def curves_csv(runs: list[RunCurves]) -> str:
    """run,model,algorithm,epoch,metric,value: every number behind the figure."""
    lines = ["run,model,algorithm,epoch,metric,value"]
    for run in runs:
        for name in SERIES:
            for epoch, value in zip(run.epochs, run.series[name]):
                if value is not None:
                    lines.append(f"{_csv(str(run.folder))},{_csv(run.model)},{run.algorithm},{epoch},{name},{value!r}")
    return "\n".join(lines) + "\n"


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
