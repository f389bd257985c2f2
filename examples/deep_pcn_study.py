"""The deep-PCN study after Qi et al. 2025 (arXiv 2506.23800): one MLP predictive coding network
at several depths, trained on Fashion-MNIST by predictive-coding inference learning (plain, with
spiking or decaying precision, with the forward update, with both), by EP and by backprop, all
from the same model file. Writes a table (study.md, study.json) and a plot of test accuracy
against depth (study.png, when matplotlib is installed) into --out.

    python examples/deep_pcn_study.py --data ../shared/data/fashion-mnist --out runs/deep_study

Each run is an ordinary `pcdsl train` run in --out/<depth>-<variant>; a run already finished
there is read, not repeated, so an interrupted study continues where it stopped (an unfinished
run is resumed; a run that failed is not retried). The table and plot cover every run in --out,
so that a second invocation with other --lrs or --variants adds to them."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# variant -> (algorithm, --set items); the PC variants sweep as many times as there are layers,
# so that the spiking wavefront reaches the first layer on the last sweep
VARIANTS = {
    "PC-IL": ("pcil", []),
    "PC-IL spiking": ("pcil", ["inference_precision=spiking"]),
    "PC-IL decaying": ("pcil", ["inference_precision=decaying"]),
    "PC-IL forward update": ("pcil", ["weight_update=forward"]),
    "PC-IL spiking + forward": ("pcil", ["inference_precision=spiking", "weight_update=forward"]),
    "EP": ("ep", []),
    "BP": ("bp", []),
}


def model_text(depth: int, width: int) -> str:
    """An MLP PCN of `depth` weight layers (depth - 1 hidden states and the output)."""
    hidden = [f"  state  h{k} : [{width}] ~ hidden({'x' if k == 1 else f'h{k - 1}'}, {width})"
              for k in range(1, depth)]
    return "\n".join([
        f"# a {depth}-layer MLP predictive coding network for the deep-PCN study (examples/deep_pcn_study.py)",
        f"model deep{depth} {{",
        "  input  x  : [784]",
        "  label  y  : [10]",
        "",
        "  def hidden(src, n) = tanh(dense(src, n) + bias)",
        "",
        *hidden,
        f"  output o  : [10] ~ dense(h{depth - 1}, 10) + bias",
        "",
        "  cost cross_entropy(o, y)",
        "}",
        "",
        "train {",
        f"  pcil(steps={depth}, update=pgd)",
        "  sgd(lr=0.01, momentum=0.9)",
        "  cosine(min_lr=0.0001)",
        "  init(gain=1.7)",
        "  normalize(mean=[0.2860], std=[0.3530])",
        "  batch 64",
        "  epochs 2",
        "}",
        ""])


def _folder(out: Path, depth: int, variant: str, lr: float) -> Path:
    return out / f"{depth}-{variant.replace(' + ', '+').replace(' ', '_')}-lr{lr:g}"


def run(model: Path, variant: str, depth: int, data: str, out: Path, epochs: int, lr: float,
        limit: int | None) -> dict:
    algorithm, sets = VARIANTS[variant]
    folder = _folder(out, depth, variant, lr)
    metrics = folder / "metrics.jsonl"
    done = _epochs(metrics)
    if len(done) < epochs and not (folder / "diverged").exists():
        command = [sys.executable, "-m", "pcdsl", "train", str(model), "--data", data, "--algorithm", algorithm,
                   "--epochs", str(epochs), "--out", str(folder)]
        if algorithm == "ep":
            sets = sets + [f"steps={depth}", "update=modpgd"]
        command += [item for s in sets + [f"lr={lr}"] for item in ("--set", s)]
        if limit:
            command += ["--limit", str(limit)]
        if done or (folder / "checkpoints" / "last.pt").exists():
            command.append("--resume")
        print(" ".join(command), flush=True)
        with open(out / "study.log", "a") as log:
            finished = subprocess.run(command, check=False, stdout=log, stderr=subprocess.STDOUT)
        done = _epochs(metrics)
        if finished.returncode != 0 and folder.exists():
            (folder / "diverged").write_text(f"status {finished.returncode}: see study.log\n")   # not retried
    return _summary(folder, depth, variant, lr)


def _summary(folder: Path, depth: int, variant: str, lr: float) -> dict:
    done = _epochs(folder / "metrics.jsonl")
    last = done[-1] if done else {}
    return {"depth": depth, "variant": variant, "lr": lr, "epochs": len(done),
            "test_acc": last.get("test_acc"), "best_test_acc": max((e.get("test_acc", 0) for e in done), default=None),
            "seconds": sum(e.get("train_seconds", 0) for e in done), "diverged": (folder / "diverged").exists()}


def collect(out: Path, depths: list[int]) -> list[dict]:
    """Every run of the study in `out`, this invocation's or an earlier one's (other learning
    rates, other variants)."""
    results = []
    for depth in depths:
        for variant in VARIANTS:
            prefix = _folder(out, depth, variant, 1.0).name.rsplit("-lr", 1)[0] + "-lr"
            for folder in sorted(out.glob(f"{prefix}*")):
                results.append(_summary(folder, depth, variant, float(folder.name[len(prefix):])))
    return results


def _epochs(metrics: Path) -> list[dict]:
    if not metrics.exists():
        return []
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [row for row in rows if "test_acc" in row]


def write_report(results: list[dict], depths: list[int], out: Path) -> None:
    (out / "study.json").write_text(json.dumps(results, indent=2))
    # per (depth, variant) the learning rate with the best final test accuracy
    by: dict = {}
    for r in results:
        key = (r["depth"], r["variant"])
        if r["test_acc"] is not None and (key not in by or r["test_acc"] > by[key]["test_acc"]):
            by[key] = r
    lines = ["| variant | " + " | ".join(f"{d} layers" for d in depths) + " |",
             "|---|" + "---|" * len(depths)]
    for variant in VARIANTS:
        cells = []
        for depth in depths:
            r = by.get((depth, variant))
            cells.append("—" if not r else f"{100 * r['test_acc']:.2f} % (lr {r['lr']:g})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    (out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for variant in VARIANTS:
        points = [(d, 100 * by[(d, variant)]["test_acc"]) for d in depths
                  if (d, variant) in by and by[(d, variant)]["test_acc"] is not None]
        if points:
            axes.plot(*zip(*points), marker="o", label=variant)
    axes.set_xlabel("layers")
    axes.set_ylabel("test accuracy (%)")
    axes.set_xticks(depths)
    axes.set_title("Fashion-MNIST, MLP PCN (best learning rate per point)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "study.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the Fashion-MNIST folder (idx files)")
    parser.add_argument("--out", type=Path, default=Path("runs/deep_study"))
    parser.add_argument("--depths", default="3,6,10,15")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: "
                        + ", ".join(VARIANTS))
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lrs", default="0.01,0.03", help="learning rates tried for every variant (the table "
                        "shows the best by final test accuracy)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each with one thread)")
    parser.add_argument("--limit", type=int, help="train and test examples (a quick run)")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1" if args.jobs > 1 else os.environ.get("OMP_NUM_THREADS", "2"))
    jobs = []
    for depth in depths:
        model = args.out / f"deep{depth}.pc"
        model.write_text(model_text(depth, args.width))
        jobs += [(model, variant, depth, float(lr)) for variant in variants for lr in args.lrs.split(",")]
    with ThreadPoolExecutor(args.jobs) as pool:
        for _ in pool.map(lambda job: run(job[0], job[1], job[2], args.data, args.out, args.epochs, job[3],
                                          args.limit), jobs):
            write_report(collect(args.out, depths), depths, args.out)


if __name__ == "__main__":
    main()
