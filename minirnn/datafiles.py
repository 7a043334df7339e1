"""Reading sequence data files for the command line (:mod:`minirnn.cli`): UEA/UCR ``.ts``, CSV,
NPZ and HDF5.

Every reader returns a :class:`SequenceData`: N sequences of D numbers per step (variable lengths
allowed), optional labels (strings as written in the file, or numbers) and ids. Bad files raise
:class:`DataError`, whose message names the file, the line or column, and what was expected.

Formats
-------
``.ts`` (UEA/UCR, sktime's format): ``@problemName``, ``@timeStamps`` (only ``false``),
``@missing``, ``@univariate``, ``@dimensions``, ``@equalLength``, ``@seriesLength``,
``@classLabel true <labels>`` / ``false``, ``@targetLabel true`` (regression) headers, then
``@data`` and one case per line: the dimensions separated by ``:``, each a comma-separated list of
values, the label last. ``?`` (or ``NaN``) marks a missing value: missing values at the end of a
series are padding (the series is shorter); a missing value inside a series is an error, since the
recurrent cells need a number at every step.

CSV, long layout (``id_column`` given): one row per time step; ``id_column`` names the sequence,
``time_column`` (optional) orders its steps (otherwise the file order), ``label_column`` (optional)
holds the sequence's label, repeated on each of its rows; every other column (or
``feature_columns``) is one feature. CSV, wide layout: one row per sequence, every column other
than ``id_column``/``label_column`` is one time step of a single feature; empty cells at the end of a
row are padding.

NPZ / HDF5: arrays ``x`` [N, T] or [N, T, D] (numbers), optionally ``lengths`` [N] (valid steps of
each row, from the start) or ``mask`` [N, T] (valid steps, gaps allowed), ``y`` [N] (labels) and
``ids`` [N]. Values outside the valid steps are ignored (NaN padding is fine).
"""

import csv
import math
import os
import zipfile

import numpy as np

__all__ = ["DataError", "SequenceData", "FORMATS", "read", "read_ts", "read_csv", "read_arrays", "format_of"]

FORMATS = ("ts", "csv", "npz", "hdf5")
_EXTENSIONS = {".ts": "ts", ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".npz": "npz", ".h5": "hdf5",
               ".hdf5": "hdf5", ".hdf": "hdf5"}
MISSING = {"?", "nan", "NaN", "NAN"}     # what marks a missing value in a text file


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_EXPANSION = 1100         # HDF5: deflate expands its output at most ~1032 times


class DataError(ValueError):
    """A data file that can not be read: the message names the file, the place and what was expected."""


class SequenceData:
    """N sequences with D features per step.

    Attributes
    ----------
    sequences : list of N float32 arrays [T_i, D], or None when ``padded`` is used
    padded, mask : float32 [N, T, D] and bool [N, T] (NPZ/HDF5 with a mask), otherwise None
    lengths : int [N] valid steps per example
    labels : None, or an array [N] (object array of str, or float64)
    ids : list of N str (the id column / ``ids`` array, or the example's position)
    dimension : D
    feature_names : the CSV feature columns (long layout), else None
    task, class_labels : what a ``.ts`` header says ('classification' / 'regression' and the
        ``@classLabel`` list), else None
    """

    def __init__(self, source, sequences=None, padded=None, mask=None, labels=None, ids=None, feature_names=None,
                 task=None, class_labels=None):
        self.source, self.sequences, self.padded, self.mask = source, sequences, padded, mask
        if sequences is not None:
            self.lengths = np.array([len(s) for s in sequences], dtype=np.int64)
            self.dimension = int(sequences[0].shape[1])
        else:
            self.lengths = mask.sum(axis=1).astype(np.int64)
            self.dimension = int(padded.shape[2])
        n = len(self.lengths)
        self.labels = labels
        self.ids = [str(k) for k in range(n)] if ids is None else [str(i) for i in ids]
        self.feature_names, self.task, self.class_labels = feature_names, task, class_labels

    def __len__(self):
        return len(self.lengths)

    def take(self, indices):
        """The examples at ``indices`` (in that order), as a new SequenceData."""
        indices = np.asarray(indices, dtype=np.int64)
        return SequenceData(self.source, [self.sequences[k] for k in indices] if self.sequences is not None else None,
                            None if self.padded is None else self.padded[indices],
                            None if self.mask is None else self.mask[indices],
                            None if self.labels is None else self.labels[indices], [self.ids[k] for k in indices],
                            self.feature_names, self.task, self.class_labels)

    def by_length(self):
        """(this data ordered by sequence length, the order: position k holds example ``order[k]``).
        Batches of similar lengths pad little: one long sequence among short ones costs its own
        steps, not the batch size times them."""
        order = np.argsort(self.lengths, kind="stable")
        return self.take(order), order

    def valid_steps(self):
        """Every valid step of every sequence, as one array [steps, D] (padding left out)."""
        if self.sequences is not None:
            return np.concatenate(self.sequences)
        return self.padded[self.mask]

    def features(self, key="x"):
        """The features dict for :func:`minirnn.inputs.numpy_input_fn`: ragged sequences under ``key``,
        or the padded array plus its ``sequence_mask``."""
        if self.sequences is not None:
            return {key: self.sequences}
        return {key: self.padded, "sequence_mask": self.mask}


