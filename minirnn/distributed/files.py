"""Batch prediction written per rank (:func:`predict_to_files`) and read back in the input's order
(:func:`read_predictions`)."""

import os

import numpy as np

from ..inputs import batches
from .comm import portable
from .runner import concatenate
from .sharding import Batch

__all__ = ["predict_to_files", "read_predictions"]


def predict_to_files(estimator, input_fn, directory, predict_keys=None, checkpoint_path=None):
    """Predict a large input data-parallel, each rank writing its own share to
    ``directory/predictions-<rank>-of-<size>.h5`` (no gathering: ranks work independently after
    rank 0's weights are broadcast). Each file holds one dataset per prediction key (rows in this
    rank's order; per-step outputs padded to the file's longest sequence) plus ``batch`` and
    ``position`` (the global batch number and the row's place in it). Returns this rank's file;
    :func:`read_predictions` gives every row back in the input's order. On one process it writes
    one file."""
    import h5py

    session = estimator._session
    input_fn = session.seeded(input_fn)
    runner = session.runner()
    rank, size = runner.rank, runner.size
    net, _ = session.network_for(checkpoint_path)
    mask_key = session.mask_key
    if isinstance(predict_keys, str):
        predict_keys = [predict_keys]
    parts, batch_ids, positions, error = [], [], [], None
    try:
        if runner.size == 1:
            source = ((Batch(Batch.DATA, f, l), None) for f, l in batches(input_fn))
        else:
            source = runner.batches(input_fn)
        number = 0
        for batch, _ in source:
            if batch.kind == Batch.FAILED:
                raise batch.error
            if batch.kind == Batch.EXHAUSTED:
                break
            number += 1
            if batch.kind == Batch.EMPTY:
                continue
            preds, mask = session.predict_batch(net, batch.features)
            if predict_keys is not None:
                unknown = [k for k in predict_keys if k not in preds]
                if unknown:
                    raise ValueError(f"predict_keys: {unknown} are not predictions; available: {sorted(preds)}")
                preds = {k: preds[k] for k in predict_keys}
            parts.append((preds, mask))
            batch_ids.append(np.full(mask.shape[0], number, dtype=np.int64))
            positions.append(np.arange(mask.shape[0], dtype=np.int64))
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(os.fspath(directory), f"predictions-{rank:05d}-of-{size:05d}.h5")
        merged = concatenate(parts, mask_key, net.model.return_sequences)
        tmp = path + ".tmp"
        with h5py.File(tmp, "w") as f:
            f.attrs["rank"], f.attrs["size"] = rank, size
            f["batch"] = np.concatenate(batch_ids) if batch_ids else np.zeros(0, np.int64)
            f["position"] = np.concatenate(positions) if positions else np.zeros(0, np.int64)
            if merged is not None:
                for key, value in merged[0].items():
                    value = np.asarray(value)
                    if value.dtype.kind in "OSU":
                        value = np.array([v if isinstance(v, bytes) else str(v).encode() for v in value.ravel()],
                                         dtype=object).reshape(value.shape)
                        f.create_dataset(key, data=value, dtype=h5py.special_dtype(vlen=bytes))
                    else:
                        f[key] = value
        os.replace(tmp, path)
    except Exception as e:                    # noqa: BLE001 - every rank learns of it below
        error = e
    if runner.size > 1:
        runner._raise_first(runner.allgather_obj(portable(error), "finishing predict_to_files"), "predict_to_files")
    elif error is not None:
        raise error
    return path


def read_predictions(directory):
    """Every prediction written by :func:`predict_to_files` in ``directory``, as one dict of arrays
    in the input's order (per-step outputs padded to the longest: masks with False, outputs by
    repeating their last step)."""
    import h5py
    names = sorted(n for n in os.listdir(directory) if n.startswith("predictions-") and n.endswith(".h5"))
    if not names:
        raise FileNotFoundError(f"{directory}: no predictions-*.h5 files (written by predict_to_files)")
    sizes = {int(n.split("-of-")[1][:-3]) for n in names}
    if len(sizes) != 1 or len(names) != sizes.pop():
        raise ValueError(f"{directory}: the prediction files {names} are not one complete set of ranks")
    columns, keys = {}, []
    for rank, name in enumerate(names):
        with h5py.File(os.path.join(directory, name), "r") as f:
            order_keys = [("batch", f["batch"][()]), ("rank", np.full(len(f["batch"]), rank)),
                          ("position", f["position"][()])]
            for key, value in order_keys:
                columns.setdefault(key, []).append(value)
            for key in f:
                if key in ("batch", "position"):
                    continue
                if key not in keys:
                    keys.append(key)
                columns.setdefault(key, []).append(f[key][()])
    out = {}
    for key in keys:
        arrays = columns[key]
        longest = max(a.shape[1] if a.ndim >= 2 else 0 for a in arrays)
        padded = []
        for a in arrays:
            if a.ndim >= 2 and a.shape[1] < longest and all(b.ndim == a.ndim for b in arrays) and a.size:
                width = [(0, 0), (0, longest - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
                a = np.pad(a, width, constant_values=False) if a.dtype == bool else np.pad(a, width, mode="edge")
            padded.append(a)
        out[key] = np.concatenate(padded)
    order = np.lexsort((np.concatenate(columns["position"]), np.concatenate(columns["rank"]),
                        np.concatenate(columns["batch"])))
    return {k: v[order] for k, v in out.items()}
