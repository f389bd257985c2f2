"""The runtime: trains, evaluates and checks any generated model through protocol.py.

    loading     generated source text -> Model class
    ep          one EP or backprop step (fills p.grad)
    optim       SGD and the learning-rate schedule
    evaluate    free-phase loss / top-1 / top-5 on a split
    checkpoint  atomic save, defensive load (CheckpointError)
    metrics     RUNDIR/metrics.jsonl
    tensorboard_log  RUNDIR/tensorboard/: the metrics as TensorBoard scalars (--tensorboard)
    relaxation  where the relaxations end, per epoch (--diagnostics: relax/... in the metrics)
    progress    rich bar on a terminal, plain lines elsewhere
    trainer     train(), evaluate_run(), the run directory (RunError)
    gradcheck   EP estimate vs the autograd gradient, per parameter
"""
from pcdsl.runtime.checkpoint import CheckpointError
from pcdsl.runtime.evaluate import evaluate
from pcdsl.runtime.gradcheck import gradcheck
from pcdsl.runtime.loading import ModelSourceError, load_model_class
from pcdsl.runtime.trainer import RunError, TrainingInterrupted, evaluate_run, train

__all__ = ["CheckpointError", "ModelSourceError", "RunError", "TrainingInterrupted", "evaluate",
           "evaluate_run", "gradcheck", "load_model_class", "train"]