def format_of(path, format=None):
    """The format name for ``path``: ``format`` when given, else from the file extension."""
    if format is not None:
        if format not in FORMATS:
            raise DataError(f"unknown data format {format!r}; expected one of {', '.join(FORMATS)}")
        return format
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _EXTENSIONS:
        raise DataError(f"{path}: can not tell the format from the extension {ext or '(none)'!r}; name it .ts, .csv, "
                        ".npz or .h5, or give --format")
    return _EXTENSIONS[ext]


def read(path, format=None, label_column=None, id_column=None, time_column=None, feature_columns=None,
         csv_layout=None, delimiter=None, label_optional=False):
    """Read ``path`` in its format (from the extension, or ``format``); see the module docstring.
    ``label_optional``: a CSV file may lack ``label_column`` (data to predict)."""
    path = os.fspath(path)
    kind = format_of(path, format)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a data file")
    if kind == "ts":
        return read_ts(path)
    if kind == "csv":
        return read_csv(path, label_column=label_column, id_column=id_column, time_column=time_column,
                        feature_columns=feature_columns, layout=csv_layout, delimiter=delimiter,
                        label_optional=label_optional)
    return read_arrays(path, kind)


# ---------------------------------------------------------------------------------------------
# UEA/UCR .ts
# ---------------------------------------------------------------------------------------------

def _flag(path, number, tag, value):
    if value.lower() not in ("true", "false"):
        raise DataError(f"{path}, line {number}: @{tag} expects true or false, got {value!r}")
    return value.lower() == "true"


def _positive(path, number, tag, value):
    try:
        out = int(value)
    except ValueError:
        out = 0
    if out < 1:
        raise DataError(f"{path}, line {number}: @{tag} expects a positive integer, got {value!r}")
    return out


def _series(path, number, dim, text):
    """One dimension of a case: its values with trailing missing values (padding) removed."""
    cells = [c.strip() for c in text.split(",")]
    while cells and cells[-1] in MISSING:
        cells.pop()
    if not cells or cells == [""]:
        raise DataError(f"{path}, line {number}: dimension {dim} has no values")
    values = np.empty(len(cells), dtype=np.float64)
    for k, cell in enumerate(cells):
        if cell in MISSING:
            raise DataError(f"{path}, line {number}: dimension {dim} has a missing value '?' at step {k + 1} inside "
                            "the series (only trailing '?' padding is allowed; fill in or drop the missing values)")
        try:
            values[k] = float(cell)
        except ValueError:
            if cell.startswith("("):
                raise DataError(f"{path}, line {number}: timestamped values like {cell!r} are not supported") from None
            raise DataError(f"{path}, line {number}: dimension {dim}, step {k + 1}: expected a number, got "
                            f"{cell!r}") from None
        if not math.isfinite(values[k]):
            raise DataError(f"{path}, line {number}: dimension {dim}, step {k + 1}: expected a finite number, got "
                            f"{cell!r}")
        if abs(values[k]) > _FLOAT32_MAX:
            raise DataError(f"{path}, line {number}: dimension {dim}, step {k + 1}: {cell} is beyond float32's "
                            "range (+-3.4e38)")
    return values


