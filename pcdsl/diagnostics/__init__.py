from . import messages
from .diagnostic import PcdslError, Span, did_you_mean

__all__ = ["messages", "PcdslError", "Span", "did_you_mean"]
