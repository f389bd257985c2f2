# ---------------------------------------------------------------------------------------------
# Hygienic names: every identifier of a generated module comes from one namespace.
#
# User names (states, inputs, parameters) become Python identifiers, but never ones that
# collide with a Python keyword or builtin, a module-level name of the generated file (torch, F,
# the helper functions), a name the generated methods use themselves (x, states, beta, ...) or
# another generated name: a state called `beta`, `total` or `a_h1` simply gets `beta_1`,
# `total_1`, `a_h1_1` in the code, and keeps its own name in comments and as the key of the
# states dict. Like torch.fx's graph namespace, a name is handed out once and stays stable.
# Attributes (`self.<name>`: the parameters) have their own namespace, which reserves every
# member of torch.nn.Module and of the generated class.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import builtins
import keyword
import re

from ..ops import HELPERS

PYTHON = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
MODULE_LEVEL = frozenset({"torch", "F", "math", "Model"}) | frozenset(HELPERS)
# the parameters of the generated methods that hold user-named locals, and their loop variable
METHOD_LOCALS = frozenset({"self", "x", "states", "label", "beta", "steps", "mod", "synchronous", "_",
                           "free", "carry", "phases", "scale", "phase", "energy"})
# members of torch.nn.Module (torch 2.x; names starting with `_` are reserved wholesale) and of the
# generated class: a parameter attribute must never shadow one
MODULE_MEMBERS = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule
half ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters
parameters register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict
to to_empty train training type xpu zero_grad
NAME SOURCE SOURCE_SHA256 INPUT_SHAPE STATES STATE_SHAPES OUTPUT NUM_CLASSES COST FEEDFORWARD
UPDATE_GROUPS UPDATE_RULES STATE_BOUNDS TERM_PARAMETERS LAYERS FREE_STEPS RELAX_STEP RELAX_MOMENTUM INIT
reset_parameters
initial_states cost cost_grad energies energy state_grads relax param_grads free_phase nudged_phase
factors param_grads_from
""".split())

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Namespace:
    """Hands out identifiers: each key gets one, as close to its preferred name as is free."""

    def __init__(self, reserved: frozenset[str], reserve_private: bool = False):
        self._taken = set(reserved)
        self._reserve_private = reserve_private
        self._given: dict[object, str] = {}

    def __contains__(self, key) -> bool:
        return key in self._given

    def __getitem__(self, key) -> str:
        return self._given[key]

    def name(self, key, preferred: str) -> str:
        if key in self._given:
            return self._given[key]
        base = preferred if _IDENTIFIER.match(preferred) else re.sub(r"\W", "_", preferred) or "v"
        if base[0].isdigit():
            base = "v_" + base
        if self._reserve_private and base.startswith("_"):   # nn.Module's internals are all _names
            base = "p" + base
        candidate, index = base, 1
        while candidate in self._taken:
            candidate = f"{base}_{index}"
            index += 1
        self._taken.add(candidate)
        self._given[key] = candidate
        return candidate


def local_namespace() -> Namespace:
    return Namespace(PYTHON | MODULE_LEVEL | METHOD_LOCALS)


def attribute_namespace() -> Namespace:
    return Namespace(MODULE_MEMBERS, reserve_private=True)
