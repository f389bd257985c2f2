# ---------------------------------------------------------------------------------------------
# The training loop and the run directory it keeps.
#
#   RUNDIR/model.py              the generated source the run trains (the model is rebuilt from it)
#   RUNDIR/<name>.pc             the model file it was compiled from
#   RUNDIR/config.json           resolved TrainConfig, data description, versions, initial-weight hash
#   RUNDIR/metrics.jsonl         one line per completed epoch
#   RUNDIR/checkpoints/epoch_NNN.pt, last.pt
#   RUNDIR/tensorboard/          with tensorboard=True: the metrics as TensorBoard scalars (tensorboard_log.py)
#
# Rules: never lose work (an existing run is only continued with resume=True, and only with the
# same model and a compatible config); a run stopped at any point and resumed gives the same
# weights as one that ran straight through (weights, optimiser, schedule position, RNG state and
# the per-epoch data order all come back); divergence stops the run with a message and leaves the
# last good checkpoint as it was.
#
# Seeding: torch.manual_seed(seed), then model.reset_parameters(Generator(seed)), and every epoch's
# batches are a function of (seed, epoch). So EP and BP runs with the same seed start from the
# same weights and see the same batches: their comparison isolates the learning rule.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import datetime
import hashlib
import json
import math
import signal
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch

import pcdsl
from pcdsl.files import atomic_copy, atomic_write
from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.checkpoint import (CheckpointError, content_sha256, load_checkpoint,
                                      load_weights, parameter_shapes, save_checkpoint)
from pcdsl.runtime.step import TrainStep, default_options
from pcdsl.runtime.distributed import LeaderFailed, Ranks, join
from pcdsl.runtime.evaluate import evaluation_sums, summarise
from pcdsl.runtime.loading import load_model_class, source_sha256
from pcdsl.runtime.metrics import METRICS_FILE, append_metrics, read_metrics, write_metrics
from pcdsl.runtime.optim import hold_learning_rate, make_optimizer, make_schedule, momentum_buffers
from pcdsl.runtime.health import TrainingHealth
from pcdsl.runtime.progress import EpochProgress
from pcdsl.runtime.relaxation import relaxation_diagnostics
from pcdsl.runtime.tensorboard_log import TENSORBOARD_FOLDER, TensorBoardLog, tensorboard_missing
from pcdsl.runtime.runfolder import RunFolderError, check_output_folder, held_run_folder, remove_stale_temporaries

if TYPE_CHECKING:
    from pcdsl.data import DataSplits

MODEL_FILE = "model.py"
CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.pt"
# Keys a resumed run may change: neither affects the weights a completed epoch produces.
# (`epochs` moves the stopping point; the schedule keeps the horizon the run started with.)
RESUME_MAY_CHANGE = frozenset({"epochs", "eval_batch", "keep_checkpoints", "checkpoint_steps", "checkpoint_minutes",
                               "divergence_steps", "stop_on_divergence"})


class RunError(Exception):
    """A training run cannot start, continue or go on; the message is meant for the user."""


class TrainingInterrupted(RunError):
    """Ctrl-C or SIGTERM: the run's last checkpoint is on disk (with a signal, one written at the
    point it stopped); `metrics` are the completed epochs, `signal` the signal's name if any."""

    def __init__(self, message: str, metrics: list[dict], signal: str | None = None):
        super().__init__(message)
        self.metrics = metrics
        self.signal = signal


class _Stopped(Exception):
    def __init__(self, signal_name: str, position: "EpochPosition | None"):
        super().__init__(signal_name)
        self.signal_name, self.position = signal_name, position


class _Diverged(Exception):
    def __init__(self, epoch: int, where: str, reason: str):
        super().__init__(reason)
        self.epoch, self.where, self.reason = epoch, where, reason


# ---- the run directory ----------------------------------------------------------------------

class RunDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.model_file = self.root / MODEL_FILE
        self.config_file = self.root / CONFIG_FILE
        self.metrics_file = self.root / METRICS_FILE
        self.checkpoints = self.root / CHECKPOINTS
        self.last = self.checkpoints / LAST_CHECKPOINT

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:03d}.pt"

    def existing_run_files(self) -> list[str]:
        paths = (self.model_file, self.config_file, self.metrics_file, self.checkpoints)
        return [path.name for path in paths if path.exists()]


def _pc_file_name(pc_name: str) -> str:
    name = Path(pc_name).name
    if not name or name in (MODEL_FILE, CONFIG_FILE, METRICS_FILE, CHECKPOINTS):
        raise RunError(f"the model file name {pc_name!r} would clash with a file of the run directory")
    return name


# ---- model construction ---------------------------------------------------------------------

def build_model(model_class: type, config: TrainConfig) -> torch.nn.Module:
    """Instantiate and initialise from the seed alone, so equal seeds give equal weights."""
    torch.manual_seed(config.seed)
    model = model_class()
    model.reset_parameters(torch.Generator().manual_seed(config.seed))
    return model


def weights_sha256(model: torch.nn.Module) -> str:
    """A hash of every tensor of the state dict (names, dtypes, shapes and bytes)."""
    return content_sha256(model.state_dict())


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def classes_of(model, config: TrainConfig) -> int | None:
    """The classes a model tells apart: its output's, or a generative classifier's label
    state's entries; None for a generative model without one."""
    if model.NUM_CLASSES is not None:
        return model.NUM_CLASSES
    return model.STATE_SHAPES[config.label_state][0] if config.label_state else None


def check_classes(model, data: "DataSplits", config: TrainConfig) -> None:
    """RunError when the data name more classes than the model tells apart (fewer is fine:
    some outputs go unused)."""
    classes = classes_of(model, config)
    if classes is not None and data.num_classes > classes:
        raise RunError(f"the data set has {data.num_classes} classes but the model "
                       f"{model.NAME!r} {'outputs' if model.OUTPUT is not None else 'tells apart'} {classes}")


