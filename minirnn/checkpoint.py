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

import io
import json
import logging
import os
import re

import numpy as np

FORMAT = "minirnn-checkpoint-1"
INDEX = "checkpoint"
_NAME = re.compile(r"^model\.ckpt-(\d+)\.h5$")
_TEMPORARY = re.compile(r"^(?:model\.ckpt-\d+\.h5|checkpoint)\.tmp-(\d+)$")

logger = logging.getLogger("minirnn")


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


def hdf5_image(fill):
    """The bytes of an HDF5 file built in memory by ``fill(h5py.File)``: HDF5 writing to a full disk
    can crash the process, so files are built here and written as plain bytes."""
    import h5py
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
    return buffer.getvalue()


def write_bytes(path, data, what):
    """Write ``data`` to ``path`` atomically: to ``<path>.tmp-<pid>``, flushed to disk, then renamed
    over ``path``. On any failure (a full disk: OSError naming ``what``) the temporary file is
    removed and ``path`` is as it was."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _replace_atomically(tmp, path)
    except OSError as error:
        raise OSError(error.errno, f"writing {what} {path!r} failed ({error.strerror}); what was there before is "
                                   "intact") from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write(path, variables, attributes):
    """Write ``variables`` ({name: array}) and ``attributes`` ({name: JSON-able}) to ``path`` atomically."""
    def fill(f):
        f.attrs["format"] = FORMAT
        for key, value in attributes.items():
            f.attrs[key] = json.dumps(value)
        group = f.create_group("variables")
        for name, value in variables.items():
            group.create_dataset(name, data=np.asarray(value))
    write_bytes(path, hdf5_image(fill), "checkpoint")


def read(path, earlier=(), shapes=None, check=None):
    """(variables {name: array}, attributes {name: value}) of a checkpoint file.

    ``earlier``: other checkpoint paths, named in the error message as fallbacks. ``shapes``:
    {name: shape} to read only those variables, each one's shape checked before its values are
    read (a file is untrusted: a small file can declare a huge dataset); absent names are left out.
    None reads every variable. ``check(attributes)`` runs before any variable is read: an exception
    it returns is raised instead of reading them.
    """
    import h5py
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    variables, refused = {}, None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path!r} is not a minirnn checkpoint (format {f.attrs.get('format')!r})")
            attributes = {key: json.loads(f.attrs[key]) for key in f.attrs if key != "format"}
            refused = None if check is None else check(attributes)
            if refused is not None:
                raise refused

            group = f["variables"]
            if shapes is None:
                group.visititems(lambda name, obj: variables.__setitem__(name, obj[()])
                                 if isinstance(obj, h5py.Dataset) else None)
            for name, shape in (shapes or {}).items():
                dataset = group.get(name)
                if not isinstance(dataset, h5py.Dataset):
                    continue
                if dataset.shape != tuple(shape):
                    raise CheckpointError(f"checkpoint {path!r}: variable {name!r} has shape {dataset.shape}, "
                                          f"this model's is {tuple(shape)}")
                variables[name] = dataset[()]
    except CheckpointError:
        raise
    except ValueError as error:
        if error is refused:
            raise
        raise _unreadable(path, earlier, error) from error
    except Exception as err:           # h5py raises OSError, KeyError, RuntimeError... on damaged files
        raise _unreadable(path, earlier, err) from err
    return variables, attributes


def _unreadable(path, earlier, err):
    others = [p for p in earlier if os.path.abspath(p) != os.path.abspath(path)]
    hint = (f" Earlier checkpoints: {others}; pass one as checkpoint_path=..., or delete {path!r} and "
            f"its line in the '{INDEX}' file to resume from the previous one." if others else
            " There is no earlier checkpoint to fall back to.")
    return CheckpointError(f"checkpoint {path!r} cannot be read ({type(err).__name__}: {err}); it is "
                           f"truncated or corrupted.{hint}")


# ---- the index file ---------------------------------------------------------------------------

def write_index(model_dir, latest, kept):
    """Write ``model_dir/checkpoint`` (TF's text format, with file names relative to model_dir)."""
    lines = [f'model_checkpoint_path: "{os.path.basename(latest)}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in kept]
    write_bytes(os.path.join(model_dir, INDEX), ("\n".join(lines) + "\n").encode("utf-8"), "checkpoint index")


def read_index(model_dir):
    """(latest path, [kept paths, oldest first]) from ``model_dir/checkpoint``, or (None, [])."""
    path = os.path.join(model_dir, INDEX)
    if not os.path.isfile(path):
        return None, []
    latest, kept = None, []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path!r} is not a checkpoint index (not UTF-8 text: {error})") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        match = re.match(r'^(model_checkpoint_path|all_model_checkpoint_paths):\s*"([^"]+)"$', line)
        if not match:
            raise CheckpointError(f"{path!r}, line {number}: cannot parse {line!r}")
        name = match.group(2)
        if os.path.basename(name) != name or not _NAME.match(name):   # paths read from a file are untrusted
            raise CheckpointError(f"{path!r}, line {number}: {name!r} is not a checkpoint of this model_dir "
                                  "(the index names files model.ckpt-<step>.h5 inside it, nothing else)")
        full = os.path.join(model_dir, name)
        if match.group(1) == "model_checkpoint_path":
            latest = full
        else:
            kept.append(full)
    if latest is not None and latest not in kept:
        kept.append(latest)
    return latest, kept


def on_disk(model_dir):
    """The checkpoint files in ``model_dir``, newest step first."""
    names = [n for n in os.listdir(model_dir) if _NAME.match(n)]
    return [os.path.join(model_dir, n) for n in sorted(names, key=lambda n: -step_of(n))]


def latest_checkpoint(model_dir):
    """Path of the latest checkpoint in ``model_dir``, or None when it has none.

    The index's latest, or, when that file is missing (deleted, or the index lost), the newest
    checkpoint file that exists, with a warning naming what is missing: training never starts
    from scratch while a checkpoint exists."""
    if model_dir is None or not os.path.isdir(model_dir):
        return None
    latest, _ = read_index(model_dir)
    if latest is not None and os.path.isfile(latest):
        return latest
    found = on_disk(model_dir)
    if found:
        missing = (f"the index's latest checkpoint {latest!r} is missing" if latest is not None else
                   f"the index {os.path.join(model_dir, INDEX)!r} is missing")
        logger.warning("%s: using %s, the newest checkpoint there", missing, found[0])
        return found[0]
    return None


def remove_stale(model_dir):
    """Remove what killed runs left in ``model_dir``: temporary files of processes that no longer
    run, and checkpoint files the index does not list (a save killed before the index named it, a
    deletion interrupted by a kill). Only while the index and its latest checkpoint are there: a
    model_dir being recovered is left as it is. Call with model_dir locked (:class:`TrainingLock`)."""
    latest, kept = read_index(model_dir)
    for name in os.listdir(model_dir):
        match = _TEMPORARY.match(name)
        if match and not _running(int(match.group(1))):
            _remove_quietly(os.path.join(model_dir, name))
    if latest is None or not os.path.isfile(latest):
        return
    listed = {os.path.abspath(p) for p in kept}
    for path in on_disk(model_dir):
        if os.path.abspath(path) not in listed:
            logger.info("removing %s, a checkpoint the index does not list (left by a killed run)", path)
            _remove_quietly(path)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                    # exists, owned by someone else
        return True
    return True


def _remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class TrainingLock:
    """An exclusive lock on ``model_dir`` for one trainer (``model_dir/train.lock``, an advisory
    ``fcntl``/``msvcrt`` lock that the system releases when the process ends, even by kill -9).
    A second trainer fails at once with an error naming the holder's pid. Readers need no lock."""

    NAME = "train.lock"

    def __init__(self, model_dir):
        self.path = os.path.join(model_dir, self.NAME)
        self._fd = None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_file(fd)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RuntimeError(f"model_dir {os.path.dirname(self.path)!r} is being trained by another process "
                               f"(pid {holder}); two trainers on one model_dir would lose each other's steps: wait "
                               "for it, or give this one another model_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)
            os.close(fd)               # closing drops the lock


def _lock_file(fd):
    try:
        import fcntl
    except ImportError:                # Windows
        import msvcrt
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ---- a TrainState in model_dir ---------------------------------------------------------------

def identity(path):
    """(absolute path, mtime, size): what tells whether a checkpoint changed on disk."""
    st = os.stat(path)
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size)


def save(model_dir, state, spec, keep_checkpoint_max):
    """Write ``state`` (a :class:`~minirnn.state.TrainState`) and the model's ``spec`` as the
    checkpoint of its global step, make it the latest in the index, and delete the oldest kept
    checkpoints beyond ``keep_checkpoint_max`` (None or 0 keeps all). Returns its path."""
    variables = state.variables()
    bad = [name for name, value in variables.items() if not np.all(np.isfinite(value))]
    if bad:
        raise FloatingPointError(f"the weights are not finite at step {state.global_step} ({bad[0]}): training "
                                 "diverged (lower the learning rate or clip gradients); no checkpoint was written, "
                                 f"the latest in {model_dir!r} is the last finite one")
    os.makedirs(model_dir, exist_ok=True)
    path = checkpoint_path(model_dir, state.global_step)
    attributes = state.attributes()
    attributes["spec"] = spec
    write(path, variables, attributes)
    _, kept = read_index(model_dir)
    kept = [p for p in kept if os.path.abspath(p) != os.path.abspath(path) and os.path.isfile(p)] + [path]
    if keep_checkpoint_max:
        while len(kept) > keep_checkpoint_max:
            old = kept.pop(0)
            write_index(model_dir, path, kept)
            _remove_quietly(old)       # read_index confines it: model.ckpt-<step>.h5 in model_dir
    write_index(model_dir, path, kept)
    return path


def _diff(a, b, path=""):
    """The first difference between two JSON values, as text, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}{key}: present in only one of them"
            d = _diff(a[key], b[key], f"{path}{key}.")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for k, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{path}{k}.")
            if d:
                return d
        return None
    return None if a == b else f"{path.rstrip('.')}: the checkpoint has {a!r}, this estimator {b!r}"


def _comparable(spec):
    """The parts of a spec that must match to resume: not prediction options, not file locations."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("options", "file")}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value
    return strip(json.loads(json.dumps(spec)))


def load(path, model_dir, spec, shapes):
    """(variables, attributes) of the checkpoint at ``path``: the variables of ``shapes`` ({name:
    shape}, see :func:`read`), after checking that it was written by a model of this ``spec`` (a
    ValueError naming the first difference otherwise)."""
    def check(attributes):
        difference = _diff(_comparable(attributes.get("spec")), _comparable(spec))
        if difference:
            return ValueError(f"checkpoint {path!r} was written by a different model ({difference}); use another "
                              "model_dir, or warm_start_from to copy the matching weights")
        return None
    _, kept = read_index(model_dir)
    return read(path, kept, shapes, check)


def load_weights(network, variables, path):
    """Copy a checkpoint's weights into ``network``'s parameters (every one must be there, same shape)."""
    for name, param in zip(network.param_names(), network.params()):
        if name not in variables or variables[name].shape != param.shape:
            raise CheckpointError(f"checkpoint {path!r}: variable {name!r} missing or of the wrong shape")
        if not np.all(np.isfinite(variables[name])):
            raise CheckpointError(f"checkpoint {path!r}: variable {name!r} holds NaN or inf")
        param[...] = variables[name]


def warm_start(network, settings):
    """Copy into ``network`` the variables of a checkpoint file, a model_dir or an export dir named
    by ``settings`` (a path or a :class:`~minirnn.config.WarmStartSettings`); returns the count."""
    from .config import WarmStartSettings
    if not isinstance(settings, WarmStartSettings):
        settings = WarmStartSettings(settings)
    source = os.fspath(settings.ckpt_to_initialize_from)
    if os.path.isdir(source):
        if os.path.isfile(os.path.join(source, "model.h5")):         # an export
            import h5py
            with h5py.File(os.path.join(source, "model.h5"), "r") as f:
                variables = {}
                f["variables"].visititems(lambda n, o: variables.__setitem__(n, o[()]) if hasattr(o, "shape") else None)
        else:
            path = latest_checkpoint(source)
            if path is None:
                raise ValueError(f"warm_start_from: no checkpoint in {source!r}")
            variables = read(path)[0]
    else:
        variables = read(source)[0]
    pattern = re.compile(settings.vars_to_warm_start or ".*")
    renames = settings.var_name_to_prev_var_name or {}
    copied = 0
    for name, param in zip(network.param_names(), network.params()):
        if not pattern.match(name):
            continue
        old = renames.get(name, name)
        if old not in variables:
            continue
        if variables[old].shape != param.shape:
            raise ValueError(f"warm_start_from: {old!r} has shape {variables[old].shape}, {name!r} needs {param.shape}")
        param[...] = variables[old]
        copied += 1
    if copied == 0:
        raise ValueError(f"warm_start_from: no variable of {source!r} matches {settings.vars_to_warm_start!r}")
    return copied, source
