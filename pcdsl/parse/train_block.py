# ---------------------------------------------------------------------------------------------
# The train block and `--set` overrides -> one validated TrainConfig.
#
# Settings read like the paper's recipe (`ep(scheme=centered, beta=0.05, steps=10)`,
# `sgd(lr=0.02, momentum=0.9, nesterov=true)`, `batch 256`); each sets flat TrainConfig keys.
# Command-line overrides (`--set beta=0.01`) then replace keys, and pydantic validates the
# result; a validation error points at the setting that supplied the bad value.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json
import re
from typing import Any, Optional

import lark
from pydantic import ValidationError

from ..diagnostics import PcdslError, did_you_mean, messages
from ..ir.config import TrainConfig
from ..ir.model import SourceSpan
from .spans import diag_span

# setting name -> (keys it sets unconditionally, {argument: config key})
CALL_SETTINGS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "ep": ({"algorithm": "ep"}, {**{k: k for k in ("scheme", "beta", "steps", "free_steps", "update", "traversal")},
                                 "perturb": "perturbation"}),
    "bp": ({"algorithm": "bp"}, {}),
    "rbp": ({"algorithm": "rbp"}, {"free_steps": "free_steps", "adjoint_steps": "adjoint_steps"}),
    "pcil": ({"algorithm": "pcil"}, {"steps": "steps", "update": "update", "free_steps": "free_steps",
                                     "nudge": "output_nudge", "label": "label_state"}),
    "ipc": ({"algorithm": "ipc"}, {"steps": "steps", "update": "update", "nudge": "output_nudge"}),
    "spiking": ({"inference_precision": "spiking"}, {"alpha": "precision_alpha"}),
    "decaying": ({"inference_precision": "decaying"}, {"alpha": "precision_alpha", "rate": "precision_decay"}),
    "precisions": ({"inference_precision": "table"}, {"table": "precision_table"}),
    "forward_update": ({"weight_update": "forward"}, {}),
    "relax": ({}, {"rule": "relax_rule", "step": "relax_step", "momentum": "relax_momentum"}),
    "sgd": ({"optimizer": "sgd"}, {k: k for k in ("lr", "momentum", "nesterov", "weight_decay")}),
    "cosine": ({"schedule": "cosine"}, {"min_lr": "min_lr"}),
    "constant": ({"schedule": "constant"}, {}),
    "init": ({}, {"gain": "init_gain", "fan": "init_fan"}),
    "augment": ({}, {"crop_pad": "crop_pad", "hflip": "hflip"}),
    "normalize": ({}, {"mean": "mean", "std": "std"}),
}
VALUE_SETTINGS = ("batch", "eval_batch", "epochs", "seed", "pad", "keep_checkpoints", "precision",
                  "checkpoint_steps", "checkpoint_minutes", "divergence_steps", "stop_on_divergence")
ALL_SETTINGS = list(CALL_SETTINGS) + ["init_gain"] + list(VALUE_SETTINGS)


def _span(meta) -> SourceSpan:
    return SourceSpan(line=meta.line, column=meta.column, end_line=meta.end_line, end_column=meta.end_column)


def _value(tree) -> Any:
    """A setting value: number, true/false, a word, a string, a list of these."""
    if isinstance(tree, lark.Tree):
        if tree.data == "number":
            text = str(tree.children[0])
            return int(text) if text.isdigit() else float(text)
        if tree.data == "neg":
            inner = _value(tree.children[0])
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                return -inner
        if tree.data == "name":
            word = str(tree.children[0])
            return {"true": True, "false": False}.get(word, word)
        if tree.data == "list":
            return [_value(c) for c in tree.children if c is not None]
        if tree.data == "string":
            return str(tree.children[0])[1:-1]
    raise ValueError("a number, true/false, a word or a list")


