# ---------------------------------------------------------------------------------------------
# Checkpoints: one torch file per saved epoch, written atomically, read back defensively.
#
# Saving goes through files.atomic_write (temporary file, fsync, os.replace), so a crash or
# Ctrl-C mid-write never leaves a half-written checkpoint under the real name.
# Loading uses torch.load(weights_only=True) (no arbitrary pickles) and turns every way a file can
# be wrong into a CheckpointError whose message is meant for the user; a content hash written
# into every file catches damage that torch's reader does not notice. Weights are only ever
# loaded whole: if any parameter name or shape differs from the model, nothing is copied and the
# error lists every difference.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from pcdsl.files import atomic_write

FORMAT_TAG = "pcdsl-checkpoint"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"     # torch.save has written zip archives since torch 1.6
REQUIRED_KEYS = ("epoch", "model", "param_shapes", "source_sha256")


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit the model; the message says why."""


def content_sha256(value, digest=None) -> str:
    """A hash of a nested structure of dicts, lists, tensors and plain values.

    torch.load does not verify the bytes of tensor data (a flipped byte in a weight loads
    silently), so every checkpoint carries this hash of its own contents, checked on load."""
    top = digest is None
    digest = hashlib.sha256() if top else digest
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor:{flat.dtype}:{list(value.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"dict:{len(value)};".encode())
        for key, item in value.items():
            digest.update(f"{key!r}=".encode())
            content_sha256(item, digest)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}:{len(value)};".encode())
        for item in value:
            content_sha256(item, digest)
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    return digest.hexdigest() if top else ""


def _first_sentence(error: Exception | str) -> str:
    text = " ".join(str(error).split())
    return text.split(". ")[0] if text else type(error).__name__


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write `payload` (tagged with the format, version and a content hash) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tagged = {"format": FORMAT_TAG, "version": FORMAT_VERSION, **payload}
    tagged["checksum"] = content_sha256(tagged)
    atomic_write(path, lambda handle: torch.save(tagged, handle))


def load_checkpoint(path: Path) -> dict:
    """Read and validate a checkpoint file (tensors land on the CPU)."""
    path = Path(path)
    if path.is_dir():
        hint = path / "checkpoints" / "last.pt"
        raise CheckpointError(f"{path} is a folder, not a checkpoint file"
                              + (f" (did you mean {hint}?)" if hint.is_file() else ""))
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        what = "it is empty" if not head else "torch checkpoints are zip archives and it is not one"
        raise CheckpointError(f"{path} is not a checkpoint (not a torch file: {what})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's safe unpickler refused something: damaged bytes or a foreign object look alike
        detail = str(error).split("WeightsUnpickler error:")[-1]
        raise CheckpointError(f"{path} is corrupt, or holds Python objects that a pcdsl checkpoint "
                              "never contains (only tensors and plain data are loaded, so that a "
                              f"file cannot run code): {_first_sentence(detail)}") from error
    except Exception as error:   # zip and EOF errors: the archive is damaged
        raise CheckpointError(f"{path} is truncated or corrupt: {_first_sentence(error)}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        tag = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is a torch file but not a pcdsl checkpoint "
                              f"(format tag {tag!r}, expected {FORMAT_TAG!r})")
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this pcdsl reads "
                              f"versions up to {FORMAT_VERSION} (is it from a newer pcdsl?)")
    recorded = payload.pop("checksum", None)
    if recorded is None:
        raise CheckpointError(f"{path} is an incomplete pcdsl checkpoint: it has no checksum")
    if recorded != content_sha256(payload):
        raise CheckpointError(f"{path} is corrupt: its contents no longer match the checksum "
                              "written with it")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path} is an incomplete pcdsl checkpoint: it lacks {', '.join(missing)}")
    return payload


def parameter_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def weight_mismatches(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> list[str]:
    """One line per name that is missing, unexpected, or shaped differently; empty: they fit."""
    expected = parameter_shapes(model)
    found = {name: list(tensor.shape) for name, tensor in saved.items()}
    lines = [f"{name}: in the model {expected[name]}, missing from the checkpoint"
             for name in expected if name not in found]
    lines += [f"{name}: in the checkpoint {found[name]}, not in the model"
              for name in found if name not in expected]
    lines += [f"{name}: checkpoint {found[name]}, model {expected[name]}"
              for name in expected if name in found and found[name] != expected[name]]
    return lines


def load_weights(model: torch.nn.Module, checkpoint: dict, path: Path | str = "checkpoint") -> None:
    """Copy the checkpoint's weights into `model`, all or nothing."""
    saved = checkpoint["model"]
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise CheckpointError(f"{path}: the model weights in it are not a state dict")
    differences = weight_mismatches(model, saved)
    if differences:
        raise CheckpointError(f"{path} does not fit this model; nothing was loaded. Differences:\n  "
                              + "\n  ".join(differences))
    model.load_state_dict(saved, strict=True)
