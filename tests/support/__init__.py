"""Shared test helpers: a hand-written protocol model and a small in-memory data set."""
