# ---------------------------------------------------------------------------------------------
# The network a model file describes, as a Graphviz DOT graph: the input, the states, the output
# and the label as nodes (with their shapes; the states coloured by update group), and each
# energy term as edges: a `~` prediction from every variable it reads to its target, labelled
# with its parameters; a general `energy` term as a small node joined to what it holds. The DOT
# text is always available; `dot` (Graphviz), where installed, renders it as SVG or PNG.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import shutil
import subprocess

from pcdsl.check import CheckedModel

# one fill colour per update group, in traversal order (then repeating)
GROUP_COLOURS = ("#cfe2f3", "#fce5cd", "#d9ead3", "#ead1dc", "#fff2cc", "#d0e0e3")
RENDERED = {".svg": "svg", ".png": "png"}


class GraphError(ValueError):
    """The graph cannot be rendered; the message is for the user."""


def _quote(text: str) -> str:
    """A DOT string: backslashes and quotes escaped, line breaks as DOT's \n."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(checked: CheckedModel, name: str) -> str:
    return "[" + ", ".join(str(d) for d in checked.shapes[name].value) + "]"


def model_dot(checked: CheckedModel) -> str:
    ir = checked.ir
    group_of = {state: index for index, group in enumerate(checked.groups) for state in group}
    lines = [f"digraph {_quote(ir.name)} {{", "  rankdir=BT;",
             '  node [fontname="Helvetica", fontsize=11];', '  edge [fontname="Helvetica", fontsize=9];',
             f"  label={_quote(f'{ir.name}: arrows point from what a prediction reads to what it predicts')};",
             "  labelloc=t;"]
    for var in ir.variables:
        shape = _shape(checked, var.name)
        if var.role in ("state", "output"):
            group = group_of.get(var.name, 0)
            colour = GROUP_COLOURS[group % len(GROUP_COLOURS)]
            role = "output" if var.role == "output" else "state"
            label = f"{var.name}\n{shape}\n{role}, group {group}"
            lines.append(f"  {_quote(var.name)} [label={_quote(label)}, shape=ellipse, style=filled, "
                         f"fillcolor={_quote(colour)}];")
        else:
            label = f"{var.name}\n{shape}\n{var.role}"
            lines.append(f"  {_quote(var.name)} [label={_quote(label)}, shape=box, style=filled, "
                         f"fillcolor={_quote('#eeeeee')}];")
    params_of: dict[str, list] = {}
    for param in checked.params.values():
        params_of.setdefault(param.owner, []).append(param)
    for term in checked.terms:
        label = "\n".join(f"{p.name} ({p.kind})" for p in params_of.get(term.name, [])) or " "
        if term.target is not None:
            bases = checked.definitions.bases(term.prediction)
            reads = [v.name for v in ir.variables if checked.symbols.get(v.name) in bases]
            if not reads:       # a prediction of constants and parameters only: a note, not an arrow
                node = f"prediction:{term.target}"
                lines.append(f"  {_quote(node)} [label={_quote('constant prediction' + chr(10) + label)}, "
                             "shape=note, fontsize=9];")
                lines.append(f"  {_quote(node)} -> {_quote(term.target)};")
            for source, params in _by_source(term.name, reads, params_of.get(term.name, [])).items():
                text = "\n".join(f"{p.name} ({p.kind})" for p in params) or " "
                lines.append(f"  {_quote(source)} -> {_quote(term.target)} [label={_quote(text)}];")
        else:
            node = f"energy:{term.name}"
            title = f"energy {term.name}" + (f"\n{label}" if label.strip() else "")
            lines.append(f"  {_quote(node)} [label={_quote(title)}, "
                         "shape=note, fontsize=9];")
            for held in sorted(term.states) + ([ir.input.name] if term.reads_input else []):
                lines.append(f"  {_quote(held)} -> {_quote(node)} [dir=none, style=dashed];")
    if ir.cost is not None:
        lines.append(f"  {_quote(ir.cost.output)} -> {_quote(ir.cost.label)} "
                     f"[label={_quote(f'cost {ir.cost.kind}')}, style=dotted, dir=none];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _by_source(owner: str, sources: list[str], params: list) -> dict[str, list]:
    """Each arrow's parameters: a weight named `<owner>_w_<source>` (docs/language.md, parameter
    names) on its source's arrow, the rest (biases) on the first arrow."""
    arrows: dict[str, list] = {source: [] for source in sources}
    for param in params:
        source = next((s for s in sources if param.name == f"{owner}_w_{s}"
                       or param.name.startswith(f"{owner}_w_{s}_")), None)
        if source is None and sources:
            source = sources[0]
        if source is not None:
            arrows[source].append(param)
    return arrows


def render(dot_text: str, fmt: str) -> bytes:
    """The DOT text drawn by Graphviz's `dot` as `fmt` (svg or png)."""
    program = shutil.which("dot")
    if program is None:
        raise GraphError("rendering needs Graphviz's `dot`, which is not installed here: write the DOT text "
                         "(-o FILE.dot) and render it elsewhere (`dot -Tsvg FILE.dot -o FILE.svg`), or install "
                         "graphviz")
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GraphError(f"Graphviz's dot failed: {error}") from None
    if done.returncode != 0:
        raise GraphError(f"Graphviz's dot failed: {done.stderr.decode(errors='replace').strip()[:500]}")
    return done.stdout
