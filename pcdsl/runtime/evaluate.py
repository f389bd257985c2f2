# ---------------------------------------------------------------------------------------------
# Evaluation: the free phase only (what the trained network computes at inference), no gradients.
#
# For a PCN the free phase is one forward pass; for other energies it is `free_steps` relaxation
# iterations (None: the model's compiled default), the same free phase that training used.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import torch


def correct_counts(logits: torch.Tensor, label: torch.Tensor, num_classes: int) -> tuple[int, int | None]:
    """(top-1 correct, top-5 correct or None when there are 5 classes or fewer)."""
    top1 = int((logits.argmax(dim=1) == label).sum())
    if num_classes <= 5:
        return top1, None
    top5 = logits.topk(5, dim=1).indices
    return top1, int((top5 == label.unsqueeze(1)).any(dim=1).sum())


@torch.no_grad()
def evaluate(model, split, batch_size: int, *, free_steps: int | None = None) -> dict:
    """{"loss": mean cost per example, "acc": top-1 fraction, "top5": fraction or None}."""
    reference = next(model.parameters())
    total_cost = 0.0
    top1 = top5 = examples = 0
    for x, label in split.batches(batch_size, shuffle=False):
        x, label = x.to(reference.device, reference.dtype), label.to(reference.device)
        states = model(x, steps=free_steps)
        total_cost += float(model.cost(states, label).sum())
        hits, hits5 = correct_counts(states[model.OUTPUT], label, model.NUM_CLASSES)
        top1 += hits
        top5 += hits5 or 0
        examples += label.shape[0]
    if examples == 0:
        raise ValueError("cannot evaluate on an empty split")
    return {"loss": total_cost / examples, "acc": top1 / examples,
            "top5": top5 / examples if model.NUM_CLASSES > 5 else None}
