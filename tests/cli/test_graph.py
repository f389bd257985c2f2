# ---------------------------------------------------------------------------------------------
# `pcdsl graph`: the DOT text read back by an independent parser (pydot) holds every variable
# with its shape, the states coloured by update group, an edge from each variable a prediction
# reads to its target with the term's parameters, and general energy terms as notes.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import shutil

import pydot
import pytest

from helpers import MODELS, ROOT, run_cli
from pcdsl.pipeline import check_file
from pcdsl.visual.graph import GROUP_COLOURS, model_dot


def _graph(path, sets=()):
    return pydot.graph_from_dot_data(model_dot(check_file(path, list(sets)).checked))[0]


def _edges(graph) -> set[tuple[str, str]]:
    return {(e.get_source().strip('"'), e.get_destination().strip('"')) for e in graph.get_edges()}


def _label(graph, name: str) -> str:
    return graph.get_node(f'"{name}"')[0].get("label").strip('"')


def test_a_pcn_is_a_chain_of_predictions_with_shapes_groups_and_parameters():
    graph = _graph(ROOT / "tests" / "golden" / "tiny_pcn.pc")
    assert _edges(graph) == {("x", "h1"), ("h1", "h2"), ("h2", "o"), ("o", "y")}
    assert _label(graph, "h1") == "h1\\n[2, 4, 4]\\nstate, group 1"
    assert _label(graph, "x") == "x\\n[1, 8, 8]\\ninput"
    assert graph.get_node('"h2"')[0].get("fillcolor").strip('"') == GROUP_COLOURS[0]
    edge = next(e for e in graph.get_edges() if e.get_destination() == '"h2"')
    assert edge.get("label").strip('"') == "h2_w_h1 (dense)\\nh2_b (bias)"


def test_general_energy_terms_are_notes_joined_to_what_they_hold():
    graph = _graph(MODELS / "hopfield_tiny.pc")
    assert {("h1", "energy:layer1"), ("x", "energy:layer1"), ("h1", "energy:layer2"),
            ("o", "energy:layer2")} <= _edges(graph)


def test_sizes_are_the_ones_set_and_skips_have_several_sources():
    graph = _graph(MODELS / "vgg10skip_imagenet.pc", ["S=64"])
    assert "[3, 64, 64]" in _label(graph, "x")
    sources = {source for source, target in _edges(graph) if target == "h5"}   # h5 ~ f(h4) + h2
    assert sources == {"h4", "h2"}


def test_a_generative_model_predicts_its_input():
    graph = _graph(ROOT / "examples" / "generative_mnist.pc")
    assert {("h1", "x"), ("h2", "h1")} <= _edges(graph)


def test_the_command_writes_dot_and_says_what_it_needs_for_svg(tmp_path):
    result = run_cli("graph", MODELS / "mlp_digits.pc", "-o", tmp_path / "m.dot")
    assert result.exit_code == 0, result.output
    assert pydot.graph_from_dot_file(str(tmp_path / "m.dot"))[0].get_name().strip('"') == "mlp_digits"
    unknown = run_cli("graph", MODELS / "mlp_digits.pc", "-o", tmp_path / "m.txt")
    assert unknown.exit_code == 1 and ".dot" in unknown.output
    svg = run_cli("graph", MODELS / "mlp_digits.pc", "-o", tmp_path / "m.svg")
    if shutil.which("dot"):
        assert svg.exit_code == 0 and (tmp_path / "m.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    else:
        assert svg.exit_code == 1 and "Graphviz" in svg.output and not (tmp_path / "m.svg").exists()


def test_a_recurrent_prediction_is_an_arrow_from_the_state_to_itself_with_its_own_weight():
    graph = _graph(ROOT / "tests" / "models" / "own_prediction_recurrent.pc")
    assert ("h1", "h1") in _edges(graph)
    labels = {(e.get_source().strip('"'), e.get_destination().strip('"')): e.get("label").strip('"')
              for e in graph.get_edges()}
    assert labels[("h1", "h1")] == "h1_w_h1 (dense)" and "h1_w_h1" not in labels[("x", "h1")]
