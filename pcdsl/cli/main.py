# ---------------------------------------------------------------------------------------------
# The `pcdsl` command line (click). Each command is a thin shell over the pipeline and the
# runtime; every user error leaves as one readable message and exit status 1, never a traceback
# (set PCDSL_DEBUG=1 to see one for an internal error).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path

import click

from .. import __version__
from ..diagnostics import PcdslError
from ..files import atomic_write


# gradcheck --dtype bf16 (docs/architecture.md, "Mixed precision"): every tensor's cosine against
# float64 backprop must reach BF16_MIN_COSINE, or come within BF16_SLACK of what bf16 *backprop*
# reaches on it: bfloat16 costs backprop itself cosines down to 0.94 on VGG10 (S=64)
BF16_MIN_COSINE = 0.98
BF16_SLACK = 0.005


class UserError(Exception):
    """A problem with what the user asked for, already phrased for them."""


def _user_errors():
    """Exception types whose message is written for the user."""
    kinds = [UserError]
    for module, name in (("pcdsl.data", "DataError"), ("pcdsl.runtime.checkpoint", "CheckpointError"),
                         ("pcdsl.runtime.trainer", "RunError"), ("pcdsl.runtime.distributed", "CollectiveFailed"),
                         ("pcdsl.runtime.distributed", "LaunchError"),
                         ("pcdsl.runtime.generate", "GenerationError"), ("pcdsl.visual.curves", "PlotError"),
                         ("pcdsl.visual.graph", "GraphError"),
                         ("pcdsl.fmt.layout", "FormatError"),
                         ("pcdsl.export.onnx", "ExportError")):
        try:
            kinds.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(kinds)


def _rank() -> int:
    """This process's rank when torchrun (or `train --nproc`) started it, else 0."""
    return int(os.environ.get("RANK", "0") or 0)


