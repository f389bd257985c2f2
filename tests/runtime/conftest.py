# Make `tests.support` importable however pytest is started (python -m pytest adds the current
# folder to sys.path; a bare `pytest` does not).
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


import pytest
import torch


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    # The runtime tests use tiny tensors; on a busy 2-core machine, torch's thread pool costs more
    # than it gains. Restored afterwards so that other test folders keep their setting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