def lower_train_block(train: Optional[lark.Tree], overrides: dict[str, Any],
                      variable_names: set[str]) -> tuple[TrainConfig, dict[str, SourceSpan]]:
    """The train config, and where each key was set in the file (keys given with --set have
    none)."""
    values: dict[str, Any] = {}
    spans: dict[str, SourceSpan] = {}
    gains: dict[str, float] = {}

    def put(key, value, meta):
        if key in spans:
            raise PcdslError(messages.DUPLICATE_SETTING, diag_span(_span(meta)), key=key, line=spans[key].line)
        values[key] = value
        spans[key] = _span(meta)

    for setting in (train.children if train is not None else []):
        name_token = setting.children[0]
        name = str(name_token)
        if setting.data == "setting_value":
            if name not in VALUE_SETTINGS:
                raise PcdslError(messages.UNKNOWN_SETTING, diag_span(_span(name_token)), name=name,
                                 hint=_call_hint(name) or did_you_mean(name, ALL_SETTINGS))
            put(name, _checked_value(setting.children[1], name), setting.meta)
            continue
        arguments = [a for a in setting.children[1:] if a is not None]
        if name == "init_gain":
            for arg in arguments:
                key_token, value_tree = arg.children
                if str(key_token) not in variable_names:
                    raise PcdslError(messages.UNKNOWN_NAME, diag_span(_span(key_token)), name=str(key_token),
                                     hint=did_you_mean(str(key_token), variable_names))
                gains[str(key_token)] = _checked_value(value_tree, f"init_gain({key_token})")
            spans["init_gains"] = _span(setting.meta)
            continue
        if name not in CALL_SETTINGS:
            raise PcdslError(messages.UNKNOWN_SETTING, diag_span(_span(name_token)), name=name,
                             hint=did_you_mean(name, ALL_SETTINGS))
        fixed, allowed = CALL_SETTINGS[name]
        for key, value in fixed.items():
            put(key, value, setting.meta)
        for arg in arguments:
            key_token, value_tree = arg.children
            if str(key_token) not in allowed:
                raise PcdslError(messages.UNKNOWN_SETTING_ARG, diag_span(_span(key_token)), setting=name,
                                 key=str(key_token), hint=did_you_mean(str(key_token), allowed))
            put(allowed[str(key_token)], _checked_value(value_tree, str(key_token)), arg.meta)
    if gains:
        values["init_gains"] = gains

    from_command_line = set()
    for key, value in overrides.items():
        if key.startswith("init_gain."):
            state = key.split(".", 1)[1]
            if state not in variable_names:
                raise PcdslError(messages.BAD_OVERRIDE, problem=f"unknown state `{state}` in --set {key}",
                                 hint=did_you_mean(state, variable_names))
            values.setdefault("init_gains", {})[state] = value
            from_command_line.add("init_gains")
        elif key in TrainConfig.model_fields:
            values[key] = value
            spans.pop(key, None)
            from_command_line.add(key)
    try:
        return TrainConfig(**values), spans
    except ValidationError as err:
        first = err.errors()[0]
        problem = first["msg"].removeprefix("Value error, ")
        if first["loc"]:
            key = str(first["loc"][0])
        else:
            # a rule across keys (nesterov needs momentum, mean needs std, ...): blame a key the
            # message names, preferring one given with --set, then one set in the file
            named = [w for w in re.findall(r"[a-z_]+", problem) if w in values]
            key = next((w for w in named if w in from_command_line),
                       next((w for w in named if w in spans), named[0] if named else ""))
        if key in from_command_line:
            given = "init_gain.STATE" if key == "init_gains" else key
            raise PcdslError(messages.BAD_SETTING_VALUE, key=key, problem=problem,
                             hint=f"the value came from --set {given}=...")
        where = spans.get(key) or (train and _span(train.meta))
        raise PcdslError(messages.BAD_SETTING_VALUE, diag_span(where) if where else None,
                         key=key or "train", problem=problem)


def _checked_value(tree, key):
    try:
        return _value(tree)
    except ValueError as err:
        raise PcdslError(messages.BAD_SETTING_VALUE, diag_span(_span(tree.meta)), key=key, problem=str(err))


def _call_hint(name: str) -> Optional[str]:
    """A known call setting written as `name value`: say how it is written."""
    if name in CALL_SETTINGS or name == "init_gain":
        return f"`{name}` takes arguments: {name}(key=value, ...)"
    return None


# ------------------------------------------------------------------ --set key=value
def parse_overrides(items: list[str], size_names: set[str]) -> dict[str, Any]:
    """`["beta=0.01", "S=64", "mean=[0.5]"]` -> typed values; E501 on an unknown key."""
    result: dict[str, Any] = {}
    known = set(TrainConfig.model_fields) | size_names
    for item in items:
        if "=" not in item:
            raise PcdslError(messages.BAD_OVERRIDE, problem=f"--set expects key=value, got `{item}`")
        key, text = (part.strip() for part in item.split("=", 1))
        if not key:
            raise PcdslError(messages.BAD_OVERRIDE, problem=f"--set expects key=value, got `{item}`")
        if key not in known and not key.startswith("init_gain."):
            raise PcdslError(messages.BAD_OVERRIDE, problem=f"unknown key `{key}` in --set",
                             hint=did_you_mean(key, known) or "keys: " + ", ".join(sorted(known)))
        result[key] = _parse_scalar(text)
        value = result[key]
        if key in size_names and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise PcdslError(messages.BAD_OVERRIDE, problem=f"size `{key}` must be a positive integer, got `{text}`")
    return result


def _parse_scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise PcdslError(messages.BAD_OVERRIDE, problem=f"`{text}` is not a valid list")
    return text
