# ---------------------------------------------------------------------------------------------
# `pcdsl fmt`: the canonical layout of a model file (layout.py).
# ---------------------------------------------------------------------------------------------
from pcdsl.fmt.layout import FormatError, format_text

__all__ = ["FormatError", "format_text"]