def _check_fit(model, data: "DataSplits", config: TrainConfig) -> None:
    check_classes(model, data, config)
    if len(data.train) == 0 or len(data.test) == 0:
        raise RunError(f"the data set has an empty split ({len(data.train)} train / "
                       f"{len(data.test)} test examples)")


def _check_input_shape(model, x: torch.Tensor) -> None:
    # checked on the batches themselves: drawing a probe batch up front could start decoding
    # workers of a large image folder just to look at one example
    if tuple(x.shape[1:]) != tuple(model.INPUT_SHAPE):
        raise RunError(f"the data's examples have shape {list(x.shape[1:])} but the model "
                       f"{model.NAME!r} takes {list(model.INPUT_SHAPE)}")


def _data_record(data: "DataSplits", data_spec: str | None) -> dict:
    return {"spec": data_spec, "description": data.description, "num_classes": data.num_classes,
            "classes": list(data.classes), "train_examples": len(data.train),
            "test_examples": len(data.test)}


# ---- resume checks --------------------------------------------------------------------------

def _config_differences(saved: dict, config: TrainConfig) -> list[str]:
    current = config.model_dump(mode="json")
    return [f"{key}: {saved.get(key)!r} -> {current.get(key)!r}"
            for key in sorted(set(saved) | set(current))
            if key not in RESUME_MAY_CHANGE and saved.get(key) != current.get(key)]


def _checkpoint_to_resume(run: RunDir, source: str, config: TrainConfig,
                          data: "DataSplits", log: Callable[[str], None]) -> dict | None:
    """The checkpoint to continue from (None: the run never finished an epoch), after checking
    that continuing it with this model, config and data is the same run."""
    if not run.model_file.is_file():
        raise RunError(f"nothing to resume in {run.root}: it holds no run ({MODEL_FILE} is missing); "
                       "start a new run without --resume")
    recorded = source_sha256(run.model_file.read_text(encoding="utf-8"))
    compiled = source_sha256(source)
    if recorded != compiled:
        raise RunError(f"cannot resume {run.root}: the model changed since the run started "
                       f"({run.model_file} has sha256 {recorded[:12]}, the compiled model "
                       f"{compiled[:12]}). Resuming would mix two models; start a new run in "
                       "another folder.")
    checkpoint = _newest_readable_checkpoint(run, log)
    if checkpoint is None:
        return None
    if checkpoint["source_sha256"] != compiled:
        raise RunError(f"cannot resume {run.root}: {run.last} was written by a different model "
                       f"(sha256 {checkpoint['source_sha256'][:12]}, now {compiled[:12]})")
    differences = _config_differences(checkpoint.get("config", {}), config)
    if differences:
        raise RunError(f"cannot resume {run.root}: the training config differs from the run's "
                       "(only " + ", ".join(sorted(RESUME_MAY_CHANGE)) + " may change):\n  "
                       + "\n  ".join(differences))
    saved_data = checkpoint.get("data", {}).get("description")
    if saved_data is not None and saved_data != data.description:
        raise RunError(f"cannot resume {run.root}: it was trained on\n  {saved_data}\nnot on\n  "
                       f"{data.description}")
    return checkpoint


def _newest_readable_checkpoint(run: RunDir, log: Callable[[str], None]) -> dict | None:
    """last.pt, or when it is missing or unreadable the newest epoch checkpoint that reads (and
    the log says which). None only for a run that has no checkpoint and has recorded no epoch:
    a run with history is never restarted from its first epoch."""
    epochs = sorted(run.checkpoints.glob("epoch_*.pt"), key=_epoch_number, reverse=True)
    problems = []
    for path in [run.last, *epochs]:
        if not path.exists():
            continue
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if path != run.last:
            why = "cannot be read" if run.last.exists() else "is missing"
            log(f"{run.last} {why}; resuming from {path}, the newest checkpoint that reads")
        return checkpoint
    if problems:
        raise RunError(f"cannot resume {run.root}: none of its checkpoints can be read, and nothing was "
                       "changed:\n  " + "\n  ".join(problems))
    try:
        recorded = read_metrics(run.metrics_file)
    except (OSError, ValueError):
        recorded = ["unreadable"]          # a damaged history is still a history
    if recorded:
        raise RunError(f"cannot resume {run.root}: {run.metrics_file.name} records trained epochs but there is "
                       f"no checkpoint in {run.checkpoints}; restarting would overwrite them. "
                       "Nothing was changed; start a new run in another folder.")
    return None


HEALTH_WINDOW = 50     # steps per training-health verdict (and an epoch's last, shorter, window)


def _position(checkpoint: dict | None) -> EpochPosition | None:
    recorded = (checkpoint or {}).get("position")
    if recorded is None:
        return None
    try:
        return EpochPosition(**recorded)
    except TypeError as error:
        raise RunError(f"the checkpoint's position inside its epoch is not readable ({error})") from None


def _epoch_number(path: Path) -> int:
    digits = path.stem.removeprefix("epoch_")
    return int(digits) if digits.isdigit() else -1


# ---- one epoch ------------------------------------------------------------------------------

@dataclass
class EpochPosition:
    """Where a run stands inside an epoch: what a mid-epoch checkpoint records to continue."""
    epoch: int
    batches: int           # batches done in this epoch
    seen: int              # their examples
    loss_sum: float        # their summed per-example training loss
    hits: int
    seconds: float         # training time spent on them
    skipped: int = 0       # examples left out of their batches (unreadable files, skipped)


class _Stop:
    """A SIGTERM or SIGINT received: the run stops after the current step, with a checkpoint."""

    def __init__(self):
        self.signal: str | None = None
        self.at = 0.0          # when (time.monotonic)


# Signals this soon after the first are the same request, not a second one that interrupts at
# once: Ctrl-C under torchrun reaches a worker twice, from the terminal and from the launcher.
SAME_REQUEST_SECONDS = 2.0