def read_ts(path):
    """Read a UEA/UCR ``.ts`` file (see the module docstring)."""
    header, class_labels, regression = {}, None, False
    sequences, labels = [], []
    in_data = False
    with open(path, encoding="utf-8-sig", errors="strict") as f:   # -sig: a byte-order mark is not data
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{path}, line {number}: expected a header line starting with '@' (or '@data' "
                                f"before the cases), got {line[:40]!r}")
            tag, _, rest = line[1:].partition(" ")
            tag, rest = tag.lower(), rest.strip()
            if tag == "data":
                in_data = True
            elif tag == "classlabel":
                words = rest.split()
                if not words:
                    raise DataError(f"{path}, line {number}: @classLabel expects true (followed by the labels) "
                                    "or false")
                if _flag(path, number, tag, words[0]):
                    if len(words) < 2:
                        raise DataError(f"{path}, line {number}: @classLabel true must list the class labels")
                    class_labels = words[1:]
            elif tag == "targetlabel":
                regression = _flag(path, number, tag, rest)
            elif tag in ("timestamps", "univariate", "equallength", "missing"):
                header[tag] = _flag(path, number, tag, rest)
                if tag == "timestamps" and header[tag]:
                    raise DataError(f"{path}, line {number}: @timeStamps true is not supported; write the values "
                                    "without timestamps")
            elif tag in ("dimensions", "dimension", "serieslength"):
                header[tag.rstrip("s") if tag != "serieslength" else tag] = _positive(path, number, tag, rest)
            # other tags (@problemName, ...) are descriptions
            continue
        parts = line.split(":")
        has_label = class_labels is not None or regression
        dims = len(parts) - has_label
        expected = 1 if header.get("univariate") else header.get("dimension")
        if expected is None:
            expected = header["dimension"] = dims
        if dims != expected:
            raise DataError(f"{path}, line {number}: expected {expected} dimension(s)"
                            f"{' and a label' if has_label else ''} separated by ':', got {dims} dimension(s)")
        if dims < 1:
            raise DataError(f"{path}, line {number}: no values before the label")
        series = [_series(path, number, d + 1, parts[d]) for d in range(dims)]
        lengths = {len(s) for s in series}
        if len(lengths) > 1:
            raise DataError(f"{path}, line {number}: the dimensions have different lengths "
                            f"({', '.join(str(len(s)) for s in series)} values)")
        sequences.append(np.stack(series, axis=1).astype(np.float32))
        if has_label:
            label = parts[-1].strip()
            if regression:
                try:
                    labels.append(float(label))
                except ValueError:
                    raise DataError(f"{path}, line {number}: expected a numeric target value after the last ':', "
                                    f"got {label!r}") from None
            elif label not in class_labels:
                raise DataError(f"{path}, line {number}: class label {label!r} is not among the @classLabel labels "
                                f"{class_labels}")
            else:
                labels.append(label)
    if not in_data:
        raise DataError(f"{path}: no @data line; a .ts file has header lines (@problemName, @classLabel, ...), "
                        "then @data, then one case per line")
    if not sequences:
        raise DataError(f"{path}: no cases after @data")
    if header.get("equallength"):
        lengths = sorted({len(s) for s in sequences})
        if len(lengths) > 1 or header.get("serieslength", lengths[0]) != lengths[0]:
            raise DataError(f"{path}: the header says @equalLength true"
                            f"{' with @seriesLength %d' % header['serieslength'] if 'serieslength' in header else ''}"
                            f", but the series have {', '.join(map(str, lengths[:5]))} steps")
    task = "regression" if regression else ("classification" if class_labels is not None else None)
    return SequenceData(path, sequences=sequences, task=task, class_labels=class_labels,
                        labels=None if not (class_labels is not None or regression) else
                        np.array(labels, dtype=np.float64 if regression else object))


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------

def _number(path, number, column, cell):
    try:
        value = float(cell)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        raise DataError(f"{path}, line {number}, column {column!r}: expected a finite number, got {cell!r}")
    if abs(value) > _FLOAT32_MAX:
        raise DataError(f"{path}, line {number}, column {column!r}: {cell} is beyond float32's range (+-3.4e38)")
    return value


