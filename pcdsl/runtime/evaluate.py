# ---------------------------------------------------------------------------------------------
# Evaluation: the free phase only (what the trained network computes at inference), no gradients.
#
# For a PCN the free phase is one forward pass; for other energies it is `free_steps` relaxation
# iterations (None: the model's compiled default), the same free phase that training used. A
# generative model (no output) is scored by its reconstruction error: the mean squared error of
# its prediction of the input at the states that relaxed to explain it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import torch

from pcdsl.runtime.estimators import reconstruction_errors
from pcdsl.runtime.generate import explain


def correct_counts(logits: torch.Tensor, label: torch.Tensor, num_classes: int) -> tuple[int, int | None]:
    """(top-1 correct, top-5 correct or None when there are 5 classes or fewer)."""
    top1 = int((logits.argmax(dim=1) == label).sum())
    if num_classes <= 5:
        return top1, None
    top5 = logits.topk(5, dim=1).indices
    return top1, int((top5 == label.unsqueeze(1)).any(dim=1).sum())


@torch.no_grad()
def evaluation_sums(model, split, batch_size: int, *, free_steps: int | None = None,
                    shard: tuple[int, int] | None = None, label_state: str | None = None) -> torch.Tensor:
    """float64 [summed cost, top-1 hits, top-5 hits, examples] over `split` (or this process's
    `shard` of each batch, see Split.batches): sums, so that shards add up. A generative model
    sums reconstruction errors; with `label_state` (generative classification) its hits are
    those of the class with the lowest clamped energy, and the reconstruction that class's."""
    reference = next(model.parameters())
    sums = torch.zeros(4, dtype=torch.float64)
    for x, label in split.batches(batch_size, shuffle=False, shard=shard):
        if not label.shape[0]:
            continue
        x, label = x.to(reference.device, reference.dtype), label.to(reference.device)
        if model.OUTPUT is None:
            states, energies = explain(model, x, free_steps, label_state)
            hits, hits5 = (0, 0) if energies is None else correct_counts(-energies, label, energies.shape[1])
            errors = reconstruction_errors(model, x, states)
            sums += torch.tensor([float(errors.sum()), hits, hits5 or 0, label.shape[0]], dtype=torch.float64)
            continue
        states = model(x, steps=free_steps)
        hits, hits5 = correct_counts(states[model.OUTPUT], label, model.NUM_CLASSES)
        sums += torch.tensor([float(model.cost(states, label).sum()), hits, hits5 or 0, label.shape[0]],
                             dtype=torch.float64)
    return sums


def summarise(sums: torch.Tensor, num_classes: int | None) -> dict:
    """{"loss": mean cost per example, "acc": top-1 fraction, "top5": fraction or None} from
    evaluation_sums (of one process, or added over all). A generative model (num_classes None):
    "loss" is the mean reconstruction error, "acc" and "top5" None."""
    cost, top1, top5, examples = sums.tolist()
    if examples == 0:
        raise ValueError("cannot evaluate on an empty split")
    if num_classes is None:
        return {"loss": cost / examples, "acc": None, "top5": None}
    return {"loss": cost / examples, "acc": top1 / examples, "top5": top5 / examples if num_classes > 5 else None}


def evaluate(model, split, batch_size: int, *, free_steps: int | None = None) -> dict:
    """The free phase's mean cost, top-1 and top-5 accuracy on `split` (summarise)."""
    return summarise(evaluation_sums(model, split, batch_size, free_steps=free_steps), model.NUM_CLASSES)