@contextmanager
def _stopping_on_signals(stop: _Stop, repeats_are_one: bool = False) -> Iterator[None]:
    """SIGTERM (what a cluster scheduler sends before it kills) and SIGINT set `stop` instead of
    killing the run mid-write; a second one interrupts at once (`repeats_are_one`, one of
    several processes: one that comes within SAME_REQUEST_SECONDS of the first does not). Only
    the main thread can."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kinds = (signal.SIGTERM, signal.SIGINT)
    previous = {kind: signal.getsignal(kind) for kind in kinds}

    def handler(number, frame):
        if stop.signal is not None:
            if not repeats_are_one or time.monotonic() - stop.at > SAME_REQUEST_SECONDS:
                raise KeyboardInterrupt
            return
        stop.signal, stop.at = signal.Signals(number).name, time.monotonic()

    for kind in kinds:
        signal.signal(kind, handler)
    try:
        yield
    finally:
        for kind, action in previous.items():
            signal.signal(kind, action)


def _read_sums(losses: list[torch.Tensor], hits: list[torch.Tensor], sizes: list[int]) -> tuple[float, int]:
    """(summed per-example loss, hits) of some batches, from their device-side batch means and
    hit counts: one host read."""
    if not losses:
        return 0.0, 0
    return float((torch.stack(losses).cpu() * torch.tensor(sizes)).sum()), int(torch.stack(hits).sum())


def _train_epoch(model, step: TrainStep, update: Callable[[], None], schedule, config: TrainConfig,
                 data: "DataSplits", epoch: int, last_epoch: int, log, live: bool | None,
                 start: EpochPosition | None, save_midway: Callable[[EpochPosition], None], stop: _Stop,
                 health: TrainingHealth, ranks: Ranks = Ranks()) -> dict:
    """One pass over the training data, or its rest from `start`; `update` is the optimiser's
    step (compiled or not). A checkpoint is saved inside the epoch (save_midway) as often as
    the config asks, and when a stop was requested (then _Stopped is raised). With several
    processes (`ranks`) each steps on its shard of every batch and the step is reduced
    (distributed.py): the numbers kept are the whole batch's, the same on every process."""
    batches = math.ceil(len(data.train) / config.batch)
    start = start or EpochPosition(epoch, 0, 0, 0.0, 0, 0.0)
    # the batches' losses and hits stay on the device, summed when the epoch or a checkpoint
    # needs them: the step's health flag is the one value read per batch
    losses, hits, sizes = [], [], []
    lr_used = schedule.current
    started = last_save = time.perf_counter()
    steps_since_save = 0
    skipped = 0                # examples of this epoch's batches left out (unreadable files)
    window_start = 0           # index into this epoch's lists where the health window began

    def watch(closing: bool) -> None:
        """The health verdict on the window of steps since window_start (one host read)."""
        nonlocal window_start
        count = len(losses) - window_start
        if not config.divergence_steps or count == 0 or (count < HEALTH_WINDOW and not closing):
            return
        window = slice(window_start, len(losses))
        examples = sum(sizes[window])
        loss_sum, hit_count = _read_sums(losses[window], hits[window], sizes[window])
        loss, acc = loss_sum / examples, hit_count / examples
        last = schedule.steps_taken
        window_start = len(losses)
        message = health.observe(loss, acc, last - count + 1, last, float(losses[window.start]))
        if message:
            log(f"warning: {message}")
            if config.stop_on_divergence:
                raise _Diverged(epoch, f"step {last}", message)

    def position(done: int) -> EpochPosition:
        loss_sum, hit_count = _read_sums(losses, hits, sizes)
        return EpochPosition(epoch, done, start.seen + sum(sizes), start.loss_sum + loss_sum, start.hits + hit_count,
                             start.seconds + time.perf_counter() - started, start.skipped + skipped)

    with EpochProgress(epoch, last_epoch, batches, log, live) as progress:
        stream = data.train.batches(config.batch, shuffle=True, seed=config.seed, epoch=epoch - 1,
                                    start=start.batches, shard=ranks.shard)
        for number, (x, label) in enumerate(stream, start=start.batches + 1):
            _check_input_shape(model, x)
            x, label = step.prepare(x, label)
            result = step(x, label) if label.shape[0] else step.idle()
            clock_due = bool(config.checkpoint_minutes) and time.perf_counter() - last_save >= 60 * config.checkpoint_minutes
            # with several processes: the whole batch's gradient, numbers and size, a stop
            # request of any process and rank 0's clock, the same on every process
            outcome = ranks.reduce_step(list(model.parameters()), result, label.shape[0], stop.signal, clock_due)
            result, size = outcome.result, outcome.examples
            skipped += min(config.batch, len(data.train) - (number - 1) * config.batch) - size
            if not bool(result.ok):
                raise _Diverged(epoch, f"batch {number} of {batches}", step.diagnose(x, label, result))
            if size:           # (a batch whose every file was unreadable and skipped changes nothing)
                lr_used = schedule.current
                if not result.updated:       # a compiled EP step takes the optimiser's step itself
                    update()
                schedule.step()
                losses.append(result.loss)
                hits.append(result.correct)
                sizes.append(size)
                progress.update(result.loss)
                steps_since_save += 1
                watch(closing=False)
            due = (config.checkpoint_steps and steps_since_save >= config.checkpoint_steps) or outcome.save
            # a failing run does not overwrite last.pt inside an epoch: it keeps a point from before
            if (outcome.stop or (due and number < batches)) and not health.failing:
                reached = position(number)
                save_midway(reached)
                if outcome.stop:
                    raise _Stopped(outcome.stop, reached)
                steps_since_save, last_save = 0, time.perf_counter()
            elif outcome.stop:       # failing: last.pt keeps its point from before
                raise _Stopped(outcome.stop, None)
    watch(closing=True)
    reached = position(batches)
    if not reached.seen:
        raise RunError(f"no training image of epoch {epoch} could be read ({reached.skipped} skipped)")
    return {"train_loss": reached.loss_sum / reached.seen, "train_acc": reached.hits / reached.seen,
            "lr": lr_used, "train_seconds": reached.seconds,
            "train_examples_per_s": reached.seen / reached.seconds, "skipped": reached.skipped}