def read_csv(path, label_column=None, id_column=None, time_column=None, feature_columns=None, layout=None,
             delimiter=None, label_optional=False):
    """Read a CSV file in the long layout (one row per step; needs ``id_column``) or the wide layout
    (one row per sequence); ``layout`` defaults to long when ``id_column`` is given. With
    ``label_optional``, a file without ``label_column`` reads as unlabelled."""
    layout = layout or ("long" if id_column else "wide")
    if layout not in ("long", "wide"):
        raise DataError(f"CSV layout: expected 'long' or 'wide', got {layout!r}")
    if layout == "long" and not id_column:
        raise DataError(f"{path}: the long CSV layout (one row per step) needs --id-column to tell the sequences apart")
    if time_column and layout != "long":
        raise DataError(f"{path}: --time-column applies to the long CSV layout (one row per step) only")
    if feature_columns and layout != "long":
        raise DataError(f"{path}: --feature-columns applies to the long CSV layout; in the wide layout every other "
                        "column is a time step")
    if delimiter is None:
        delimiter = "\t" if path.lower().endswith(".tsv") else ","
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise DataError(f"delimiter: expected one character (not a quote or a line break), got {delimiter!r}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataError(f"{path}: empty file; expected a header row naming the columns")
    header = [c.strip() for c in rows[0]]
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise DataError(f"{path}: duplicate column names {duplicates} in the header")

    def column(name, what):
        if name not in header:
            raise DataError(f"{path}: no column {name!r} ({what}); the header has {header}")
        return header.index(name)

    special = {}
    for name, what in ((id_column, "--id-column"), (time_column, "--time-column"), (label_column, "--label-column")):
        if name and not (what == "--label-column" and label_optional and name not in header):
            special[what] = column(name, what)
    if len(set(special.values())) != len(special):
        raise DataError(f"{path}: {', '.join(special)} must name different columns")
    body = [(number, row) for number, row in enumerate(rows[1:], 2) if any(cell.strip() for cell in row)]
    if not body:
        raise DataError(f"{path}: no data rows after the header")
    for number, row in body:
        if len(row) > len(header):
            raise DataError(f"{path}, line {number}: {len(row)} cells but the header names {len(header)} columns")
    if layout == "long":
        return _read_long(path, header, body, special, feature_columns, column)
    return _read_wide(path, header, body, special)


def _column_hint(header, at, body, special, feature_columns=None):
    """What to add to "expected a number" when most cells of column ``at`` are not numbers: it
    is likely the sequence ids (the first column) or the labels, so name the flag that says so."""
    cells = [row[at].strip() for _, row in body[:50] if at < len(row) and row[at].strip()]
    words = sum(1 for cell in cells if not _is_number(cell))
    if words * 2 <= len(cells):
        return ""                                         # a numeric column with a bad cell: no hint
    name = header[at]
    if at == 0 and "--id-column" not in special:
        ids = [row[0].strip() for _, row in body]
        if len(set(ids)) < len(ids):                      # a name repeated on several rows: one row per step
            return (f"; the first column {name!r} is not numeric: if it names the sequences (one row per time "
                    f"step), give --id-column {name}")
        return (f"; the first column {name!r} is not numeric: if it names the sequences (one row per sequence), "
                f"give --id-column {name} --csv-layout wide")
    if "--label-column" not in special and not feature_columns:
        return f"; if column {name!r} holds the labels, give --label-column {name}"
    return ""


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_long(path, header, body, special, feature_columns, column):
    id_at, time_at, label_at = special["--id-column"], special.get("--time-column"), special.get("--label-column")
    if feature_columns:
        features = [column(name, "--feature-columns") for name in feature_columns]
        clash = [header[k] for k in features if k in special.values()]
        if clash:
            raise DataError(f"{path}: column {clash[0]!r} can not be both a feature and the id/time/label column")
    else:
        features = [k for k in range(len(header)) if k not in special.values()]
        if not features:
            raise DataError(f"{path}: no feature columns left besides the id/time/label columns")
    groups = {}                                   # id -> [(time, line, values)], in order of first appearance
    labels = {}
    for number, row in body:
        if len(row) < len(header):
            raise DataError(f"{path}, line {number}: {len(row)} cells but the header names {len(header)} columns")
        key = row[id_at].strip()
        if not key:
            raise DataError(f"{path}, line {number}, column {header[id_at]!r}: empty id")
        try:
            values = [_number(path, number, header[k], row[k].strip()) for k in features]
        except DataError as error:
            bad = next((k for k in features if not _is_number(row[k].strip())), None)
            hint = "" if bad is None else _column_hint(header, bad, body, special, feature_columns)
            raise DataError(f"{error}{hint}") from None
        when = _number(path, number, header[time_at], row[time_at].strip()) if time_at is not None else None
        groups.setdefault(key, []).append((when, number, values))
        if label_at is not None:
            label = row[label_at].strip()
            if not label:
                raise DataError(f"{path}, line {number}, column {header[label_at]!r}: empty label")
            first = labels.setdefault(key, (label, number))
            if first[0] != label:
                raise DataError(f"{path}, line {number}: sequence {key!r} has label {label!r} here but {first[0]!r} on "
                                f"line {first[1]}; a sequence has one label")
    sequences = []
    for key, steps in groups.items():
        if time_at is not None:
            steps = sorted(steps, key=lambda s: s[0])
            for a, b in zip(steps, steps[1:]):
                if a[0] == b[0]:
                    raise DataError(f"{path}, lines {a[1]} and {b[1]}: sequence {key!r} has two rows at time {a[0]:g}")
        sequences.append(np.array([s[2] for s in steps], dtype=np.float32))
    return SequenceData(path, sequences=sequences, ids=list(groups), feature_names=[header[k] for k in features],
                        labels=None if label_at is None else np.array([labels[k][0] for k in groups], dtype=object))


def _read_wide(path, header, body, special):
    id_at, label_at = special.get("--id-column"), special.get("--label-column")
    steps = [k for k in range(len(header)) if k not in special.values()]
    if not steps:
        raise DataError(f"{path}: no value columns left besides the id/label columns")
    sequences, ids, labels = [], [], []
    for number, row in body:
        row = row + [""] * (len(header) - len(row))
        cells = [row[k].strip() for k in steps]
        while cells and cells[-1] == "":
            cells.pop()
        if not cells:
            raise DataError(f"{path}, line {number}: no values (a wide CSV row holds one whole sequence)")
        values = []
        for k, cell in enumerate(cells):
            if cell == "":
                raise DataError(f"{path}, line {number}, column {header[steps[k]]!r}: empty cell inside the sequence "
                                "(only trailing cells may be empty)")
            try:
                values.append(_number(path, number, header[steps[k]], cell))
            except DataError as error:
                raise DataError(f"{error}{_column_hint(header, steps[k], body, special)}") from None
        sequences.append(np.array(values, dtype=np.float32)[:, None])
        ids.append(row[id_at].strip() if id_at is not None else str(len(ids)))
        if label_at is not None:
            label = row[label_at].strip()
            if not label:
                raise DataError(f"{path}, line {number}, column {header[label_at]!r}: empty label")
            labels.append(label)
    return SequenceData(path, sequences=sequences, ids=ids,
                        labels=None if label_at is None else np.array(labels, dtype=object))


# ---------------------------------------------------------------------------------------------
# NPZ / HDF5
# ---------------------------------------------------------------------------------------------

def _load_arrays(path, kind):
    names = ("x", "lengths", "mask", "y", "ids")
    if kind == "npz":
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: a single .npy array; expected an .npz archive of arrays x, y, lengths or "
                                "mask, ids (np.savez)")
            with loaded as f:
                present = list(f.keys())
                return {k: f[k] for k in names if k in f}, present
        except ValueError as error:
            if "allow_pickle" in str(error):
                raise DataError(f"{path}: holds Python objects (pickled); save strings as fixed-width text arrays "
                                "(np.array(labels, dtype=str)) instead") from None
            raise DataError(f"{path}: not a readable .npz file ({error})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: not a readable .npz file ({error})") from None
    import h5py
    try:
        with h5py.File(path, "r") as f:
            present = list(f.keys())
            out = {}
            for k in names:
                if k in f:
                    if not isinstance(f[k], h5py.Dataset):
                        raise DataError(f"{path}: {k!r} is a group, expected a dataset")
                    declared, stored = f[k].size * f[k].dtype.itemsize, f[k].id.get_storage_size()
                    if declared > _MAX_EXPANSION * stored + (64 << 20):
                        raise DataError(f"{path}: {k!r} declares {declared:,} bytes but stores {stored:,}: its values "
                                        "were never written (no compression expands data that much)")
                    value = f[k][()]
                    if h5py.check_string_dtype(f[k].dtype) is not None or value.dtype.kind == "O":
                        value = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v)
                                          for v in np.ravel(value)], dtype=object).reshape(np.shape(value))
                    out[k] = value
            return out, present
    except OSError as error:
        raise DataError(f"{path}: not a readable HDF5 file ({error})") from None