def reports_errors(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            result = _reported(command, args, kwargs)
        except SystemExit as exit:
            _leave_if_distributed(exit.code)
            raise
        _leave_if_distributed(0)
        return result
    return wrapper


def _leave_if_distributed(code) -> None:
    """A training process that has left its process group ends here, with its status and its
    output flushed, skipping the interpreter's teardown: there gloo's C++ threads, destroyed in
    an order the process group's shutdown does not fix, abort the process now and then
    ("terminate called without an active exception", status 134 after a finished run; seen in
    about 1 run in 3 on a loaded machine, never with this exit)."""
    distributed = sys.modules.get("pcdsl.runtime.distributed")
    if distributed is None or not distributed.left_process_group():
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _reported(command, args, kwargs):
    """The command, its errors reported as the user's or as pcdsl's own, with exit statuses."""
    rank = _rank()
    # one of several training processes: rank 0 reports the run's errors (the others hold the
    # same, or rank 0's); what only this process met is reported with its rank
    who = f"rank {rank}: " if rank else ""
    try:
        return command(*args, **kwargs)
    except PcdslError as err:
        if not rank:
            click.echo(err.render(), err=True)
        sys.exit(1)
    except _user_errors() as err:
        if hasattr(err, "metrics"):      # a training run stopped (its log has said how to go on)
            sys.exit(143 if getattr(err, "signal", None) == "SIGTERM" else 130)
        if not (rank and type(err).__name__ == "RunError"):
            click.echo(f"{who}error: {err}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        if not rank:
            click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # an internal error: short, with a way to see more
        if os.environ.get("PCDSL_DEBUG"):
            raise
        click.echo(f"{who}internal error: {type(err).__name__}: {err}\n"
                   "(this is a bug in pcdsl; rerun with PCDSL_DEBUG=1 for the traceback)", err=True)
        sys.exit(2)


class _Commands(click.Group):
    """The command group, keeping the arguments it was given (ctx.meta["pcdsl.arguments"]):
    `train --nproc` starts each process with them."""

    def parse_args(self, ctx, args):
        ctx.meta["pcdsl.arguments"] = list(args)
        return super().parse_args(ctx, args)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcdsl")
def main():
    """pcdsl: write an energy model in text, compile it to PyTorch, train it with centered EP."""


def _finite_beta(context, parameter, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a positive finite number (the nudging strength)")
    return value


_beta_option = click.option("--beta", type=float, callback=_finite_beta,
                            help="Nudging strength (default: the model file's).")
_set_option = click.option("--set", "set_items", multiple=True, metavar="KEY=VALUE",
                           help="Override a train setting or a size (repeatable), e.g. --set beta=0.01 --set S=64.")


@main.command()
@click.argument("model_file", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_set_option
@reports_errors
def check(model_file, as_json, set_items):
    """Validate MODEL_FILE (a path, or a shipped model's name); show states, shapes, parameters,
    the derived update of each state and why, the update groups and the free phase."""
    from ..pipeline import check_file
    from ..report import format_report, model_report
    compiled = check_file(model_file, set_items)
    report = model_report(compiled.checked)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@main.command(name="compile")
@click.argument("model_file", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the module here (default: stdout).")
@_set_option
@reports_errors
def compile_command(model_file, output, set_items):
    """Compile MODEL_FILE to a standalone PyTorch module."""
    from ..pipeline import compile_file
    compiled = compile_file(model_file, set_items)
    if output is None:
        click.echo(compiled.source, nl=False)
        return
    _write_output(Path(output), compiled.source)
    click.echo(f"wrote {output} ({compiled.checked.parameter_count:,} parameters)", err=True)


def _write_output(path: Path, text: str) -> None:
    """Write the -o file atomically, with any OS error phrased for the user."""
    if path.parent and not path.parent.exists():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        atomic_write(path, text)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}")


@main.command()
@click.argument("model_file", type=click.Path())
@click.option("--data", "data_spec", default="digits", show_default=True,
              help="digits | a folder of MNIST idx files | a folder with train/ and test/ (or val/) class folders.")
@click.option("--epochs", type=int, help="Number of epochs (default: the model file's).")
@click.option("--algorithm", type=click.Choice(["ep", "bp", "rbp", "pcil", "ipc"]),
              help="ep (default); an exact-gradient baseline: bp (backprop through the free phase) or rbp "
                   "(implicit differentiation at its equilibrium, for relaxation models); or pcil "
                   "(predictive-coding inference learning, output clamped, for feedforward PCNs) or ipc "
                   "(the same with a weight step at every sweep).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder (default: runs/<model>-<algorithm>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--limit", type=int, help="Use only this many training (and test) examples: a quick run.")
@click.option("--workers", type=int, help="Data-loading worker processes for image folders.")
@click.option("--compile/--no-compile", "compile_step", default=None,
              help="torch.compile the whole training step (default: on a GPU only).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC layout for convolutions (default: when the model has any).")
@click.option("--cuda-graphs/--no-cuda-graphs", default=None,
              help="With --compile on a GPU: replay the step as CUDA graphs (default: on).")
@click.option("--lean-memory", is_flag=True,
              help="EP: form each nudged phase's parameter products when it ends (about 23% less "
                   "activation memory on VGG10; docs/benchmarks.md).")
@click.option("--stop-on-divergence", is_flag=True,
              help="Stop a run whose loss has exploded or whose accuracy fell back to chance for "
                   "`divergence_steps` steps (it is always reported).")
@click.option("--skip-bad-images", is_flag=True,
              help="Leave image files that cannot be read out of their batches, and count them, instead of "
                   "stopping with an error naming the first.")
@click.option("--nproc", type=click.IntRange(min=1), metavar="N",
              help="Train with N processes on this machine (one per GPU; gloo on the CPU), started by "
                   "torch's launcher as torchrun would; the batch is all processes' together.")
@click.option("--tensorboard", is_flag=True,
              help="Also write each epoch's metrics as TensorBoard scalars in RUNDIR/tensorboard/ "
                   "(pip install \"pcdsl[tensorboard]\"); a resumed run continues the log.")
@click.option("--diagnostics", is_flag=True,
              help="Record how each epoch's relaxations end (relax/... in metrics.jsonl): the energy at the end "
                   "of each phase and each state's change at its last iteration, on a fixed test batch.")
@_set_option
@reports_errors
def train(model_file, data_spec, epochs, algorithm, out_dir, resume, limit, workers, compile_step, channels_last,
          cuda_graphs, lean_memory, stop_on_divergence, skip_bad_images, nproc, tensorboard, diagnostics, set_items):
    """Train MODEL_FILE with the defaults of its train block (EP, or --algorithm bp).

    Under torchrun (or with --nproc) the processes train one run together: each takes its share
    of every batch, rank 0 writes the run folder (docs/architecture.md, "Several processes")."""
    if tensorboard:           # before anything is compiled, loaded, launched or written
        from ..runtime.tensorboard_log import tensorboard_missing
        problem = tensorboard_missing()
        if problem:
            raise UserError(problem)
    if nproc is not None and "LOCAL_WORLD_SIZE" not in os.environ:
        return _launch_local(nproc)
    if nproc is not None and int(os.environ["LOCAL_WORLD_SIZE"]) != nproc:
        raise UserError(f"--nproc {nproc}: this process was started as one of {os.environ['LOCAL_WORLD_SIZE']} "
                        "on its machine by torchrun; drop --nproc under torchrun")
    from ..data import load_data_for
    from ..pipeline import compile_file
    from ..runtime.trainer import train as run_training
    items = list(set_items)
    if algorithm:
        items.append(f"algorithm={algorithm}")
    if epochs is not None:
        items.append(f"epochs={epochs}")
    if stop_on_divergence:
        items.append("stop_on_divergence=true")
    compiled = compile_file(model_file, items)
    config = compiled.ir.train
    out = Path(out_dir) if out_dir else _default_run_dir(f"{compiled.ir.name}-{config.algorithm}", resume)
    data = load_data_for(data_spec, tuple(compiled.checked.shapes[compiled.ir.input.name].value),
                         config, augment=True, limit_train=limit, limit_test=limit, workers=workers,
                         skip_unreadable=skip_bad_images)
    num_classes = (compiled.checked.shapes[compiled.ir.cost.output].value[0] if compiled.ir.cost is not None
                   else data.num_classes)         # a generative model reads no labels
    if data.num_classes > num_classes:
        raise UserError(f"the data has {data.num_classes} classes but the model's output "
                        f"`{compiled.ir.cost.output}` has {num_classes}")
    run_training(compiled.source, compiled.text, Path(compiled.file).name, config, data, out,
                 resume=resume, data_spec=data_spec, log=lambda m: click.echo(m, err=True),
                 compile=compile_step, channels_last=channels_last, cuda_graphs=cuda_graphs,
                 lean_memory=lean_memory, sets=items, tensorboard=tensorboard, diagnostics=diagnostics)


SHUTDOWN_SECONDS = 300      # how long the launcher waits for stopping processes before it kills them


def _launch_local(nproc: int) -> None:
    """`pcdsl train --nproc N`: the same command as N processes of one run on this machine,
    started and watched by torch's elastic launcher (what torchrun --standalone does); each sees
    --nproc with the launcher's environment and trains. Exits with the processes' status."""
    from uuid import uuid4

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    if nproc > 1 and "OMP_NUM_THREADS" not in os.environ:
        # N processes share the cores rather than each starting a thread per core
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // nproc))
    # a stop signal lets each process finish its step and rank 0 write a checkpoint: the
    # launcher's 30 s before it kills them may not cover an evaluation and a VGG10 checkpoint
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_SECONDS))
    options = {"shutdown_timeout": SHUTDOWN_SECONDS} if "shutdown_timeout" in LaunchConfig.__dataclass_fields__ else {}
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"pcdsl-{uuid4().hex[:12]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, **options)
    arguments = click.get_current_context().meta["pcdsl.arguments"]
    # the processes import the pcdsl this one runs: its folder first on their path, and (-P)
    # not a `pcdsl` folder that happens to be in the current one
    here = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    isolated = ("-P",) if sys.version_info >= (3, 11) else ()
    try:
        elastic_launch(config, sys.executable)(*isolated, "-m", "pcdsl", *arguments)
    except ChildFailedError as error:     # the failing process has said why, unless it was killed
        # the status of the process that failed first (the others were stopped because it did);
        # a negative code is a process killed by that signal: the shell's 128 + signal
        rank, failure = error.get_first_failure()
        code = failure.exitcode
        if code < 0:      # killed: it could not say so, and the launcher may stop the others first
            import signal as signals
            try:
                name = signals.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            click.echo(f"error: training process {rank} was killed by {name}; the run stopped with it (its last "
                       "checkpoint is kept: continue with the same command and --resume)", err=True)
        sys.exit(128 - code if code < 0 else code)
    except SignalException as error:       # the launcher stopped the processes on a signal
        sys.exit(128 + int(error.sigval))


def _default_run_dir(name: str, resume: bool) -> Path:
    """runs/NAME, then runs/NAME-2, ...: a rerun without --out starts a fresh folder (nothing is
    overwritten); --resume without --out continues the newest one."""
    candidates = [Path("runs") / name] + [Path("runs") / f"{name}-{i}" for i in range(2, 10_000)]
    existing = [c for c in candidates[:1] if c.exists()]
    for candidate in candidates[1:]:
        if not candidate.exists():
            break
        existing.append(candidate)
    if resume:
        if not existing:
            raise UserError(f"--resume: no run folder {candidates[0]} to continue (give --out)")
        return existing[-1]
    return next(c for c in candidates if not c.exists())


@main.command(name="models")
@click.option("--json", "as_json", is_flag=True, help="Print name -> description as JSON.")
@reports_errors
def models_command(as_json):
    """List the reference models shipped with pcdsl; every command takes their names as MODEL_FILE."""
    from ..shipped import shipped_models
    found = shipped_models()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    width = max(len(name) for name in found)
    for name, summary in found.items():
        click.echo(f"{name.ljust(width)}  {summary}")


@main.command(name="eval")
@click.argument("path", type=click.Path())
@click.option("--data", "data_spec", help="Data to evaluate on (default: the run's).")
@click.option("--limit", type=int, help="Evaluate on the first N test examples only.")
@click.option("--skip-bad-images", is_flag=True,
              help="Leave test images that cannot be read out, and count them (\"skipped\").")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@reports_errors
def eval_command(path, data_spec, limit, skip_bad_images, as_json):
    """Evaluate a run folder or a checkpoint file on the test split."""
    from ..runtime.trainer import evaluate_run
    metrics = evaluate_run(Path(path), data_spec, limit=limit, skip_unreadable=skip_bad_images)
    if not metrics["same_module"]:
        click.echo("note: the installed pcdsl generates different code from this run's model file than the "
                   "version that trained it; the parameters fit, and the evaluation uses the new code", err=True)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        # a reconstruction error (a mean squared error) is small: significant digits, not places
        click.echo("  ".join(f"{k}={v:.4g}" if k in ("reconstruction_error", "top_down_error") else
                             f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="Also write every number behind it as CSV.")
@reports_errors
def plot(runs, output, csv_file):
    """Training curves of one or more run folders, overlaid: train and test loss, accuracy
    (top-1, top-5 where it applies) and learning rate per epoch, each run labelled by model and
    algorithm (EP beside BP of the same model is the common case)."""
    from ..visual.curves import curves_csv, run_curves
    from ..visual.figures import training_figure
    targets = [Path(output)] + ([Path(csv_file)] if csv_file else [])
    _require_folders(targets)
    _require_png(Path(output))
    curves = [run_curves(Path(run)) for run in runs]
    for run in curves:
        if run.skipped_lines:
            click.echo(f"note: {run.folder}/metrics.jsonl has {run.skipped_lines} unreadable line(s), left out",
                       err=True)
    _write_bytes(Path(output), training_figure(curves))
    if csv_file:
        _write_output(Path(csv_file), curves_csv(curves))
    click.echo(f"wrote {output} ({len(curves)} run(s): {', '.join(r.label for r in curves)})", err=True)


@main.command()
@click.argument("source", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="Also write the numbers as CSV.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Also write the numbers as JSON.")
@click.option("--data", "data_spec", help="Take the batch from this data set (default: a run's own data; "
                                           "for a model file, random inputs).")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@_beta_option
@click.option("--steps", type=click.IntRange(1), help="Iterations per nudged phase (default: the model file's).")
@click.option("--free-steps", type=click.IntRange(1), help="Free-phase iterations (relaxation models).")
@click.option("--seed", type=int, default=0, show_default=True, help="Initial weights (model file) and inputs.")
@_set_option
@reports_errors
def trace(source, output, csv_file, json_file, data_spec, batch, beta, steps, free_steps, seed, set_items):
    """Trace the relaxation on one batch: per iteration of the free phase and of both nudged
    phases, each energy term, the total energy, the cost and each state's change. SOURCE is a
    model file (weights initialised from --seed) or a run folder or checkpoint (its weights)."""
    import torch
    from ..visual.figures import trace_figure
    from ..visual.trace import first_non_finite, relaxation_trace, trace_csv, trace_json
    _require_folders([Path(p) for p in (output, csv_file, json_file) if p])
    _require_png(Path(output))
    generator = torch.Generator().manual_seed(seed)
    if Path(source).is_dir() or Path(source).suffix == ".pt":
        from ..runtime.trainer import load_run, run_data
        if set_items:
            raise UserError("--set applies to a model file; a run's model is the one it trained")
        loaded = load_run(Path(source), device="cpu")
        model, config, what = loaded.model, loaded.config, f"{loaded.model.NAME}, epoch {loaded.checkpoint['epoch']}"
        x, label = next(iter(run_data(loaded, data_spec, limit_train=1, limit_test=batch).test.batches(
            batch, shuffle=False)))
    else:
        from ..pipeline import compile_file
        from ..runtime.loading import load_model_class
        compiled = compile_file(source, list(set_items))
        config = compiled.ir.train
        torch.manual_seed(seed)
        model = load_model_class(compiled.source)()
        model.reset_parameters(generator)
        x, label = _gradcheck_batch(model, compiled, data_spec, batch, generator)
        what = f"{compiled.ir.name}, initial weights (seed {seed})"
    model.eval()
    if model.OUTPUT is not None and config.algorithm != "ep":
        click.echo(f"note: the trace shows EP's free and nudged phases; {model.NAME} trains with "
                   f"{config.algorithm}, whose own sweeps are not traced", err=True)
    phases = relaxation_trace(model, x.to(next(model.parameters()).dtype), label,
                              beta=config.beta if beta is None else beta,
                              steps=config.steps if steps is None else steps,
                              free_steps=free_steps or config.free_steps, scheme=config.scheme,
                              mod=config.update == "modpgd", synchronous=config.traversal == "sync",
                              label_state=config.label_state if model.OUTPUT is None else None)
    ran_away = first_non_finite(phases)
    if ran_away:
        click.echo(f"warning: the relaxation ran away: the energy is not finite from iteration {ran_away[1]} of "
                   f"the {ran_away[0]} phase (a smaller relax step, beta or learning rate)", err=True)
    _write_bytes(Path(output), trace_figure(phases, f"{what}: batch of {x.shape[0]}"))
    if csv_file:
        _write_output(Path(csv_file), trace_csv(phases))
    if json_file:
        _write_output(Path(json_file), json.dumps(trace_json(phases), indent=1))
    last = phases[-1]
    click.echo(f"wrote {output} ({', '.join(f'{p.name}: {len(p.iterations) - 1} iterations' for p in phases)}; "
               f"energy at the end of {last.name}: {last.total[-1]:.4g})", err=True)


@main.command()
@click.argument("model_file", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="FILE.dot (DOT text, always), FILE.svg or FILE.png (drawn by Graphviz's dot, where installed).")
@_set_option
@reports_errors
def graph(model_file, output, set_items):
    """Draw the network MODEL_FILE describes: input, states, output and label as nodes with their
    shapes, the states coloured by update group; each prediction as arrows from what it reads,
    labelled with its parameters; general energy terms as notes joined to what they hold."""
    from ..pipeline import check_file
    from ..visual.graph import RENDERED, model_dot, render
    target = Path(output)
    _require_folders([target])
    suffix = target.suffix.lower()
    if suffix not in (".dot", ".gv") and suffix not in RENDERED:
        raise UserError(f"cannot tell the format of {target}: name it .dot (or .gv), .svg or .png")
    text = model_dot(check_file(model_file, set_items).checked)
    if suffix in RENDERED:
        _write_bytes(target, render(text, RENDERED[suffix]))
    else:
        _write_output(target, text)
    click.echo(f"wrote {output}", err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a file is not in the canonical layout.")
@reports_errors
def fmt(files, check):
    """Rewrite model files in the canonical layout: one statement per line, two-space blocks,
    one space around operators, declarations aligned in columns, comments kept. The result must
    parse to the same tree, or nothing is written."""
    from ..diagnostics import PcdslError
    from ..fmt import format_text
    changed = []
    for name in files:
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}")
        try:
            formatted = format_text(text)
        except PcdslError as err:
            raise err.located(str(path), text)
        if formatted == text:
            continue
        changed.append(path)
        if not check:
            _write_output(path, formatted)
    verb = "would reformat" if check else "reformatted"
    for path in changed:
        click.echo(f"{verb} {path}", err=True)
    click.echo(f"{len(changed)} of {len(files)} file(s) {verb}" if changed else
               f"{len(files)} file(s) already in the canonical layout", err=True)
    if check and changed:
        sys.exit(1)


@main.command()
@reports_errors
def lsp():
    """Run the language server on standard input and output, for editors: pcdsl's diagnostics
    as you type, hover with each state's shape and derived update rule, go to definition (macros,
    states, sizes), completion, an outline and formatting. editors/vscode starts it; any LSP
    client can."""
    try:
        from ..editor.language_server import serve_stdio
    except ImportError as err:
        raise UserError(f"the language server needs pygls ({err}): pip install \"pcdsl[lsp]\"")
    serve_stdio()


@main.command()
@click.argument("source", type=click.Path())
@click.option("--onnx", "onnx_file", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Initial weights of a model file; check inputs.")
@_set_option
@reports_errors
def export(source, onnx_file, seed, set_items):
    """Export the inference path (the free phase to the output's scores; a generative model's
    reconstruction) of a run folder, a checkpoint or a model file (initial weights) as ONNX,
    and check it against PyTorch with onnxruntime."""
    import torch
    from ..export.onnx import export_onnx
    _require_folders([Path(onnx_file)])
    generator = torch.Generator().manual_seed(seed)
    if Path(source).is_dir() or Path(source).suffix == ".pt":
        from ..runtime.trainer import load_run
        if set_items:
            raise UserError("--set applies to a model file; a run's model is the one it trained")
        loaded = load_run(Path(source), device="cpu")
        model, what = loaded.model, f"epoch {loaded.checkpoint['epoch']} of {source}"
    else:
        from ..pipeline import compile_file
        from ..runtime.loading import load_model_class
        compiled = compile_file(source, list(set_items))
        model = load_model_class(compiled.source)()
        model.reset_parameters(torch.Generator().manual_seed(seed))
        what = f"initial weights (seed {seed})"
    report = export_onnx(model, Path(onnx_file), generator=generator)
    checked = (f"onnxruntime matches PyTorch to {report['max_abs_error']:.2g} (batch of {report['batch']})"
               if report["checked"] else "not checked: onnxruntime is not installed")
    click.echo(f"wrote {onnx_file} ({model.NAME}, {what}; {report['parameters']:,} parameters, "
               f"output `{report['output']}`; {checked})", err=True)


def _require_png(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise UserError(f"{path}: the picture is written as PNG; name it .png")


def _require_folders(targets: list[Path]) -> None:
    for target in targets:
        if target.parent and not target.parent.exists():
            raise UserError(f"cannot write {target}: folder {target.parent} does not exist")


@main.command()
@click.argument("path", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file of the samples.")
@click.option("--count", type=click.IntRange(1, 4096), default=None,
              help="Samples to draw (default 64; a generative classifier draws --columns per class).")
@click.option("--columns", type=click.IntRange(1, 256), default=8, show_default=True, help="Images per row.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fit-examples", type=click.IntRange(2), default=1000, show_default=True,
              help="Training examples whose inferred top states the sampling Gaussian is fitted to.")
@click.option("--reconstructions", type=click.Path(dir_okay=False),
              help="Also write a PNG of test examples (odd rows) above their reconstructions (even rows).")
@click.option("--data", "data_spec", help="Data to fit and reconstruct (default: the run's).")
@reports_errors
def sample(path, output, count, columns, seed, fit_examples, reconstructions, data_spec):
    """Generate images from a trained generative model (a run folder or a checkpoint file):
    top states drawn from a Gaussian fitted to those the model infers for training data, the
    rest predicted top-down (docs/language.md, generative models). A generative classifier
    (`pcil(label=...)`) gives one row of --columns samples per class instead of --count."""
    import torch
    from ..runtime import generate
    from ..runtime.trainer import check_classes, load_run, run_data
    _require_folders([Path(output)] + ([Path(reconstructions)] if reconstructions else []))
    loaded = load_run(Path(path))
    model, config = loaded.model, loaded.config
    generate.require_generative(model)
    generate.as_images(torch.zeros((1, *model.INPUT_SHAPE)), tuple(model.INPUT_SHAPE))   # images at all?
    data = run_data(loaded, data_spec, limit_train=fit_examples, limit_test=columns * 4)
    check_classes(model, data, config)
    if config.label_state and count is not None:
        click.echo(f"note: {model.NAME} is a generative classifier: --count is replaced by --columns samples per "
                   "class", err=True)
    count = 64 if count is None else count
    batches = data.train.batches(config.eval_batch, shuffle=False)
    fitted = generate.fit_top_distribution(model, batches, config.free_steps, config.label_state)
    generator = torch.Generator().manual_seed(seed)
    clamped, drawn = None, f"top states {', '.join(fitted)}"
    if config.label_state:      # generative classification: a row of samples per class
        classes = model.STATE_SHAPES[config.label_state][0]
        count, columns_per_class = classes * columns, columns
        label = torch.arange(classes).repeat_interleave(columns_per_class)
        clamped = {config.label_state: torch.nn.functional.one_hot(label, classes).to(next(model.parameters()))}
        drawn = (f"one row per class ({config.label_state} clamped to its one-hot code)"
                 + (f", top states {', '.join(fitted)}" if fitted else ""))
    samples = generate.sample(model, fitted, count, generator, clamped)
    images = generate.as_images(samples, tuple(model.INPUT_SHAPE), config.mean, config.std)
    _write_bytes(Path(output), generate.image_grid(images, columns))
    click.echo(f"wrote {output} ({count} samples; {drawn}"
               + (f" fitted to {min(fit_examples, len(data.train))} training examples" if fitted else "") + ")",
               err=True)
    if reconstructions:
        reference = next(model.parameters())
        x = next(iter(data.test.batches(columns * 4, shuffle=False)))[0].to(reference.device, reference.dtype)
        width = min(columns, x.shape[0])
        x = x[:x.shape[0] // width * width]          # whole rows
        rebuilt = generate.reconstruct(model, x, config.free_steps, config.label_state)
        error = float(((rebuilt - x) ** 2).mean())
        # row pairs: examples, then their reconstructions
        pairs = torch.stack([x.unflatten(0, (-1, width)), rebuilt.unflatten(0, (-1, width))], 1)
        shown = generate.as_images(pairs.flatten(0, 2), tuple(model.INPUT_SHAPE), config.mean, config.std)
        _write_bytes(Path(reconstructions), generate.image_grid(shown, width))
        click.echo(f"wrote {reconstructions} ({x.shape[0]} test examples and their reconstructions; "
                   f"mean squared error {error:.4g})", err=True)


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}")


@main.command()
@click.argument("model_file", type=click.Path())
@_beta_option
@click.option("--steps", type=int, help="Relaxation iterations per phase (default: the model file's).")
@click.option("--free-steps", type=int, help="Free-phase iterations (non-feedforward models).")
@click.option("--batch", type=int, default=4, show_default=True)
@click.option("--scheme", type=click.Choice(["centered", "forward", "backward"]), default=None)
@click.option("--dtype", type=click.Choice(["float32", "float64", "bf16"]), default="float64", show_default=True,
              help="bf16: the estimate in mixed precision (as `precision bf16` trains), the oracle in float64.")
@click.option("--data", "data_spec", help="Take the batch from this data set (default: random inputs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--algorithm", type=click.Choice(["ep", "rbp", "pcil"]), default="ep", show_default=True,
              help="rbp: check recurrent backprop (implicit differentiation at the free equilibrium, "
                   "--adjoint-steps iterations) instead of EP; pcil: predictive-coding inference learning "
                   "with the output nudged by --beta, --steps sweeps (a generative model: its update "
                   "against autograd of the relaxed energy).")
@click.option("--adjoint-steps", type=int, help="rbp: adjoint iterations (default: the free phase's).")
@click.option("--min-cosine", type=float, default=None,
              help="Exit 1 when a tensor's cosine is below this (default 0.999; with --dtype bf16 0.98, "
                   "and a tensor within 0.005 of bf16 backprop's own cosine also passes, "
                   "docs/architecture.md).")
@click.option("--json", "as_json", is_flag=True)
@_set_option
@reports_errors
def gradcheck(model_file, beta, steps, free_steps, batch, scheme, dtype, data_spec, seed, algorithm, adjoint_steps,
              min_cosine, as_json, set_items):
    """Compare the EP gradient estimate (or recurrent backprop's, --algorithm rbp) with
    backprop's gradient on one batch, per parameter."""
    import torch
    from ..pipeline import compile_file
    from ..runtime.gradcheck import gradcheck as run_gradcheck
    from ..runtime.loading import load_model_class
    if algorithm in ("rbp", "pcil") and dtype == "bf16":
        raise UserError(f"--algorithm {algorithm} is checked in float64 or float32, not bf16")
    # the checker refuses bf16 where EP cannot keep the gradient in it (E405)
    # (and recurrent backprop where the free phase is not a relaxation, E408)
    compiled = compile_file(model_file, list(set_items) + (["algorithm=ep", "precision=bf16"] if dtype == "bf16" else [])
                            + ([f"algorithm={algorithm}"] if algorithm in ("rbp", "pcil") else []))
    cfg = compiled.ir.train
    if algorithm == "pcil" and not compiled.ir.generative and (cfg.inference_precision != "uniform"
                                                               or cfg.weight_update == "forward"):
        raise UserError("--algorithm pcil checks PC-IL against backprop as beta -> 0; precision schedules and the "
                        "forward update move its update away from the cost's gradient by design, so there is no "
                        "oracle for them here (tests/oracle_autograd checks them against hand-written sweeps)")
    beta = cfg.beta if beta is None else beta
    steps = cfg.steps if steps is None else steps
    scheme = scheme or ("centered" if cfg.scheme == "random" else cfg.scheme)
    torch.manual_seed(seed)
    # bf16 is mixed precision: float32 weights (drawn in float64 like the oracle's), bfloat16 products
    model_dtype = torch.float64 if dtype == "bf16" else getattr(torch, dtype)
    precision = "bf16" if dtype == "bf16" else "float32"
    min_cosine = min_cosine if min_cosine is not None else (BF16_MIN_COSINE if dtype == "bf16" else 0.999)
    model = load_model_class(compiled.source)().to(model_dtype)
    generator = torch.Generator().manual_seed(seed)
    model.reset_parameters(generator)
    x, label = _gradcheck_batch(model, compiled, data_spec, batch, generator)
    result = run_gradcheck(model, x.to(model_dtype), label, beta, steps, scheme=scheme,
                           mod=cfg.update == "modpgd", synchronous=cfg.traversal == "sync", free_steps=free_steps,
                           perturbation=cfg.perturbation,
                           precision=precision, algorithm=algorithm,
                           adjoint_steps=adjoint_steps if adjoint_steps is not None else cfg.adjoint_steps,
                           label_state=cfg.label_state)
    result.update({"model": compiled.ir.name, "algorithm": algorithm, "beta": beta, "steps": steps, "scheme": scheme, "dtype": dtype,
                   "batch": batch, "threshold": min_cosine,
                   "passed": all(p["cosine"] >= min_cosine or p["cosine"] >= p.get("bp_same_precision_cosine", 2) - BF16_SLACK
                                 for p in result["params"])})
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        if compiled.ir.generative:
            click.echo(f"{compiled.ir.name}: generative inference learning vs autograd of the relaxed energy "
                       f"through the relaxation, {free_steps or cfg.free_steps} steps, {dtype} batch={batch}")
        elif algorithm == "rbp":
            click.echo(f"{compiled.ir.name}: recurrent backprop (implicit differentiation) vs backprop through the "
                       f"relaxation, {dtype} batch={batch}")
        elif algorithm == "pcil":
            click.echo(f"{compiled.ir.name}: PC inference learning (output nudged by beta) vs backprop, beta={beta:g} "
                       f"steps={steps} update={cfg.update} {dtype} batch={batch}")
        else:
            clamped = " perturbation=clamp" if cfg.perturbation == "clamp" else ""
            click.echo(f"{compiled.ir.name}: EP ({scheme}) vs backprop, beta={beta:g} steps={steps}"
                       f"{clamped} {dtype} batch={batch}")
        width = max(len(p["name"]) for p in result["params"])
        for p in result["params"]:
            same = (f"  (bf16 backprop: cosine {p['bp_same_precision_cosine']:.6f})"
                    if "bp_same_precision_cosine" in p else "")
            click.echo(f"  {p['name'].ljust(width)}  cosine {p['cosine']:.6f}  rel.error {p['rel_error']:.2e}{same}")
        slack = f", or within {BF16_SLACK} of bf16 backprop's" if dtype == "bf16" else ""
        click.echo(f"min cosine {result['min_cosine']:.6f} ({'ok' if result['passed'] else 'BELOW'} threshold "
                   f"{min_cosine}{slack})")
    if not result["passed"]:
        sys.exit(1)


@main.command()
@click.argument("model_file", type=click.Path())
@click.option("--batch", type=int, default=None, help="Batch size (default: the model file's).")
@click.option("--steps", type=int, help="Relaxation iterations per phase (default: the model file's).")
@click.option("--dtype", type=click.Choice(["float32", "float64", "bf16"]), default="float32", show_default=True,
              help="bf16: mixed precision (bfloat16 products, float32 states), as `precision bf16` trains.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--compile/--no-compile", "compile_step", default=None,
              help="Time the torch.compile'd steps, and the eager ones beside them (default: on a GPU).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC layout for every variant (default: when the model has convolutions).")
@click.option("--rounds", type=int, default=5, show_default=True, help="Timed rounds (every variant once per round).")
@click.option("--warmup", type=int, default=2, show_default=True, help="Untimed calls of each variant first.")
@click.option("--threads", type=int, help="torch.set_num_threads (CPU).")
@click.option("--reference/--no-reference", default=True, show_default=True,
              help="Also time the straightforward eager EP step (autograd on the energy).")
@click.option("--cuda-graphs/--no-cuda-graphs", default=None,
              help="With --compile on a GPU: replay the steps as CUDA graphs (default: on).")
@click.option("--lean-memory", is_flag=True, help="EP: each nudged phase's products formed when it ends.")
@click.option("--memory-budget", type=float, metavar="GB",
              help="Also find the largest batch whose step fits this many GB (10^9 bytes), EP and BP, "
                   "from a fake-tensor trace (no computation; 2.5%% kept in reserve, at most 2 GB).")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@_set_option
@reports_errors
def bench(model_file, batch, steps, dtype, device, compile_step, channels_last, rounds, warmup, threads,
          reference, cuda_graphs, lean_memory, memory_budget, as_json, set_items):
    """Time pcdsl's EP step, the straightforward eager EP step and the backprop step of one
    network, interleaved round by round; report ms/step, images/s, TFLOP/s from the compiler's
    FLOP count, EP/BP against that count's ratio, and compiled/reference."""
    import torch
    from ..pipeline import compile_file
    from ..plan.cost import step_flops
    from ..runtime import bench as benchmarks
    from ..runtime.loading import load_model_class
    from ..runtime.step import default_options
    if rounds < 1 or warmup < 1:
        raise UserError("--rounds and --warmup must be at least 1")
    if threads is not None:
        if threads < 1:
            raise UserError("--threads must be at least 1")
        torch.set_num_threads(threads)
    items = list(set_items) + ([f"steps={steps}"] if steps is not None else [])
    items += ["precision=bf16"] if dtype == "bf16" else []
    compiled = compile_file(model_file, items)
    config = compiled.ir.train
    if compiled.ir.generative:
        raise UserError(f"pcdsl bench times EP and backprop steps; {compiled.ir.name} is generative (no cost) and "
                        "trains with pcil only")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    target = torch.device(device)
    torch.manual_seed(0)
    model = load_model_class(compiled.source)().to(device=target, dtype=torch.float64 if dtype == "float64" else torch.float32)
    model.reset_parameters(torch.Generator().manual_seed(0))
    options = default_options(model, target, compile=compile_step, channels_last=channels_last,
                              cuda_graphs=cuda_graphs, lean_memory=lean_memory)
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    batch = batch or config.batch
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *model.INPUT_SHAPE), generator=generator)
    label = torch.randint(0, model.NUM_CLASSES, (batch,), generator=generator)
    x, label = benchmarks.TrainStep(model, config, options).prepare(x, label)
    variants = benchmarks.make_variants(model, compiled, config, x, label, options, reference=reference)
    results = benchmarks.bench_variants(variants, target, rounds=rounds, warmup=warmup)
    flops = step_flops(compiled.plan, config.steps, config.scheme, config.free_steps)
    cost_model = (4 * config.steps + 3) / 3 if model.FEEDFORWARD else None
    summary = benchmarks.summarise(results, variants, flops, batch, target, config.precision, model.NUM_CLASSES,
                                   cost_model)
    summary.update({"model": compiled.ir.name, "batch": batch, "steps": config.steps, "beta": config.beta,
                    "dtype": dtype, "device": benchmarks.device_name(target), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "compile": options.compile,
                    "cuda_graphs": options.compile and options.cuda_graphs, "channels_last": options.channels_last,
                    "lean_memory": options.lean_memory, "rounds": rounds, "warmup": warmup})
    if memory_budget is not None:
        summary["largest_batch"] = _largest_batches(compiled, config, memory_budget * 1e9)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(_bench_text(summary))


def _largest_batches(compiled, config, budget: float) -> dict:
    from ..runtime.loading import load_model_class
    from ..runtime.memory import largest_batch
    model_class = load_model_class(compiled.source)
    fits = {"ep": largest_batch(model_class, config.model_copy(update={"algorithm": "ep"}), budget),
            "ep_lean_memory": largest_batch(model_class, config.model_copy(update={"algorithm": "ep"}), budget,
                                            lean_memory=True),
            "bp": largest_batch(model_class, config.model_copy(update={"algorithm": "bp"}), budget)}
    return {"budget_bytes": budget, **{name: {"batch": fit.largest_batch, "per_example_bytes": fit.per_example_bytes,
                                               "fixed_bytes": fit.fixed_bytes, "traced_peak_bytes": fit.traced_peak_bytes}
                                        for name, fit in fits.items()}}


def _bench_text(summary: dict) -> str:
    settings = ", ".join(name for name, on in (("compiled", summary["compile"]), ("CUDA graphs", summary["cuda_graphs"]),
                                                ("channels_last", summary["channels_last"])) if on) or "eager"
    lines = [f"{summary['model']}: batch {summary['batch']}, K = {summary['steps']}, {summary['dtype']}, "
             f"{summary['device']}, {settings}; medians of {summary['rounds']} interleaved rounds",
             f"  {'variant':<13}{'ms/step':>10}{'images/s':>11}{'TFLOP/s':>10}{'first call':>12}"]
    for name, entry in summary["variants"].items():
        peak = f"  {100 * entry['peak_fraction']:.1f}% of peak" if entry["peak_fraction"] else ""
        memory = f"  {entry['peak_memory_bytes'] / 2**30:.2f} GiB" if entry["peak_memory_bytes"] else ""
        lines.append(f"  {name:<13}{entry['ms_per_step']:>10.2f}{entry['images_per_s']:>11.1f}"
                     f"{entry['tflops']:>10.4f}{entry['first_s']:>11.2f}s{peak}{memory}")
    ratios = summary["ratios"]
    flops = summary["flops_per_example"]
    lines.append(f"  FLOPs per example: EP {flops['ep'] / 1e9:.4g} G, BP {flops['bp'] / 1e9:.4g} G "
                 f"(compiler's count: matrix products only)")
    cost_model = f"; METHOD.md's (4K+3)/3 = {ratios['cost_model']:.2f}" if ratios["cost_model"] else ""
    lines.append(f"  EP / BP time {ratios['ep_over_bp']:.2f} ({ratios['best']['ep']} / {ratios['best']['bp']}, "
                 f"each at its best), FLOP ratio {ratios['flop_ratio']:.2f} "
                 f"(time/FLOP ratio {ratios['ep_over_bp_vs_flops']:.2f}{cost_model})")
    if "reference_over_ep" in ratios:
        lines.append(f"  eager reference EP / pcdsl EP: {ratios['reference_over_ep']:.2f}")
    if "eager_over_compiled_ep" in ratios:
        lines.append(f"  eager / compiled: EP {ratios['eager_over_compiled_ep']:.2f}, BP {ratios['eager_over_compiled_bp']:.2f}")
    if "largest_batch" in summary:
        fits = summary["largest_batch"]
        lines.append(f"  largest batch in {fits['budget_bytes'] / 1e9:g} GB (traced): " + ", ".join(
            f"{name} {fit['batch']} ({fit['per_example_bytes'] / 1e6:.3g} MB per example)"
            for name, fit in fits.items() if name != "budget_bytes"))
    if "imagenet_50_epochs_days" in summary:
        days = summary["imagenet_50_epochs_days"]
        lines.append(f"  50 ImageNet epochs at this speed: EP {days['ep']:.1f} days, BP {days['bp']:.1f} days")
    return "\n".join(lines)


def _gradcheck_batch(model, compiled, data_spec, batch, generator):
    import torch
    shape = tuple(compiled.checked.shapes[compiled.ir.input.name].value)
    classes = model.NUM_CLASSES
    if data_spec is None:
        if classes is None:         # a generative model: data in [0, 1], like images (a classifier's labels)
            x = torch.rand((batch, *shape), generator=generator)
            label_state = compiled.ir.train.label_state
            classes = model.STATE_SHAPES[label_state][0] if label_state else 1
            return x, torch.randint(0, classes, (batch,), generator=generator)
        x = torch.randn((batch, *shape), generator=generator)
        label = torch.randint(0, classes, (batch,), generator=generator)
        return x, label
    from ..data import load_data_for
    data = load_data_for(data_spec, shape, compiled.ir.train, augment=False, limit_test=batch)
    return next(iter(data.test.batches(batch, shuffle=False)))


if __name__ == "__main__":
    main()