def _prune_checkpoints(run: "RunDir", epoch: int, keep: int) -> None:
    """Keep the newest `keep` epoch checkpoints (last.pt is a separate copy and always stays):
    a VGG10 checkpoint with its momentum buffers is about half a gigabyte."""
    for old in range(1, epoch - keep + 1):
        run.epoch_checkpoint(old).unlink(missing_ok=True)


def _epoch_summary(record: dict, last_epoch: int) -> str:
    if record["train_acc"] is None:        # a generative model: its losses are reconstruction errors
        accuracy = "" if record["test_acc"] is None else f" acc {100 * record['test_acc']:.2f}%"
        return (f"epoch {record['epoch']}/{last_epoch}  train reconstruction error {record['train_loss']:.5f}  "
                f"test {record['test_loss']:.5f}{accuracy}  lr {record['lr']:.3g}  {record['seconds']:.3g} s")
    text = (f"epoch {record['epoch']}/{last_epoch}  train loss {record['train_loss']:.4f} "
            f"acc {100 * record['train_acc']:.2f}%  test loss {record['test_loss']:.4f} "
            f"acc {100 * record['test_acc']:.2f}%")
    if "test_top5" in record:
        text += f" top5 {100 * record['test_top5']:.2f}%"
    return text + f"  lr {record['lr']:.3g}  {record['seconds']:.3g} s"


def _divergence_message(error: _Diverged, run: RunDir, config: TrainConfig, good_epoch: int,
                        failing_since: int | None, batches_per_epoch: int) -> str:
    if config.algorithm == "ep":
        advice = (f"Try a smaller lr (now {config.lr:g}) or beta (now {config.beta:g}), or more "
                  f"relaxation steps (now {config.steps})")
    else:
        advice = f"Try a smaller lr (now {config.lr:g})"
    if failing_since is not None:
        # failing with finite numbers for a while: epoch ends may have passed since it began
        before = (failing_since - 1) // batches_per_epoch
        kept = (f"the newest checkpoint from before it began is {run.epoch_checkpoint(before)} (copy it over "
                f"{run.last} to resume from there)" if before else "it began in the first epoch")
    else:
        kept = (f"the last good checkpoint, epoch {good_epoch}, is {run.last} (unchanged)"
                if good_epoch else "no checkpoint was written (it diverged in the first epoch)")
    return (f"training diverged at epoch {error.epoch}, {error.where}: {error.reason}. "
            f"{advice}; {kept}.")


# ---- the entry points -----------------------------------------------------------------------

def train(model_cls_source: str, pc_text: str, pc_name: str, config: TrainConfig,
          data: "DataSplits", out_dir: Path, **options) -> list[dict]:
    """Train the generated model in `out_dir`; return the metrics of every completed epoch of
    the run. The folder must be the run's own (runfolder.check_output_folder) and is held for
    the run (a second run on it is refused). Started by torchrun (several processes), the
    processes train together and rank 0 keeps the folder (distributed.py). Options: see
    _train_in_folder, and `tensorboard`: rank 0 writes each epoch's metrics as TensorBoard
    scalars in RUNDIR/tensorboard/ (tensorboard_log.py; RunError at once when tensorboard
    cannot be imported)."""
    root = Path(out_dir).expanduser()     # the path checked is the path written
    device = options.pop("device", None)
    tensorboard = options.pop("tensorboard", False)
    problem = tensorboard_missing() if tensorboard else None
    if problem:                           # before anything is started or written
        raise RunError(problem)
    # (a LaunchError is this process's own: reported as it is, with its rank)
    ranks, device = join(torch.device(device) if device is not None else None)
    if not ranks.leader:                  # rank 0 speaks for the run
        options.update(log=lambda message: None, progress=False)
    try:
        with ExitStack() as held:
            def hold_folder() -> None:
                check_output_folder(root)
                held.enter_context(held_run_folder(root))
            ranks.from_leader(hold_folder)
            board = (held.enter_context(TensorBoardLog(root / TENSORBOARD_FOLDER, options.get("log", print)))
                     if tensorboard and ranks.leader else None)
            history = _train_in_folder(model_cls_source, pc_text, pc_name, config, data, root,
                                       device=device, ranks=ranks, board=board, **options)
    except RunFolderError as error:
        raise RunError(str(error)) from None
    except LeaderFailed as error:      # rank 0 has reported it
        raise RunError(f"rank 0 stopped the run ({error})") from None
    except TrainingInterrupted as stopped:
        if stopped.signal is not None:      # a stop every process agreed on: they are in step
            ranks.end()
        raise
    # (left as it is after a failure: with a process gone, ending the group could wait forever)
    ranks.end()
    return history


def _inference_text(config: TrainConfig) -> str:
    """pcil / ipc's settings, for the run's first line."""
    parts = [f"{config.steps} sweeps", "output clamped", config.update]
    if config.inference_precision != "uniform":
        parts.append(f"{config.inference_precision} precision")
    if config.weight_update == "forward":
        parts.append("forward update")
    return ", ".join(parts)