def read_arrays(path, kind="npz"):
    """Read an NPZ (``kind='npz'``) or HDF5 (``'hdf5'``) file with arrays x, lengths/mask, y, ids."""
    arrays, present = _load_arrays(path, kind)
    if "x" not in arrays:
        raise DataError(f"{path}: no array 'x' (the sequences, [N, T] or [N, T, D]); the file has {present}")
    x = arrays["x"]
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: 'x' holds {x.dtype} values; expected numbers")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise DataError(f"{path}: 'x' has shape {x.shape}; expected [N, T] or [N, T, D] with N, T, D >= 1")
    N, T, _ = x.shape
    if "lengths" in arrays and "mask" in arrays:
        raise DataError(f"{path}: has both 'lengths' and 'mask'; give one")
    if "lengths" in arrays:
        lengths = arrays["lengths"]
        if lengths.shape != (N,) or lengths.dtype.kind not in "iu":
            raise DataError(f"{path}: 'lengths' has shape {lengths.shape} and type {lengths.dtype}; expected {N} "
                            "integers (one per row of 'x')")
        bad = np.nonzero((lengths < 1) | (lengths > T))[0]
        if bad.size:
            raise DataError(f"{path}: 'lengths'[{bad[0]}] = {lengths[bad[0]]}; expected 1 to {T} (the steps of 'x')")
        mask = np.arange(T)[None, :] < lengths[:, None]
    elif "mask" in arrays:
        mask = arrays["mask"]
        if mask.shape != (N, T) or mask.dtype.kind not in "biu" or not np.isin(mask, (0, 1)).all():
            raise DataError(f"{path}: 'mask' has shape {mask.shape} and type {mask.dtype}; expected [{N}, {T}] of "
                            "booleans or 0/1 (True = a valid step)")
        mask = mask.astype(bool)
        empty = np.nonzero(~mask.any(axis=1))[0]
        if empty.size:
            raise DataError(f"{path}: 'mask' row {empty[0]} has no valid step")
    else:
        mask = np.ones((N, T), dtype=bool)
    x = x.astype(np.float32)
    bad = ~np.isfinite(x).all(axis=2) & mask
    if bad.any():
        row, step = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"{path}: 'x'[{row}, {step}] is NaN or infinite at a valid step (mark padding with "
                        "'lengths' or 'mask')")
    x[~mask] = 0.0
    labels = None
    if "y" in arrays:
        y = arrays["y"]
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (N,):
            raise DataError(f"{path}: 'y' has shape {y.shape}; expected one label per row of 'x' ({N})")
        if y.dtype.kind == "S":                                 # bytes: text, as the HDF5 reader reads it
            try:
                y = np.char.decode(y, "utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}: 'y' holds bytes that are not UTF-8 text ({error.reason})") from None
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            row = int(np.flatnonzero(~np.isfinite(y))[0])
            raise DataError(f"{path}: 'y'[{row}] is {y[row]}; labels must be finite")
        labels = y.astype(object) if y.dtype.kind in "USO" else y
    ids = None
    if "ids" in arrays:
        ids = arrays["ids"]
        if ids.shape != (N,):
            raise DataError(f"{path}: 'ids' has shape {ids.shape}; expected one id per row of 'x' ({N})")
        ids = [str(v) for v in ids]
    if mask.all():
        return SequenceData(path, sequences=list(x), labels=labels, ids=ids)
    prefix = mask.sum(axis=1)
    if (mask == (np.arange(T)[None, :] < prefix[:, None])).all():       # valid steps from the start: ragged
        return SequenceData(path, sequences=[x[i, :prefix[i]] for i in range(N)], labels=labels, ids=ids)
    return SequenceData(path, padded=x, mask=mask, labels=labels, ids=ids)
