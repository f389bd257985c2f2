"""Started by torchrun in tests/distributed: one `pcdsl.train` run of a catalogue model on the
digits, each process then saving ITS final weights as RANKDIR/rank<R>.pt (rank 0's alone reach
the run folder, so this is how a test sees that every rank holds the same weights).

    python -m torch.distributed.run --standalone --nproc-per-node 2 THIS MODEL OUT RANKDIR [KEY=VALUE...]

PCDSL_TEST_LIMIT=N limits both splits to N examples; PCDSL_TEST_RANK1_SET=KEY=VALUE gives rank 1
one more --set item than the others.
"""
import os
import sys
from pathlib import Path

import torch

import pcdsl.runtime.trainer as trainer
from pcdsl.data import load_data_for
from pcdsl.pipeline import compile_file


def main(model: str, out: str, rank_dir: str, *sets: str) -> None:
    if os.environ.get("RANK") == "1" and os.environ.get("PCDSL_TEST_RANK1_SET"):
        sets = (*sets, os.environ["PCDSL_TEST_RANK1_SET"])     # a process started unlike the others
    built = []
    build = trainer.build_model
    trainer.build_model = lambda model_class, config: built.append(build(model_class, config)) or built[-1]
    compiled = compile_file(model, list(sets))
    config = compiled.ir.train
    limit = int(os.environ.get("PCDSL_TEST_LIMIT", "0")) or None
    data = load_data_for("digits", (64,), config, augment=True, limit_train=limit, limit_test=limit)
    trainer.train(compiled.source, compiled.text, Path(compiled.file).name, config, data, Path(out),
                  data_spec="digits", sets=list(sets), log=lambda message: print(message, file=sys.stderr))
    rank = int(os.environ.get("RANK", "0"))
    torch.save(built[0].state_dict(), Path(rank_dir) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])