def _train_in_folder(model_cls_source: str, pc_text: str, pc_name: str, config: TrainConfig,
          data: "DataSplits", out_dir: Path, *, resume: bool = False, epochs: int | None = None,
          log: Callable[[str], None] = print, data_spec: str | None = None,
          device: str | torch.device | None = None, progress: bool | None = None,
          compile: bool | None = None, channels_last: bool | None = None,
          cuda_graphs: bool | None = None, lean_memory: bool = False, diagnostics: bool = False,
          board: TensorBoardLog | None = None, sets: Sequence[str] = (), ranks: Ranks = Ranks()) -> list[dict]:
    """Train the generated model; return the metrics of every completed epoch of the run.

    epochs: stop once this many epochs of the run are complete (default config.epochs); the
        learning-rate schedule always spans config.epochs as recorded when the run started.
    data_spec: the `--data` string, recorded so that evaluate_run can reload the data.
    sets: the `--set key=value` items `model_cls_source` was compiled with from `pc_text`,
        recorded so that evaluation regenerates the same module (evaluate_run).
    device: default cuda when available. progress: live bar (default: when stderr is a TTY).
    compile, channels_last, cuda_graphs, lean_memory: the step's options (None: by device and model, see
        pcdsl.runtime.step.default_options); none changes what is computed.
    diagnostics: each epoch's record gets the relaxation's `relax/...` numbers (relaxation.py),
        measured on a fixed batch; the training is the same.
    board: where rank 0 writes each epoch's record as TensorBoard scalars (tensorboard_log.py).
    ranks: this process's place among several (distributed.py); only rank 0 reads and writes
        the run folder."""
    run = RunDir(out_dir)
    pc_file = _pc_file_name(pc_name)
    if config.batch < ranks.size:
        raise RunError(f"the batch ({config.batch}) is smaller than the number of processes ({ranks.size}): "
                       "`batch` is the batch of all processes together")
    if config.algorithm == "ipc" and ranks.size > 1:
        raise RunError("incremental PC takes an optimiser step at every inference sweep, inside a batch; it runs "
                       "in one process (drop --nproc / torchrun), or train with pcil across processes")
    differences = ranks.agree({
        "model": source_sha256(model_cls_source), "config": config.model_dump(mode="json"),
        "epochs": epochs, "resume": resume, "train examples": len(data.train), "test examples": len(data.test),
        "classes": list(data.classes),
        "skip unreadable images": getattr(getattr(data.train, "source", None), "skip_unreadable", False)})
    if differences:
        raise RunError("the processes of the run were not started alike (each must train the same model with "
                       "the same settings on the same data):\n  " + "\n  ".join(differences))
    checkpoint = None

    def claim_folder() -> None:
        """The run folder is a new run's, or holds the run this one continues (rank 0)."""
        nonlocal checkpoint
        if not resume and run.existing_run_files():
            raise RunError(f"{run.root} already holds a run ({', '.join(run.existing_run_files())}); "
                           "pass --resume to continue it, or choose another output folder. "
                           "Nothing was changed.")
        if not resume and (run.root / pc_file).exists():
            raise RunError(f"{run.root} already holds a file named {pc_file}, where the run would keep its model "
                           "file; choose another output folder. Nothing was changed.")
        checkpoint = _checkpoint_to_resume(run, model_cls_source, config, data, log) if resume else None
        remove_stale_temporaries(run.root)     # the folder is this run's now
    ranks.from_leader(claim_folder)

    model = build_model(load_model_class(model_cls_source), config)
    _check_fit(model, data, config)
    initial_weights = weights_sha256(model)
    target = _pick_device(device)
    model.to(target)
    options = default_options(model, target, compile=compile, channels_last=channels_last,
                              cuda_graphs=cuda_graphs, lean_memory=lean_memory)
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), config, tensor_lr=options.compile)
    batches_per_epoch = math.ceil(len(data.train) / config.batch)
    schedule = make_schedule(optimizer, config, total_steps=config.epochs * batches_per_epoch)
    source_hash = source_sha256(model_cls_source)
    data_record = _data_record(data, data_spec)

    def start_state() -> dict:
        """Rank 0: the data checked, then the checkpoint's state applied or the new run's files
        written; what the other processes need of it (the weights and momentum follow)."""
        checked = data.check_readable() if hasattr(data, "check_readable") else None
        if checked:
            log(checked)
        if checkpoint is not None:
            load_weights(model, checkpoint, run.last)
            optimizer.load_state_dict(checkpoint["optimizer"])
            hold_learning_rate(optimizer, as_tensor=options.compile)
            schedule.load_state_dict(checkpoint["schedule"])
            torch.set_rng_state(checkpoint["rng"]["torch"])
            if torch.cuda.is_available() and checkpoint["rng"]["cuda"]:
                torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
            write_metrics(run.metrics_file, list(checkpoint["metrics"]))
            inside = _position(checkpoint)
            log(f"resuming {run.root} after epoch {checkpoint['epoch']}"
                + (f" and batch {inside.batches} of epoch {inside.epoch}" if inside else ""))
            saved_by = checkpoint.get("processes", 1)
            if saved_by != ranks.size:
                log(f"note: the run continues with {ranks.size} process(es), it was saved by {saved_by}: the "
                    "same batches and the same mean gradient, summed in another order (not bit-identical)")
        else:
            if resume:
                log(f"{run.root} has no checkpoint yet; starting the run from its first epoch")
            run.root.mkdir(parents=True, exist_ok=True)
            try:
                _write_run_files(run, pc_file, pc_text, model_cls_source, model, config, data_record,
                                 initial_weights, source_hash, sets)
            except OSError as error:
                raise RunError(f"cannot write the run's files in {run.root}: {_os_error_text(error)}") from None
        return {"history": list(checkpoint["metrics"]) if checkpoint is not None else [],
                "position": checkpoint.get("position") if checkpoint is not None else None,
                "schedule": schedule.state_dict(), "rng": torch.get_rng_state()}
    state = ranks.from_leader(start_state)
    if ranks.active:       # every process continues from rank 0's state
        if not ranks.leader:
            schedule.load_state_dict(state["schedule"])
            torch.set_rng_state(state["rng"])
        ranks.broadcast_(list(model.state_dict().values()) + (momentum_buffers(optimizer) or []))
    history: list[dict] = state["history"]

    done = history[-1]["epoch"] if history else 0
    last_epoch = config.epochs if epochs is None else epochs
    if done >= last_epoch:
        log(f"{run.root}: {done} epochs done, nothing to train (target {last_epoch})")
        return history
    n_params = sum(p.numel() for p in model.parameters())
    what = {"ep": f"EP ({config.scheme}, beta {config.beta:g}, {config.steps} steps, {config.update}, "
                  f"{config.traversal})",
            "bp": "backprop",
            "pcil": f"predictive-coding inference learning ({_inference_text(config)})" if model.OUTPUT is not None
                    else f"generative inference learning (the data clamped, {config.free_steps or model.FREE_STEPS} "
                         "relaxation steps, then the weight update)",
            "ipc": f"incremental predictive coding ({_inference_text(config)}, a weight step per sweep)",
            "rbp": f"recurrent backprop (implicit differentiation, "
                   f"{config.adjoint_steps or config.free_steps or model.FREE_STEPS} adjoint steps)"}[config.algorithm]
    if config.algorithm in ("rbp", "ipc") and options.compile:
        # TrainStep runs these eagerly (the adjoint's loop of vector-Jacobian products; the
        # optimiser's steps inside iPC's sweeps): not "compiled"
        options = replace(options, compile=False, cuda_graphs=False)
        log(f"{config.algorithm} runs eagerly: --compile does not apply to it")
    switches = ", ".join(name for name, on in (("compiled", options.compile), ("CUDA graphs", options.compile and options.cuda_graphs),
                                               ("channels_last", options.channels_last)) if on)
    processes = f" x {ranks.size} processes" if ranks.active else ""
    log(f"training {model.NAME} ({n_params:,} parameters) with {what} on {target.type}{processes}"
        f"{f' ({switches})' if switches else ''}; data: {data.description}; run: {run.root}")
    # several processes: the optimiser's step waits for the reduced gradient (no fused update)
    step = TrainStep(model, config, options, optimizer if not ranks.active else None,
                     batch=ranks.local_size(min(config.batch, len(data.train))))
    update = torch.compile(optimizer.step) if options.compile else optimizer.step

    def payload(epoch_done: int, position: EpochPosition | None) -> dict:
        """Everything needed to continue exactly: after `epoch_done` epochs, and `position`
        inside the next one (a mid-epoch checkpoint) or not."""
        return {
            "epoch": epoch_done, "step": schedule.steps_taken, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": config.model_dump(mode="json"), "source_sha256": source_hash,
            "model_name": model.NAME, "param_shapes": parameter_shapes(model),
            "pc": {"file": pc_file, "text": pc_text, "sets": list(sets)},
            "position": asdict(position) if position is not None else None,
            "metrics": list(history), "data": data_record, "processes": ranks.size,
            "pcdsl_version": pcdsl.__version__}

    def save_midway(position: EpochPosition) -> None:
        def save() -> None:
            try:
                save_checkpoint(run.last, payload(position.epoch - 1, position))
            except OSError as error:
                raise RunError(f"cannot save a checkpoint in {run.root}: {_os_error_text(error)}") from None
        ranks.from_leader(save)     # the other processes wait for it, and stop with it if it fails

    resume_at = _position(state)
    stop = _Stop()
    probe: list = []          # --diagnostics: the fixed batch, drawn at the first epoch's end

    def relaxation_numbers(epoch: int) -> dict:
        """--diagnostics, rank 0's alone (the other processes go on to the evaluation and wait
        for it there), on the same batch whatever the number of processes."""
        if not ranks.leader:
            return {}
        if not probe:
            batches = data.test.batches(min(config.batch, len(data.test)), shuffle=False)
            try:
                probe.append(next(iter(batches)))
            finally:
                getattr(batches, "close", lambda: None)()
        x, label = probe[0]
        if not x.shape[0]:     # every file of the batch unreadable (and skipped)
            return {}
        try:
            return relaxation_diagnostics(model, *step.prepare(x, label), config)
        except RuntimeError as error:     # out of memory: eager phases, outside the step's memory plan
            if not (isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)
                    or "out of memory" in str(error)):
                raise                     # anything else is a bug, not a measurement to skip
            log(f"warning: the relaxation diagnostics of epoch {epoch} failed ({error}); "
                "its record goes without them, and training goes on")
            return {}

    # chance from the classes the model tells apart when the data name fewer (one folder, or
    # unlabelled images for a generative model, which has no accuracy to watch)
    health = TrainingHealth(classes_of(model, config) or 1 if data.num_classes <= 1 else data.num_classes,
                            config.divergence_steps)
    failing_epoch = None      # the epoch in which the present failing stretch began
    try:
        with _stopping_on_signals(stop, repeats_are_one=ranks.active):
            for epoch in range(done + 1, last_epoch + 1):
                # a stop that arrived during the last evaluation (and its checkpoint) ends the run
                # here, on every process
                stopping = ranks.agreed_stop(stop.signal, target)
                if stopping:
                    raise _Stopped(stopping, None)
                started = time.perf_counter()
                start = resume_at if resume_at is not None and resume_at.epoch == epoch else None
                try:
                    record = _train_epoch(model, step, update, schedule, config, data, epoch,
                                          last_epoch, log, progress, start, save_midway, stop, health, ranks)
                    relax = relaxation_numbers(epoch) if diagnostics else {}
                    evaluated = time.perf_counter()
                    sums = evaluation_sums(model, data.test, config.eval_batch, free_steps=config.free_steps,
                                           shard=ranks.shard, label_state=config.label_state)
                    sums = ranks.sum_(sums.to(target)).cpu()
                    if not sums[3]:
                        raise RunError("no test image could be read: every file of the test split was skipped")
                    test = summarise(sums, classes_of(model, config))
                    skipped_test = len(data.test) - int(sums[3])
                    if not math.isfinite(test["loss"]):
                        raise _Diverged(epoch, "the end-of-epoch evaluation",
                                        f"the test loss is {test['loss']}")
                except _Diverged as error:
                    raise RunError(_divergence_message(error, run, config, epoch - 1, health.failing_since,
                                                       batches_per_epoch)) from None
                record = {"epoch": epoch, "step": schedule.steps_taken, "algorithm": config.algorithm,
                          **({"scheme": config.scheme} if config.algorithm == "ep" else {}),
                          "train_loss": record["train_loss"],
                          "train_acc": record["train_acc"] if model.OUTPUT is not None else None,
                          "test_loss": test["loss"], "test_acc": test["acc"],
                          **({"test_top5": test["top5"]} if test["top5"] is not None else {}),
                          "lr": record["lr"], "seconds": time.perf_counter() - started,
                          "train_seconds": record["train_seconds"],
                          "eval_seconds": time.perf_counter() - evaluated,
                          "train_examples_per_s": record["train_examples_per_s"],
                          **({"skipped_train_examples": record["skipped"], "skipped_test_examples": skipped_test}
                             if record["skipped"] or skipped_test else {}), **relax}
                history.append(record)

                def save_epoch() -> None:
                    try:
                        save_checkpoint(run.epoch_checkpoint(epoch), payload(epoch, None))
                        # a copy, not a hard link: one damaged file must leave the other to resume from
                        atomic_copy(run.epoch_checkpoint(epoch), run.last)
                        append_metrics(run.metrics_file, record)
                    except OSError as error:     # a full disk, a folder made read-only under the run
                        kept = (f"{run.last} still holds epoch {epoch - 1}" if epoch > 1 or done
                                else "no checkpoint was written")
                        raise RunError(f"cannot save epoch {epoch} in {run.root}: {_os_error_text(error)}; {kept}, "
                                       "and --resume continues from it once there is room") from None
                    if config.keep_checkpoints:
                        _prune_checkpoints(run, epoch, config.keep_checkpoints)
                ranks.from_leader(save_epoch)
                if board is not None:          # (rank 0's) once the epoch's checkpoint and metrics are on disk
                    board.write(record)
                log(_epoch_summary(record, last_epoch))
                if "skipped_train_examples" in record:
                    found = data.unreadable_files()
                    log(f"  skipped {record['skipped_train_examples']} training and {skipped_test} test examples whose "
                        f"image files cannot be read{f' (first: {found[0]})' if found else ''}")
    except _Stopped as stopped:
        if stopped.position is not None:
            kept = (f"at epoch {stopped.position.epoch} after batch {stopped.position.batches}: {run.last} holds "
                    "that point")
        else:
            kept = (f"during epoch {(history[-1]['epoch'] if history else 0) + 1}: {run.last} holds the last point "
                    "saved before" if run.last.exists() else "before any checkpoint was saved")
        message = f"stopped by {stopped.signal_name} {kept}; continue with --resume (the same command, --resume added)"
        log(message)
        raise TrainingInterrupted(message, history, stopped.signal_name) from None
    except KeyboardInterrupt:
        saved = history[-1]["epoch"] if history else 0
        kept = (f"{run.last} holds epoch {saved}; continue with --resume" if saved
                else "no epoch was completed, so there is no checkpoint")
        message = f"interrupted during epoch {saved + 1}: {kept}"
        log(message)
        raise TrainingInterrupted(message, history) from None
    return history


