# ---------------------------------------------------------------------------------------------
# The words a highlighter tells apart, taken from where the language defines them (the parser's
# statement keywords, the operator registry, the train block's settings, the costs), so that
# the Pygments lexer and the TextMate grammar cannot fall behind the language.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from pcdsl.ops import COSTS, REGISTRY
from pcdsl.parse.train_block import ALL_SETTINGS

# blocks and statements; `in` introduces a box domain
KEYWORDS = ("model", "train", "size", "input", "state", "output", "label", "def", "energy", "cost", "in")
OPERATORS = tuple(sorted(REGISTRY))
COST_NAMES = tuple(sorted(COSTS))
SETTINGS = tuple(sorted(set(ALL_SETTINGS)))
CONSTANTS = ("bias", "true", "false")
