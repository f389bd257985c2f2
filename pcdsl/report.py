# ---------------------------------------------------------------------------------------------
# What `pcdsl check` shows: the state/shape table, parameters, derived update rules and the
# update groups, as one JSON-ready dict and as aligned text.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from .check import CheckedModel
from .codegen.notation import plain


def _domain(var) -> str:
    d = var.domain
    if d.low is None and d.high is None:
        return "real"
    if d.high is None:
        return f">= {d.low:g}"
    return f"in [{d.low:g}, {d.high:g}]"


def _gradient_step(state: str, projection: str, step: float, momentum: float) -> str:
    """h <- Proj(h - 0.1·∂F/∂h), or with the heavy-ball velocity when momentum is on."""
    direction = f"∂F/∂{state}" if not momentum else "v"
    text = f"{state} - {step:g}·{direction}"
    text = text if projection == "none" else f"{projection}({text})"
    return text if not momentum else f"{text},  v <- {momentum:g}·v + ∂F/∂{state}"


def model_report(checked: CheckedModel) -> dict:
    ir = checked.ir
    states = []
    for var in ir.variables:
        shape = checked.shapes[var.name]
        states.append({"name": var.name, "role": var.role, "shape": list(shape.value),
                       "symbolic_shape": [str(s) for s in shape.symbolic], "domain": _domain(var)})
    rules = []
    for name, rule in checked.rules.items():
        closed = rule.kind == "closed"
        rules.append({"state": name, "rule": rule.kind, "reason": rule.reason,
                      "curvature": str(rule.curvature) if closed else None, "projection": rule.projection,
                      "update": plain(rule.update) if closed else _gradient_step(
                          name, rule.projection, ir.train.relax_step, ir.train.relax_momentum),
                      "mod_update": plain(rule.mod_update) if rule.mod_update is not None else None,
                      "gradient": plain(rule.gradient)})
    return {
        "model": ir.name,
        "file": ir.file,
        "sha256": ir.source_sha256,
        "sizes": {s.name: s.value for s in ir.sizes},
        "states": [s for s in states if s["role"] in ("state", "output")],
        "input": next(s for s in states if s["role"] == "input"),
        "label": next((s for s in states if s["role"] == "label"), None),
        "parameters": checked.parameter_count,
        "parameter_tensors": [{"name": p.name, "kind": p.kind, "shape": list(p.shape), "owner": p.owner}
                              for p in checked.params.values()],
        "definitions": {plain(k): plain(v) for k, v in checked.definitions.items()},
        "rules": rules,
        "update_groups": checked.groups,
        "feedforward": checked.feedforward is not None,
        "free_phase": checked.free_phase,
        "layers": checked.layer_depths,
        "cost": ir.cost.kind if ir.cost is not None else None,
        "generative": ir.generative,
        "train": ir.train.model_dump(),
    }


def rule_lines(rule: dict) -> list[str]:
    """A state's derived update (an entry of the report's "rules") as `pcdsl check` prints it."""
    state, indent = rule["state"], " " * len(rule["state"])
    if rule["mod_update"]:
        return [f"{state} <- {rule['mod_update']}    [mod-PGD; c = {rule['curvature']}]",
                f"{indent}    {rule['update']}    [PGD]"]
    if rule["rule"] == "closed":
        return [f"{state} <- {rule['update']}    [c = {rule['curvature']}]"]
    return [f"{state} <- {rule['update']}    [gradient steps: {rule['reason']}]",
            f"{indent}    ∂F/∂{state} = {rule['gradient']}"]


def format_report(report: dict) -> str:
    lines = [f"model {report['model']}  ({report['file']})"]
    if report["sizes"]:
        lines.append("sizes: " + ", ".join(f"{k} = {v}" for k, v in report["sizes"].items()))
    lines.append("")
    rows = [("name", "role", "shape", "symbolic", "domain")]
    for s in [report["input"]] + report["states"] + ([report["label"]] if report["label"] else []):
        shape = "[" + ", ".join(map(str, s["shape"])) + "]"
        symbolic = "[" + ", ".join(s["symbolic_shape"]) + "]"
        rows.append((s["name"], s["role"], shape, symbolic if symbolic != shape else "", s["domain"] if s["role"] in ("state", "output") else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    lines.append("")
    lines.append(f"parameters: {report['parameters']:,} in {len(report['parameter_tensors'])} tensors")
    lines.append(f"free phase: {report['free_phase']}")
    if report["layers"]:
        lines.append("layers (for precision schedules): "
                     + ", ".join(f"{state} {layer}" for state, layer in report["layers"].items()))
    lines.append(f"cost: {report['cost']}" if report["cost"] else
                 "generative: the input is predicted; the states relax to explain it (no cost)")
    lines.append("")
    lines.append("intermediates:")
    for name, expr in report["definitions"].items():
        lines.append(f"  {name} = {expr}")
    lines.append("")
    lines.append("derived updates (closed form: the alpha = 1 projected step; c = curvature of F in the state):")
    for rule in report["rules"]:
        lines.extend("  " + line for line in rule_lines(rule))
    lines.append("")
    lines.append("update groups (in traversal order): "
                 + "  then  ".join("{" + ", ".join(g) + "}" for g in report["update_groups"]))
    return "\n".join(lines)