def _write_run_files(run: RunDir, pc_file: str, pc_text: str, source: str, model, config: TrainConfig,
                     data_record: dict, initial_weights: str, source_hash: str, sets: Sequence[str]) -> None:
    """A new run's model.py (for reading), .pc, config.json and empty metrics."""
    atomic_write(run.model_file, source)
    atomic_write(run.root / pc_file, pc_text)
    record = {"pcdsl_version": pcdsl.__version__, "torch_version": torch.__version__,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "model": {"name": model.NAME, "pc_file": pc_file, "sets": list(sets),
                        "pc_sha256": hashlib.sha256(pc_text.encode()).hexdigest(),
                        "source_sha256": source_hash,
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "param_shapes": parameter_shapes(model)},
              "initial_weights_sha256": initial_weights, "data": data_record,
              "config": config.model_dump(mode="json")}
    atomic_write(run.config_file, json.dumps(record, indent=2) + "\n")
    write_metrics(run.metrics_file, [])


def _os_error_text(error: OSError) -> str:
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    return f"{error.strerror or error}{where}"


@dataclass
class LoadedRun:
    """A run's model with the weights of one of its checkpoints."""
    model: torch.nn.Module
    checkpoint: dict
    checkpoint_path: Path
    config: TrainConfig
    run: RunDir
    source: str
    regenerated: bool        # the module was regenerated from the run's model file


