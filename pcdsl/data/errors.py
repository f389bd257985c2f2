# ---------------------------------------------------------------------------------------------
# The one exception type of the data package.
#
# Everything that can go wrong with a user's `--data` argument (a missing folder, a truncated idx
# file, an unreadable JPEG, a shape that does not fit the model) surfaces as a DataError whose
# message is meant to be shown to the user as is: what was wrong, which path, what was expected.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations


class DataError(Exception):
    """A data set could not be loaded or does not fit the model; the message says why."""
