"""PCX against pcdsl on PCX's MNIST MLP benchmark, alternated, single-threaded.

The protocol of docs/benchmarks.md: the network 784-128-128-10 (examples/pcx_mlp.pc; PCX's
../shared/bench/pcx_mlp.py), 8 state updates per batch, batch 64, 3 epochs on MNIST. Each round
runs PCX and pcdsl one after the other (the order alternating between rounds), each in its own
process with one thread, and records every epoch's training time (evaluation excluded, as
PCX's script does) and the test accuracy after the last epoch. The steady-state figure is the
median over rounds of epochs 2..N (epoch 1 includes compilation for both).

    python3 -m venv ../pcx-venv && ../pcx-venv/bin/pip install pcx==0.6.3
    python examples/peer_pcx.py --pcx-python ../pcx-venv/bin/python [--rounds 3] [--json out.json]

PCX is a peer to compare with, never a dependency: it runs from its own virtual environment.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def run_pcx(python: str, epochs: int) -> dict:
    env = {**os.environ, **SINGLE_THREAD, "PC_DATA": str(SHARED / "data")}
    done = subprocess.run([python, str(SHARED / "bench" / "pcx_mlp.py"), "--epochs", str(epochs)],
                          env=env, capture_output=True, text=True, check=True)
    found = re.findall(r"epoch (\d+): train ([\d.]+)s, test acc ([\d.]+)%", done.stdout)
    if len(found) != epochs:
        raise RuntimeError(f"unexpected PCX output:\n{done.stdout}\n{done.stderr}")
    return {"epoch_seconds": [float(s) for _, s, _ in found], "test_acc": float(found[-1][2])}


def run_pcdsl(epochs: int, compile_step: bool) -> dict:
    env = {**os.environ, **SINGLE_THREAD}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        command = [sys.executable, "-m", "pcdsl.cli.main", "train", str(HERE / "pcx_mlp.pc"),
                   "--data", str(SHARED / "data" / "mnist"), "--epochs", str(epochs), "--out", str(out),
                   "--compile" if compile_step else "--no-compile"]
        subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"epoch_seconds": [r["train_seconds"] for r in records], "test_acc": 100 * records[-1]["test_acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pcx-python", required=True, help="the python of the venv PCX is installed in")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="time pcdsl's eager step instead")
    parser.add_argument("--json", help="also write every figure here")
    args = parser.parse_args()
    runs = {"pcx": [], "pcdsl": []}
    for round_index in range(args.rounds):
        order = ["pcx", "pcdsl"] if round_index % 2 == 0 else ["pcdsl", "pcx"]
        for name in order:
            result = run_pcx(args.pcx_python, args.epochs) if name == "pcx" else run_pcdsl(args.epochs, not args.no_compile)
            runs[name].append(result)
            print(f"round {round_index + 1} {name}: epochs {['%.2f' % s for s in result['epoch_seconds']]} s, "
                  f"test {result['test_acc']:.2f}%", flush=True)
    summary = {}
    for name, results in runs.items():
        steady = [s for r in results for s in r["epoch_seconds"][1:]]
        summary[name] = {"steady_epoch_s": statistics.median(steady),
                         "test_acc": statistics.median(r["test_acc"] for r in results), "runs": results}
    ratio = summary["pcdsl"]["steady_epoch_s"] / summary["pcx"]["steady_epoch_s"]
    print(f"steady-state epoch (median of epochs 2..{args.epochs} over {args.rounds} rounds): "
          f"PCX {summary['pcx']['steady_epoch_s']:.2f} s, pcdsl {summary['pcdsl']['steady_epoch_s']:.2f} s, "
          f"pcdsl / PCX = {ratio:.2f}; test accuracy PCX {summary['pcx']['test_acc']:.2f}%, "
          f"pcdsl {summary['pcdsl']['test_acc']:.2f}%")
    if args.json:
        Path(args.json).write_text(json.dumps({"ratio": ratio, **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