def load_run(path: Path, *, device: str | torch.device | None = None, source: str | None = None) -> LoadedRun:
    """The model of a run folder (its last.pt) or of one checkpoint file of a run, with its
    weights. The module is regenerated from the run's `.pc` text and `--set` items (recorded in
    the checkpoint; older checkpoints: the run folder's .pc and config.json) by the installed
    compiler: nothing from the run folder or the checkpoint is executed (docs/architecture.md,
    "Trust"). `source`: the module to load instead, for a run of a hand-written module."""
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        checkpoint_path = run.last
        if not checkpoint_path.exists():
            raise RunError(f"{path} has no {CHECKPOINTS}/{LAST_CHECKPOINT}: the run has not "
                           "completed an epoch, or this is not a run folder")
    else:
        checkpoint_path = path
        run = RunDir(path.parent.parent if path.parent.name == CHECKPOINTS else path.parent)
    checkpoint = load_checkpoint(checkpoint_path)
    config = TrainConfig.model_validate(checkpoint["config"])
    regenerated = source is None
    if regenerated:
        source = _regenerated_source(run, checkpoint, checkpoint_path)
    model = load_model_class(source)()
    try:
        load_weights(model, checkpoint, checkpoint_path)
    except CheckpointError as error:
        made = "the installed pcdsl regenerates from the run's model file" if regenerated else "the given source"
        raise RunError(f"cannot load {checkpoint_path}: the module {made} (sha256 "
                       f"{source_sha256(source)[:12]}) does not fit the weights of the module it was trained "
                       f"with (sha256 {checkpoint['source_sha256'][:12]}): {error}") from None
    model.to(_pick_device(device))
    return LoadedRun(model, checkpoint, checkpoint_path, config, run, source, regenerated)


