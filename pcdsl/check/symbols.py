# ---------------------------------------------------------------------------------------------
# The symbols of the tensor algebra, qualified by what they stand for.
#
# SymPy identifies a symbol by its name, so a state called `a_h1` and the pre-activation a_h1
# that the checker names for state h1 would be one symbol. Every symbol's name therefore carries
# its role: `state:h1`, `param:h1_w_x`, `inter:a:h1` (the pre-activation of h1). Two different
# things never share a name, whatever the user calls them; the code generator gives every symbol
# its identifier from one namespace (codegen/names.py) and never reads these names as code.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import sympy as sp

ROLES = ("input", "state", "label", "param", "inter", "aux")


def symbol(role: str, name: str) -> sp.Symbol:
    assert role in ROLES and ":" not in role, role
    return sp.Symbol(f"{role}:{name}")


def intermediate(kind: str, owner: str) -> sp.Symbol:
    """A named intermediate of a state's term: kind `a` (pre-activation), `z` (pre-pool), `eps`
    (prediction error)."""
    return symbol("inter", f"{kind}:{owner}")


def role_of(sym: sp.Symbol) -> str:
    return sym.name.split(":", 1)[0]


def user_name(sym: sp.Symbol) -> str:
    """The name a person reads: `h1`, `h1_w_x`, `a_h1`."""
    role, rest = sym.name.split(":", 1)
    if role == "inter":
        kind, owner = rest.split(":", 1)
        return f"{kind}_{owner}"
    return rest


def owner_of(sym: sp.Symbol) -> str:
    """The state an intermediate belongs to (`inter:a:h1` -> h1), else the symbol's own name."""
    role, rest = sym.name.split(":", 1)
    return rest.split(":", 1)[1] if role == "inter" else rest


BETA = symbol("aux", "beta")     # the signed nudging strength of F = E + beta * C
