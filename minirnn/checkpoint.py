"""Checkpoints in ``model_dir``: one HDF5 file per saved step and a ``checkpoint`` index, both written
atomically, never pickled.

    model_dir/
      checkpoint              text index (TF's format): the latest file and the kept ones
      model.ckpt-<step>.h5    datasets  variables/<name>  (model weights, optimizer slots, global_step)
                              attributes format, global_step, and JSON strings (spec, optimizer, rng)

A file is written to ``<name>.tmp-<pid>``, flushed to disk and renamed over the final name
(``os.replace`` is atomic), so a process killed mid-save leaves the previous checkpoint and index
intact. Reading a truncated or corrupted file raises :class:`CheckpointError` naming the file and the
earlier checkpoints that can be used instead.
"""

import json
import os
import re

import numpy as np

FORMAT = "minirnn-checkpoint-1"
INDEX = "checkpoint"
_NAME = re.compile(r"^model\.ckpt-(\d+)\.h5$")


class CheckpointError(ValueError):
    """A checkpoint or its index cannot be read (truncated, corrupted, or not a minirnn file)."""


def checkpoint_path(model_dir, step):
    return os.path.join(model_dir, f"model.ckpt-{int(step)}.h5")


def step_of(path):
    """The global step in a checkpoint file name, or None."""
    match = _NAME.match(os.path.basename(path))
    return int(match.group(1)) if match else None


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:                    # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_atomically(tmp, path):
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def write(path, variables, attributes):
    """Write ``variables`` ({name: array}) and ``attributes`` ({name: JSON-able}) to ``path`` atomically."""
    import h5py
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            for key, value in attributes.items():
                f.attrs[key] = json.dumps(value)
            group = f.create_group("variables")
            for name, value in variables.items():
                group.create_dataset(name, data=np.asarray(value))
            f.flush()
            os.fsync(f.id.get_vfd_handle())
        _replace_atomically(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read(path, earlier=()):
    """(variables {name: array}, attributes {name: value}) of a checkpoint file.

    ``earlier``: other checkpoint paths, named in the error message as fallbacks.
    """
    import h5py
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    variables = {}
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path!r} is not a minirnn checkpoint (format {f.attrs.get('format')!r})")
            attributes = {key: json.loads(f.attrs[key]) for key in f.attrs if key != "format"}

            def collect(name, obj):
                if isinstance(obj, h5py.Dataset):
                    variables[name] = obj[()]
            f["variables"].visititems(collect)
    except CheckpointError:
        raise
    except Exception as err:           # h5py raises OSError, KeyError, RuntimeError... on damaged files
        others = [p for p in earlier if os.path.abspath(p) != os.path.abspath(path)]
        hint = (f" Earlier checkpoints: {others}; pass one as checkpoint_path=..., or delete {path!r} and "
                f"its line in the '{INDEX}' file to resume from the previous one." if others else
                " There is no earlier checkpoint to fall back to.")
        raise CheckpointError(f"checkpoint {path!r} cannot be read ({type(err).__name__}: {err}); it is "
                              f"truncated or corrupted.{hint}") from err
    return variables, attributes


# ---- the index file ---------------------------------------------------------------------------

def write_index(model_dir, latest, kept):
    """Write ``model_dir/checkpoint`` (TF's text format, with file names relative to model_dir)."""
    lines = [f'model_checkpoint_path: "{os.path.basename(latest)}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in kept]
    path = os.path.join(model_dir, INDEX)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _replace_atomically(tmp, path)


def read_index(model_dir):
    """(latest path, [kept paths, oldest first]) from ``model_dir/checkpoint``, or (None, [])."""
    path = os.path.join(model_dir, INDEX)
    if not os.path.isfile(path):
        return None, []
    latest, kept = None, []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            match = re.match(r'^(model_checkpoint_path|all_model_checkpoint_paths):\s*"([^"]+)"$', line)
            if not match:
                raise CheckpointError(f"{path!r}, line {number}: cannot parse {line!r}")
            full = os.path.join(model_dir, match.group(2))
            if match.group(1) == "model_checkpoint_path":
                latest = full
            else:
                kept.append(full)
    if latest is not None and latest not in kept:
        kept.append(latest)
    return latest, kept


def latest_checkpoint(model_dir):
    """Path of the latest checkpoint in ``model_dir`` (per its index), or None."""
    if model_dir is None or not os.path.isdir(model_dir):
        return None
    latest, _ = read_index(model_dir)
    return latest if latest is not None and os.path.isfile(latest) else None