def run_data(loaded: LoadedRun, data_spec: str | None = None, *, limit_train: int | None = None,
             limit_test: int | None = None, workers: int | None = None,
             skip_unreadable: bool = False) -> "DataSplits":
    """The data a run was trained on (the spec its checkpoint recorded), or `data_spec`,
    without augmentation."""
    spec = data_spec if data_spec is not None else loaded.checkpoint.get("data", {}).get("spec")
    if spec is None:
        raise RunError(f"{loaded.run.root} did not record which data it was trained on; pass a data spec")
    from pcdsl.data import load_data_for   # here: only evaluating from a spec needs the data
    return load_data_for(spec, tuple(loaded.model.INPUT_SHAPE), loaded.config, augment=False,
                         limit_train=limit_train, limit_test=limit_test, workers=workers,
                         skip_unreadable=skip_unreadable)


def evaluate_run(path: Path, data_spec: str | None = None, *, data: "DataSplits | None" = None,
                 batch_size: int | None = None, limit: int | None = None,
                 workers: int | None = None, device: str | torch.device | None = None,
                 source: str | None = None, skip_unreadable: bool = False) -> dict:
    """Evaluate a run directory (its last.pt) or one checkpoint file of a run on a test split.

    The module is regenerated from the run's `.pc` text and `--set` items (recorded in the
    checkpoint; older checkpoints: the run folder's .pc and config.json) by the installed
    compiler: nothing from the run folder or the checkpoint is executed (docs/architecture.md,
    "Trust"). `source`: the module to evaluate with instead, for a run of a hand-written module.
    The data defaults to the spec recorded in the run's config.json (or pass `data_spec`, or
    already-loaded `data`); `limit`: evaluate on that many test examples only; `skip_unreadable`:
    leave out test images that cannot be read (counted in the result's "skipped")."""
    loaded = load_run(path, device=device, source=source)
    model, checkpoint, checkpoint_path, config = loaded.model, loaded.checkpoint, loaded.checkpoint_path, loaded.config
    if data is None:
        data = run_data(loaded, data_spec, limit_test=limit, workers=workers, skip_unreadable=skip_unreadable)
    check_classes(model, data, config)
    classes = classes_of(model, config)
    sums = evaluation_sums(model, data.test, batch_size or config.eval_batch, free_steps=config.free_steps,
                           label_state=config.label_state)
    if not sums[3]:
        raise RunError(f"no test image of {data.description} could be read")
    result = summarise(sums, classes)
    if model.OUTPUT is None:      # a generative model: the mean squared error of its reconstructions
        result = {**({"acc": result["acc"], "top5": result["top5"]} if config.label_state else {}),
                  "reconstruction_error": result["loss"],
                  "top_down_error": _top_down_error(model, data.test, batch_size or config.eval_batch,
                                                    config.free_steps, config.label_state)}
    return {**result, "epoch": checkpoint["epoch"], "checkpoint": str(checkpoint_path),
            "data": data.description, "examples": int(sums[3]),
            **({"skipped": len(data.test) - int(sums[3])} if len(data.test) != int(sums[3]) else {}),
            "same_module": source_sha256(loaded.source) == checkpoint["source_sha256"],
            # a checkpoint from inside an epoch: where in the next epoch its weights are
            **({"inside_epoch": checkpoint["position"]} if checkpoint.get("position") else {})}


def _top_down_error(model, split, batch_size: int, free_steps: int | None, label_state: str | None
                    ) -> float | None:
    """A generative model's mean squared error of the data decoded from its top states alone
    (None when every state is predicted: there is no top)."""
    from pcdsl.runtime.generate import require_top_states, top_down_errors, GenerationError
    try:
        require_top_states(model)
    except GenerationError:
        return None
    reference = next(model.parameters())
    total, count = 0.0, 0
    for x, _ in split.batches(batch_size, shuffle=False):
        if x.shape[0]:
            x = x.to(reference.device, reference.dtype)
            total += float(top_down_errors(model, x, free_steps, label_state).sum())
            count += x.shape[0]
    return total / max(count, 1)


def _regenerated_source(run: RunDir, checkpoint: dict, checkpoint_path: Path) -> str:
    """The module of a run compiled anew from its .pc text and --set items: the checkpoint's
    copy, or (checkpoints before pcdsl recorded it) the run folder's .pc named in config.json."""
    from pcdsl.diagnostics import PcdslError
    from pcdsl.pipeline import compile_text
    recorded = checkpoint.get("pc")
    if isinstance(recorded, dict) and isinstance(recorded.get("text"), str):
        name, text, sets = str(recorded.get("file", "model.pc")), recorded["text"], recorded.get("sets", [])
    else:
        name, text, sets = _run_folder_pc(run, checkpoint_path)
    if not isinstance(sets, list) or not all(isinstance(item, str) for item in sets):
        raise RunError(f"{checkpoint_path}: the recorded --set items are not a list of strings")
    try:
        return compile_text(text, str(run.root / Path(name).name), sets).source
    except PcdslError as error:
        raise RunError(f"cannot rebuild the model of {checkpoint_path}: its model file {name} does not compile "
                       f"with the installed pcdsl {pcdsl.__version__}:\n{error.render()}") from None


def _run_folder_pc(run: RunDir, checkpoint_path: Path) -> tuple[str, str, list]:
    try:
        record = json.loads(run.config_file.read_text(encoding="utf-8"))
        name = record["model"]["pc_file"]
        sets = record["model"].get("sets", [])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunError(f"cannot rebuild the model of {checkpoint_path}: it holds no copy of its model file, "
                       f"and {run.config_file} does not name one ({type(error).__name__}: {error})") from None
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise RunError(f"cannot rebuild the model of {checkpoint_path}: {run.config_file} names the model file "
                       f"{name!r}, not a file of the run folder")
    try:
        return name, (run.root / name).read_text(encoding="utf-8"), sets
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"cannot rebuild the model of {checkpoint_path}: cannot read {run.root / name}: "
                       f"{error}") from None


__all__ = ["RunError", "TrainingInterrupted", "CheckpointError", "RunDir", "build_model",
           "weights_sha256", "train", "evaluate_run", "load_run", "run_data", "LoadedRun"]
