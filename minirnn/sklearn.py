"""scikit-learn estimators over minirnn's engine: :class:`SequenceClassifier`, :class:`SequenceRegressor`.

Arrays in, arrays out: ``fit(X, y)``, ``partial_fit``, ``predict``, ``predict_proba``, ``score``,
``get_params / set_params``; ``__init__`` only stores its arguments, everything is validated at
fit time, and fitted attributes end in ``_``. They work inside ``Pipeline``, ``GridSearchCV`` and
``cross_val_score`` and pass ``sklearn.utils.estimator_checks.check_estimator``.

scikit-learn is optional. When it is importable (>= 1.6), the estimators inherit its
``BaseEstimator`` (``clone``, ``repr``, metadata routing, tags); without it they carry their own
``get_params / set_params / repr`` and work the same.

X, one sequence per example (B examples, T steps, D features per step):

- a 3-D array [B, T, D]: padded sequences; every step is valid unless ``lengths`` ([B] ints: the
  first ``lengths[b]`` steps are valid) or ``mask`` ([B, T] booleans; gaps allowed) says otherwise;
- a list of arrays [T_i, D] (or [T_i] for one feature), of any lengths (nested Python lists, as
  ``X.tolist()`` gives, are read as the array they spell);
- a 2-D array [B, T]: univariate sequences of T steps (``lengths`` or ``mask`` may mark padding).
  A bare 2-D array is a scikit-learn table: ``n_features_in_`` is its width T, and a model fitted
  on one refuses tables of another width at predict (give sequences of other lengths as a list or
  with ``lengths``).

Padded steps never enter the state (masked steps carry it), so predictions never depend on how the
examples are padded, ordered or split into batches. Inputs are converted to ``dtype`` (float64 by
default, as scikit-learn); NaN, inf, complex numbers and sparse matrices are refused.

Example
-------
>>> import numpy as np
>>> from minirnn.sklearn import SequenceClassifier
>>> rng = np.random.default_rng(0)
>>> X = [rng.normal(size=(rng.integers(3, 12), 2)) for _ in range(64)]       # ragged, 2 features
>>> y = np.array(["up" if s[:, 0].sum() > 0 else "down" for s in X])
>>> clf = SequenceClassifier(units=16, epochs=40, random_state=0).fit(X, y)
>>> clf.predict(X[:3]).tolist(), clf.predict_proba(X[:3]).shape
(['down', 'up', 'up'], (3, 2))
"""

import copy
import inspect
import numbers
import warnings

import numpy as np

from . import optimizers as _opt
from .errors import NotFittedError as _MinirnnNotFittedError
from .feature_column import Normalization
from .heads import BinaryClassHead, MultiClassHead, RegressionHead
from .model import CELLS, RNNModel
from .state import TrainState
from .step import train_step

try:                                      # scikit-learn >= 1.6 (tags API); optional
    from sklearn.base import BaseEstimator as _Base
    from sklearn.exceptions import DataConversionWarning
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
    from sklearn.utils import ClassifierTags, RegressorTags
    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False

__all__ = ["SequenceClassifier", "SequenceRegressor", "NotFittedError", "DataConversionWarning", "HAVE_SKLEARN"]

_OPTIMIZERS = {name.lower(): cls for name, cls in _opt.NAMES.items()}   # 'adam', 'sgd', 'rmsprop', ...
_PREDICT_CHUNK = 1024                     # rows per forward pass at predict time


if HAVE_SKLEARN:
    class NotFittedError(_MinirnnNotFittedError, _SklearnNotFittedError):
        """predict/score before fit; also caught as scikit-learn's and minirnn's NotFittedError."""
else:
    class NotFittedError(_MinirnnNotFittedError):
        """predict/score before fit (a ValueError and an AttributeError, as scikit-learn's)."""

    class DataConversionWarning(UserWarning):
        """A column-vector y was raveled (scikit-learn's warning, when scikit-learn is absent)."""

    class _Base:
        """get_params / set_params / repr as scikit-learn's BaseEstimator, for when it is absent."""

        @classmethod
        def _get_param_names(cls):
            signature = inspect.signature(cls.__init__)
            return sorted(p.name for p in signature.parameters.values()
                          if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep=True):
            out = {}
            for name in self._get_param_names():
                value = getattr(self, name)
                if deep and hasattr(value, "get_params") and not isinstance(value, type):
                    out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
                out[name] = value
            return out

        def set_params(self, **params):
            valid = self.get_params(deep=True)
            nested = {}
            for key, value in params.items():
                name, sep, sub = key.partition("__")
                if name not in valid:
                    raise ValueError(f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                                     f"Valid parameters are: {self._get_param_names()!r}.")
                if sep:
                    nested.setdefault(name, {})[sub] = value
                else:
                    setattr(self, name, value)
                    valid[name] = value
            for name, sub_params in nested.items():
                valid[name].set_params(**sub_params)
            return self

        def __repr__(self):
            defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
            changed = [f"{name}={getattr(self, name)!r}" for name in self._get_param_names()
                       if not _same(getattr(self, name), defaults.get(name))]
            return f"{type(self).__name__}({', '.join(changed)})"


def _plain(value):
    """A NumPy scalar as the Python value it holds (for error messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:                     # arrays and other objects without a plain bool ==
        return a is b


# ---------------------------------------------------------------------------------------------
# input validation: X in its three forms -> padded [B, T, D] + mask
# ---------------------------------------------------------------------------------------------

class _Sequences:
    """Validated sequences: ``x`` [B, T, D] (padded), ``mask`` [B, T] bool or None (all valid),
    ``ends`` [B] (one past each row's last valid step), ``table_width`` (T for a bare 2-D array,
    else None) and ``feature_names`` (a DataFrame's string column names, else None)."""

    def __init__(self, x, mask, table_width=None, feature_names=None):
        self.x, self.mask = x, mask
        B, T = x.shape[:2]
        if mask is None:
            self.ends = np.full(B, T, dtype=np.int64)
        else:
            self.ends = T - np.argmax(mask[:, ::-1], axis=1)
        self.table_width, self.feature_names = table_width, feature_names

    def __len__(self):
        return self.x.shape[0]

    @property
    def n_features(self):
        return self.x.shape[2]

    def batch(self, rows):
        """x [b, t, D] and mask [b, t] (or None) for ``rows``, cut after their last valid step."""
        t = int(self.ends[rows].max())
        x = np.ascontiguousarray(self.x[rows, :t])
        return x, None if self.mask is None else np.ascontiguousarray(self.mask[rows, :t])


def _is_sparse(X):
    try:
        from scipy import sparse
    except ImportError:                   # pragma: no cover - scipy is a dependency of minirnn
        return False
    return sparse.issparse(X)


def _to_float(name, value, dtype):
    """``value`` as a finite float array of ``dtype``, with errors that name ``name``."""
    try:
        complex_ = np.iscomplexobj(value)
    except (TypeError, ValueError) as error:   # e.g. ragged nesting that is no array
        raise ValueError(f"{name}: expected numbers; {error}") from error
    if complex_:
        raise ValueError(f"{name}: Complex data not supported; expected real numbers")
    try:
        with np.errstate(over="ignore"):  # a value too large for dtype is reported below
            arr = np.asarray(value, dtype=dtype)
    except TypeError as error:            # e.g. a dict inside an object array
        raise TypeError(f"{name}: expected numbers; {error}") from error
    except ValueError as error:           # e.g. strings
        raise ValueError(f"{name}: expected numbers; {error}") from error
    if not np.all(np.isfinite(arr)):
        wide = np.asarray(value, dtype=np.float64)
        too_large = np.isfinite(wide) & ~np.isfinite(arr)
        if np.any(too_large):
            raise ValueError(f"{name}: contains a value too large for {np.dtype(dtype).name} "
                             f"({wide[too_large].flat[0]:g}); scale the data, or set dtype='float64'")
        raise ValueError(f"{name}: contains NaN or inf (every value must be finite)")
    return arr


def _dataframe_names(X):
    columns = getattr(X, "columns", None)
    if columns is None or getattr(X, "ndim", 2) != 2:
        return None
    names = np.asarray(list(columns), dtype=object)
    types = {type(n) is str for n in names}
    if types == {True}:
        return names
    if True in types:                     # as scikit-learn: mixed str / non-str names are an error
        raise TypeError("X: feature names are only supported when all of them are strings; got column names "
                        f"of types {sorted({type(n).__name__ for n in names})}. Convert them with "
                        "X.columns = X.columns.astype(str)")
    return None


def _read_sequences(X, lengths, mask, dtype):
    """Parse ``X`` (3-D padded array, list of [T_i, D] / [T_i] arrays, or 2-D univariate table)."""
    if X is None:
        raise ValueError("X: expected sequences (a 3-D array, a list of [steps, features] arrays or a 2-D array), "
                         "got None")
    if _is_sparse(X):
        raise TypeError("X: sparse matrices are not supported (a recurrent network reads dense sequences); "
                        "pass X.toarray()")
    if isinstance(X, (str, bytes)) or np.isscalar(X):
        raise ValueError(f"X: expected sequences (a 3-D array, a list of arrays or a 2-D array), got {X!r}")
    names = _dataframe_names(X)
    ragged = None
    if isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 1:
        ragged = list(X)                  # an object array of per-example sequences
    elif isinstance(X, np.ndarray):
        arr = X
    elif isinstance(X, (list, tuple)) and any(isinstance(s, np.ndarray) for s in X):
        ragged = list(X)                  # a list of arrays: one sequence each, whatever their lengths
    else:                                 # nested lists (X.tolist()), DataFrames, other array-likes
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = np.asarray(X)
        except (ValueError, TypeError):   # an inhomogeneous (ragged) nested list
            ragged = list(X)
        else:
            if arr.dtype == object and arr.ndim == 1:
                ragged = list(X)
    if ragged is not None:
        if lengths is not None or mask is not None:
            raise ValueError("lengths / mask: give them with a padded array; a list of sequences carries its own "
                             "lengths")
        return _read_ragged(ragged, dtype)
    if arr.ndim == 1 and arr.size == 0:
        raise ValueError("X: found an empty array: 0 sample(s) while a minimum of 1 is required")
    if arr.ndim == 1 or arr.ndim == 0:
        raise ValueError(f"X: expected a 2-D array [examples, steps] (univariate sequences), a 3-D array "
                         f"[examples, steps, features] or a list of sequences; got a {arr.ndim}-D array of shape "
                         f"{arr.shape}. Reshape your data with X.reshape(1, -1) if it is one univariate sequence, "
                         "or pass a list of sequences")
    if arr.ndim > 3:
        raise ValueError(f"X: expected at most 3 dimensions [examples, steps, features], got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"X: found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"X: found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required "
                         "(a 2-D array holds univariate sequences, one step per column)")
    if arr.ndim == 3 and (arr.shape[1] == 0 or arr.shape[2] == 0):
        raise ValueError(f"X: found array with 0 steps or 0 feature(s) (shape={arr.shape}) while a minimum of 1 "
                         "of each is required")
    x = _to_float("X", arr, dtype)
    table = x.ndim == 2 and lengths is None and mask is None
    if x.ndim == 2:
        x = x[:, :, None]
    x = np.ascontiguousarray(x)
    valid = _read_mask(x.shape[0], x.shape[1], lengths, mask)
    return _Sequences(x, valid, table_width=x.shape[1] if table else None, feature_names=names if table else None)


def _read_mask(B, T, lengths, mask):
    if lengths is not None and mask is not None:
        raise ValueError("give either lengths or mask, not both")
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (B,) or not (np.issubdtype(lengths.dtype, np.integer) or lengths.dtype == object and
                                         all(isinstance(v, numbers.Integral) for v in lengths)):
            raise ValueError(f"lengths: expected {B} integers (one per example), got shape {lengths.shape} "
                             f"dtype {lengths.dtype}")
        lengths = lengths.astype(np.int64)
        if lengths.min() < 1 or lengths.max() > T:
            raise ValueError(f"lengths: each must be in [1, {T}] (the steps of X; an empty sequence has nothing "
                             f"to read), got min {lengths.min()} max {lengths.max()}")
        if lengths.min() == T:
            return None
        return np.arange(T)[None, :] < lengths[:, None]
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != (B, T):
        raise ValueError(f"mask: expected shape [examples, steps] = {(B, T)}, got {mask.shape}")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or not np.all((mask == 0) | (mask == 1)):
            raise ValueError(f"mask: expected booleans (or 0/1), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    empty = ~mask.any(axis=1)
    if empty.any():
        raise ValueError(f"mask: example {int(np.argmax(empty))} has no valid step (an empty sequence has nothing "
                         "to read)")
    return None if mask.all() else np.ascontiguousarray(mask)


def _read_ragged(seqs, dtype):
    if not seqs:
        raise ValueError("X: found an empty list: 0 sample(s) while a minimum of 1 is required")
    arrays, D = [], None
    for i, s in enumerate(seqs):
        a = _to_float(f"X[{i}]", s, dtype)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ValueError(f"X[{i}]: expected one sequence of shape [steps, features] (or [steps]), got shape "
                             f"{a.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"X[{i}]: empty sequence (0 steps); every sequence needs at least one step")
        if a.shape[1] == 0:
            raise ValueError(f"X[{i}]: found 0 feature(s) (shape={a.shape}) while a minimum of 1 is required")
        if D is None:
            D = a.shape[1]
        elif a.shape[1] != D:
            raise ValueError(f"X[{i}]: has {a.shape[1]} features per step, X[0] has {D}; every sequence needs the "
                             "same number of features")
        arrays.append(a)
    lengths = np.array([a.shape[0] for a in arrays])
    T = int(lengths.max())
    x = np.zeros((len(arrays), T, D), dtype=dtype)
    for b, a in enumerate(arrays):
        x[b, :a.shape[0]] = a
    mask = None if lengths.min() == T else np.arange(T)[None, :] < lengths[:, None]
    return _Sequences(x, mask)


def _read_sample_weight(sample_weight, n):
    """Per-example weights [n] as float64 (None stays None)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.ndim == 0:
        w = np.full(n, w)
    if w.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},) (one weight per example), got {w.shape}")
    if not (np.issubdtype(w.dtype, np.number) or w.dtype == bool) or np.iscomplexobj(w):
        raise ValueError(f"sample_weight: expected real numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight: every weight must be finite and >= 0")
    if not np.any(w > 0):
        raise ValueError("sample_weight: all weights are zero; at least one must be non-zero")
    return w


def _positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _seed(random_state):
    """A 32-bit seed from ``random_state`` (None: drawn from NumPy's global generator, as scikit-learn)."""
    if random_state is None:
        return int(np.random.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2 ** 32:
            raise ValueError(f"random_state: expected an int in [0, 2**32), got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    raise ValueError(f"random_state: expected None, an int, a numpy RandomState or Generator, got {random_state!r}")


# ---------------------------------------------------------------------------------------------
# the shared estimator
# ---------------------------------------------------------------------------------------------

class _ArrayNetwork:
    """An RNNModel seen as the network of :func:`minirnn.step.train_step`: features are (x, mask)."""

    def __init__(self, model):
        self.model = model

    def forward(self, features, training=False, initial_states=None):
        x, mask = features
        return self.model.forward(x, mask, training=training, initial_states=initial_states), mask

    def backward(self, d_logits):
        self.model.zero_grads()
        self.model.backward(d_logits)
        return self.model.grads()

    def params(self):
        return self.model.params()

    def param_names(self):
        return self.model.param_names()

    def trainable(self):
        return [True] * len(self.model.params())


class _SequenceEstimator(_Base):
    """Shared training and prediction; subclasses define the head, the targets and the outputs."""

    def __init__(self, units=32, cell_type="lstm", epochs=50, batch_size=32, optimizer="adam",
                 learning_rate=0.01, gradient_clipping_norm=5.0, shuffle=True, warm_start=False,
                 random_state=None, dtype="float64", standardize=False):
        self.units = units
        self.cell_type = cell_type
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.gradient_clipping_norm = gradient_clipping_norm
        self.shuffle = shuffle
        self.warm_start = warm_start
        self.random_state = random_state
        self.dtype = dtype
        self.standardize = standardize

    # ---- validation of the hyper-parameters (at fit time, as scikit-learn) ---------------------

    def _checked_dtype(self):
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r}")
        return dtype

    def _new_optimizer(self):
        o = self.optimizer
        if isinstance(o, _opt.Optimizer):
            o = copy.deepcopy(o)          # never train the caller's object (it is a parameter)
            o.load_state({"iterations": 0, "slots": []})   # and start from a fresh state
            return o
        if not isinstance(o, str) or o.lower() not in _OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(_OPTIMIZERS)} or a minirnn.optimizers.Optimizer "
                             f"instance, got {o!r}")
        clip = self.gradient_clipping_norm
        if clip is not None:
            _opt._check_positive("gradient_clipping_norm", clip)
            clip = float(clip)
        _opt._check_positive("learning_rate", self.learning_rate)
        return _OPTIMIZERS[o.lower()](learning_rate=float(self.learning_rate), global_clipnorm=clip)

    def _validate_params(self):
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        units = [self.units] if isinstance(self.units, numbers.Integral) else self.units
        if not isinstance(units, (list, tuple)) or not units or \
                not all(isinstance(u, numbers.Integral) and not isinstance(u, bool) and u > 0 for u in units):
            raise ValueError(f"units: expected a positive int or a non-empty list of them (one per layer), "
                             f"got {self.units!r}")
        for name in ("shuffle", "warm_start", "standardize"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        cells = self.cell_type if isinstance(self.cell_type, (list, tuple)) else [self.cell_type]
        for cell in cells:
            if not isinstance(cell, str) or cell not in CELLS:
                raise ValueError(f"cell_type: expected one of {sorted(CELLS)} (or a list of them, one per layer), "
                                 f"got {self.cell_type!r}")
        self._checked_dtype()
        self._new_optimizer()             # validates optimizer, learning_rate, gradient_clipping_norm
        rs = self.random_state
        if rs is not None and not isinstance(rs, (np.random.RandomState, np.random.Generator)):
            _seed(rs)                     # validates an int without drawing from any generator

    # ---- fitted state ----------------------------------------------------------------------------

    def __sklearn_is_fitted__(self):
        return hasattr(self, "model_")

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    def _initialise(self, seqs, target_state):
        """A fresh model, optimizer and shuffling generator; records the input and target shapes."""
        seed_model, seed_shuffle = np.random.SeedSequence(_seed(self.random_state)).spawn(2)
        model = RNNModel(self.units, self.cell_type, logits_dimension=target_state["_head"].logits_dimension,
                         seed=int(seed_model.generate_state(1)[0]), dtype=self._checked_dtype())
        model.build(seqs.n_features)
        for name, value in target_state.items():
            setattr(self, name, value)
        self.model_ = model
        if hasattr(self, "normalizer_"):
            del self.normalizer_
        self.optimizer_ = self._new_optimizer()
        self._shuffle_rng = np.random.default_rng(seed_shuffle)
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.n_features_in_ = seqs.table_width if seqs.table_width is not None else seqs.n_features
        self.n_features_per_step_ = seqs.n_features
        self._table_width = seqs.table_width
        if seqs.feature_names is not None:
            self.feature_names_in_ = seqs.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _read_X(self, X, lengths, mask, fitted=True):
        seqs = _read_sequences(X, lengths, mask, self._checked_dtype())
        if not fitted:
            return seqs
        name = type(self).__name__
        if seqs.table_width is not None and self._table_width is not None and seqs.table_width != self._table_width:
            raise ValueError(f"X has {seqs.table_width} features, but {name} is expecting {self._table_width} "
                             "features as input (a 2-D array is a table of univariate sequences, one step per "
                             "column; give sequences of other lengths as a list, or with lengths=)")
        if seqs.n_features != self.n_features_per_step_:
            if seqs.table_width is not None and self._table_width is None:
                raise ValueError(f"X has {seqs.table_width} features, but {name} is expecting "
                                 f"{self.n_features_per_step_} features as input (it was fitted on sequences of "
                                 f"{self.n_features_per_step_} features per step; a 2-D array is read as univariate "
                                 "sequences)")
            raise ValueError(f"X has {seqs.n_features} features per step, but {name} is expecting "
                             f"{self.n_features_per_step_} features per step as input")
        self._check_feature_names(seqs)
        return seqs

    def _check_feature_names(self, seqs):
        fitted = getattr(self, "feature_names_in_", None)
        given = seqs.feature_names
        name = type(self).__name__
        if fitted is None and given is None:
            return
        if fitted is None:
            if seqs.table_width is not None:
                warnings.warn(f"X has feature names, but {name} was fitted without feature names", UserWarning)
            return
        if given is None:
            if seqs.table_width is not None:
                warnings.warn(f"X does not have valid feature names, but {name} was fitted with feature names",
                              UserWarning)
            return
        if len(fitted) != len(given) or np.any(fitted != given):
            unexpected = sorted(set(given) - set(fitted))
            missing = sorted(set(fitted) - set(given))
            message = "The feature names should match those that were passed during fit.\n"
            if unexpected:
                message += f"Feature names unseen at fit time: {unexpected}\n"
            if missing:
                message += f"Feature names seen at fit time, yet now missing: {missing}\n"
            if not unexpected and not missing:
                message += "Feature names must be in the same order as they were in fit.\n"
            raise ValueError(message)

    # ---- training --------------------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, lengths, mask, epochs=None, incremental=False, classes=None):
        """Validate everything, (re)initialise unless continuing, then train ``epochs`` passes."""
        self._validate_params()
        epochs = self.epochs if epochs is None else epochs
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        reuse = hasattr(self, "model_") and (incremental or self.warm_start)
        if reuse:
            self._check_unchanged_model()
        seqs = self._read_X(X, lengths, mask, fitted=reuse)
        n = len(seqs)
        weights = _read_sample_weight(sample_weight, n)
        state = self._target_state() if reuse else self._new_target_state(y, n, classes, weights)
        if reuse and classes is not None:
            self._check_classes(classes)
        targets = self._encode_targets(y, n, state, first=not reuse)
        rows = np.arange(n) if weights is None else np.flatnonzero(weights > 0)   # weight 0: not trained on
        if not reuse:
            if classes is None:
                self._check_trainable(targets[rows])
            self._initialise(seqs, state)   # only now that every input is known to be valid
            if self.standardize:            # each feature's mean and variance over the valid steps
                self.normalizer_ = Normalization().adapt(seqs.x[seqs.mask] if seqs.mask is not None else seqs.x)
        seqs = self._normalized(seqs)
        if weights is not None:
            weights = weights / weights[rows].mean()       # the loss is a weighted mean over the data
        for _ in range(epochs):
            self._epoch(seqs, targets, weights, rows)
        self._release_training_buffers()
        self.loss_ = self.loss_curve_[-1]
        return self

    def _normalized(self, seqs):
        """``seqs`` standardised by the fitted ``normalizer_`` (``standardize=True``), else as they are."""
        norm = getattr(self, "normalizer_", None)
        if norm is None:
            return seqs
        return _Sequences(norm(seqs.x).astype(seqs.x.dtype), seqs.mask, seqs.table_width, seqs.feature_names)

    def _release_training_buffers(self):
        """Drop what the last training forward saved for backward (activations of a whole batch):
        nothing reads it after training, and it would bloat every pickle of the estimator."""
        model = self.model_
        model._cache = None
        model.final_states = None
        for layer in model.layers:
            layer._saved = None

    def _check_trainable(self, targets):
        pass

    def _check_unchanged_model(self):
        """Continuing (partial_fit, warm_start) keeps the network: its shape must not have changed.
        A changed learning_rate / gradient_clipping_norm applies from the next step on."""
        model = self.model_
        units = [self.units] if isinstance(self.units, numbers.Integral) else self.units
        cells = self.cell_type if isinstance(self.cell_type, (list, tuple)) else [self.cell_type] * len(model.units)
        if bool(self.standardize) != hasattr(self, "normalizer_"):
            raise ValueError(f"standardize: the model was fitted with standardize={not self.standardize}; "
                             "continuing (partial_fit, warm_start=True) cannot change it: set warm_start=False and "
                             "fit afresh")
        if list(units) != model.units or list(cells) != model.cell_types or self._checked_dtype() != model.dtype:
            raise ValueError(f"units / cell_type / dtype: the fitted network has units={model.units}, "
                             f"cell_type={model.cell_type!r}, dtype={model.dtype.name}; continuing "
                             "(partial_fit, warm_start=True) cannot change them: set warm_start=False and fit "
                             "afresh")
        if isinstance(self.optimizer, _opt.Optimizer):
            return
        fresh = self._new_optimizer()
        if type(fresh) is not type(self.optimizer_):
            raise ValueError(f"optimizer: the model was trained with {type(self.optimizer_).__name__}, now "
                             f"{self.optimizer!r}; continuing keeps the optimizer state: set warm_start=False and "
                             "fit afresh")
        self.optimizer_.learning_rate = fresh.learning_rate
        self.optimizer_.global_clipnorm = fresh.global_clipnorm

    def _epoch(self, seqs, targets, weights, rows):
        state = TrainState(_ArrayNetwork(self.model_), self.optimizer_, self.t_)
        order = self._shuffle_rng.permutation(rows) if self.shuffle else rows
        total = 0.0
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            try:
                loss = train_step(state, self._head, seqs.batch(idx), targets[idx],
                                  weights=None if weights is None else weights[idx])
            except FloatingPointError as error:
                raise FloatingPointError(f"{error} (epoch {self.n_iter_ + 1}; lower learning_rate or set "
                                         "gradient_clipping_norm)") from None
            total += loss * len(idx)
            self.t_ = state.global_step
        self.n_iter_ += 1
        self.loss_curve_.append(total / len(order))

    # ---- prediction ------------------------------------------------------------------------------

    def _logits(self, X, lengths, mask):
        """Logits [B, k] in the model's dtype, computed in length-sorted chunks (the result of a row
        depends only on that row: masked steps carry the state)."""
        self._check_fitted()
        seqs = self._normalized(self._read_X(X, lengths, mask))
        order = np.argsort(seqs.ends, kind="stable")
        out = np.empty((len(seqs), self.model_.logits_dimension), dtype=self.model_.dtype)
        for start in range(0, len(order), _PREDICT_CHUNK):
            idx = order[start:start + _PREDICT_CHUNK]
            x, m = seqs.batch(idx)
            out[idx] = self.model_.forward(x, m, training=False)
        return out

    def _base_tags(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.target_tags.required = True
        return tags


# ---------------------------------------------------------------------------------------------
# classifier
# ---------------------------------------------------------------------------------------------

def _classification_labels(y, n):
    y = np.asarray(y) if not isinstance(y, np.ndarray) else y
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                      "to (n_samples, ), for example using ravel().", DataConversionWarning, stacklevel=4)
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y: expected a 1-D array of class labels [n_samples], got shape {y.shape} (multi-output "
                         "classification is not supported)")
    if y.shape[0] != n:
        raise ValueError(f"X and y: found {n} examples in X but {y.shape[0]} labels in y; they must match")
    kind = y.dtype.kind
    if kind == "c":
        raise ValueError("Unknown label type: complex. y: expected class labels (ints, strings or bools)")
    if kind == "f" or (kind == "O" and any(isinstance(v, (float, np.floating)) for v in y)):
        values = np.asarray([v for v in y if isinstance(v, (float, np.floating, int, np.integer))], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError("Input y contains NaN or infinity: class labels must be finite")
        if np.any(values != np.round(values)):
            raise ValueError("Unknown label type: continuous. y holds non-integer numbers; SequenceClassifier "
                             "needs class labels (use SequenceRegressor for continuous targets)")
    if kind == "O" and any(v is None for v in y):
        raise ValueError("y: contains None; every example needs a class label")
    try:
        classes = np.unique(y)
    except TypeError as error:
        raise ValueError(f"Unknown label type: mixed. y mixes labels of types "
                         f"{sorted({type(v).__name__ for v in y})}, which cannot be ordered") from error
    return y, classes


class SequenceClassifier(_SequenceEstimator):
    """Classify whole sequences with a recurrent network (scikit-learn API).

    Stacked recurrent layers read each sequence; a dense layer on the output at its last valid step
    gives the logits: one (sigmoid cross-entropy) for two classes, one per class (softmax) for more.

    Parameters
    ----------
    units : int or list of ints, default=32
        Units of the recurrent layer; a list stacks layers (``[32, 16]``).
    cell_type : {'lstm', 'gru', 'simple_rnn'} or a list of them (one per layer), default='lstm'
    epochs : int, default=50
        Passes over the training data in ``fit`` (``partial_fit`` makes one pass per call).
    batch_size : int, default=32
        Examples per gradient step.
    optimizer : {'adam', 'sgd', 'momentum', 'adagrad', 'rmsprop', 'ftrl'} or a
        :class:`minirnn.optimizers.Optimizer`, default='adam'. An instance is copied at fit and keeps its
        own learning rate and clipping (``learning_rate`` and ``gradient_clipping_norm`` then do nothing).
    learning_rate : float, default=0.01
    gradient_clipping_norm : float or None, default=5.0
        Clip the gradients by their global norm before each step (None: no clipping).
    shuffle : bool, default=True
        Shuffle the examples before each epoch.
    warm_start : bool, default=False
        ``fit`` on a fitted model continues training it instead of starting afresh.
    random_state : None, int, numpy RandomState or Generator, default=None
        Seeds the initial weights and the shuffling: an int makes ``fit`` deterministic.
    dtype : {'float64', 'float32'}, default='float64'
        What the network computes in; X is converted to it.
    standardize : bool, default=False
        Standardise each feature with the mean and variance of the valid steps of the training X
        (``normalizer_``, a :class:`minirnn.feature_column.Normalization`), at fit and predict:
        a ``StandardScaler`` for sequences, which raw-scale inputs need.

    Attributes
    ----------
    classes_ : array [n_classes], the sorted class labels (any type that sorts: ints, strings, ...)
    n_features_in_ : int, features of X (the width of a 2-D table; features per step otherwise)
    n_features_per_step_ : int, D, the features of each step the network reads
    feature_names_in_ : array of str, only when fitted on a table (a DataFrame) with string column names
    model_ : :class:`minirnn.model.RNNModel`, the trained network (``model_.params()`` in TF's names
        ``model_.param_names()``, Keras weight layout)
    optimizer_ : the optimizer with its slots (continued by ``partial_fit`` and ``warm_start``)
    n_iter_ : int, epochs trained; t_ : int, gradient steps
    loss_ : float, the last epoch's mean training loss; loss_curve_ : list, one per epoch
    normalizer_ : the fitted Normalization (only with ``standardize=True``)

    Example
    -------
    >>> import numpy as np
    >>> from minirnn.sklearn import SequenceClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 12))                     # 200 univariate sequences of 12 steps
    >>> y = np.where(X[:, -3:].sum(axis=1) > 0, "pos", "neg")
    >>> clf = SequenceClassifier(units=16, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    if HAVE_SKLEARN:
        def __sklearn_tags__(self):
            tags = self._base_tags()
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags(multi_class=True, multi_label=False, poor_score=False)
            return tags
    else:
        _estimator_type = "classifier"    # what scikit-learn < 1.6 reads

    def _new_target_state(self, y, n, classes, weights):
        y, seen = _classification_labels(y, n)
        if classes is not None:
            classes = np.asarray(classes)
            _, classes = _classification_labels(classes, len(classes))
        else:
            classes = seen
        if len(classes) < 2:
            raise ValueError(f"y: a classifier needs examples of at least 2 classes, got 1 class "
                             f"({_plain(classes[0])!r})")
        return {"classes_": classes,
                "_head": BinaryClassHead() if len(classes) == 2 else MultiClassHead(len(classes))}

    def _target_state(self):
        return {"classes_": self.classes_, "_head": self._head}

    def _check_classes(self, classes):
        classes = np.asarray(classes)
        _, classes = _classification_labels(classes, len(classes))
        if len(classes) != len(self.classes_) or np.any(classes != self.classes_):
            raise ValueError(f"classes: {classes.tolist()} differ from the fitted classes_ {self.classes_.tolist()}")

    def _encode_targets(self, y, n, state, first):
        y, _ = _classification_labels(y, n)
        classes = state["classes_"]
        ids = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        unknown = classes[ids] != y
        if np.any(unknown):
            raise ValueError(f"y: label {_plain(y[np.argmax(unknown)])!r} is not one of the classes {classes.tolist()}"
                             + ("" if first else " fixed by the first fit / partial_fit"))
        return ids.astype(np.float64) if len(classes) == 2 else ids.astype(np.int64)

    def _check_trainable(self, targets):
        if len(np.unique(targets)) < 2:
            raise ValueError("sample_weight: only 1 class has a non-zero weight; a classifier needs examples of at "
                             "least 2 classes")

    def fit(self, X, y, sample_weight=None, lengths=None, mask=None):
        """Train on sequences ``X`` and labels ``y`` [n_samples] for ``epochs`` passes.

        Parameters
        ----------
        X : 3-D array [B, T, D], list of [T_i, D] (or [T_i]) arrays, or 2-D array [B, T] (univariate)
        y : array [B] of class labels (ints, strings, bools, ...)
        sample_weight : array [B] of non-negative weights, optional (a weight k counts as k copies
            in the loss; examples of weight 0 are not trained on)
        lengths : array [B] of ints, optional: valid leading steps of each row of a padded array
        mask : array [B, T] of bools, optional: valid steps of a padded array (instead of lengths)

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, lengths, mask)

    def partial_fit(self, X, y, classes=None, sample_weight=None, lengths=None, mask=None):
        """One pass over ``X, y``, continuing from the current weights and optimizer state.

        ``classes`` (every label the model will ever see) is required on the first call, as in
        scikit-learn: later batches may lack some classes.
        """
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes: pass every class label (e.g. classes=np.unique(y_all)) on the first call "
                             "to partial_fit; later batches may lack some classes")
        return self._fit(X, y, sample_weight, lengths, mask, epochs=1, incremental=True, classes=classes)

    def predict_proba(self, X, lengths=None, mask=None):
        """Class probabilities [B, n_classes], columns in the order of ``classes_``."""
        logits = self._logits(X, lengths, mask).astype(np.float64)
        return self._head.predictions(logits)["probabilities"]

    def predict_log_proba(self, X, lengths=None, mask=None):
        """log of :meth:`predict_proba`, computed stably from the logits."""
        logits = self._logits(X, lengths, mask).astype(np.float64)
        if logits.shape[1] == 1:                          # binary: log sigmoid(-x), log sigmoid(x)
            x = logits
            return np.concatenate([-np.logaddexp(0.0, x), -np.logaddexp(0.0, -x)], axis=1)
        z = logits - logits.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict(self, X, lengths=None, mask=None):
        """The most probable class of each sequence [B] (a label from ``classes_``)."""
        proba = self.predict_proba(X, lengths, mask)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y, sample_weight=None, lengths=None, mask=None):
        """Mean accuracy of :meth:`predict` on ``X`` against ``y`` (weighted by ``sample_weight``)."""
        predicted = self.predict(X, lengths, mask)
        y, _ = _classification_labels(y, len(predicted))
        correct = (predicted == y).astype(np.float64)
        w = _read_sample_weight(sample_weight, len(correct))
        return float(np.average(correct, weights=w))


# ---------------------------------------------------------------------------------------------
# regressor
# ---------------------------------------------------------------------------------------------

def _regression_targets(y, n):
    if not isinstance(y, np.ndarray):
        y = np.asarray(y)
    if y.ndim not in (1, 2):
        raise ValueError(f"y: expected targets of shape [n_samples] or [n_samples, n_outputs], got {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"X and y: found {n} examples in X but {y.shape[0]} targets in y; they must match")
    if y.ndim == 2 and y.shape[1] == 0:
        raise ValueError(f"y: found 0 outputs (shape={y.shape}); at least 1 is required")
    if np.iscomplexobj(y):
        raise ValueError("y: complex targets not supported; expected real numbers")
    try:
        values = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"y: expected numeric targets; {error}") from error
    if not np.all(np.isfinite(values)):
        raise ValueError("Input y contains NaN or infinity: regression targets must be finite")
    return values


class SequenceRegressor(_SequenceEstimator):
    """Regress one value (or a vector) per sequence with a recurrent network (scikit-learn API).

    Stacked recurrent layers read each sequence; a dense layer on the output at its last valid step
    gives the prediction; the loss is the squared error. Targets are standardised internally with
    the mean and standard deviation of the first ``fit`` / ``partial_fit`` data (predictions come
    back in the original units), so the defaults learn whatever the scale of y.

    Parameters
    ----------
    The same as :class:`SequenceClassifier`.

    Attributes
    ----------
    n_outputs_ : int, the outputs per example (1 for 1-D y)
    n_features_in_, n_features_per_step_, feature_names_in_, model_, optimizer_, n_iter_, t_, loss_,
    loss_curve_, normalizer_ : as :class:`SequenceClassifier` (the loss is on the standardised targets)

    Example
    -------
    >>> import numpy as np
    >>> from minirnn.sklearn import SequenceRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(rng.integers(4, 15), 1)) for _ in range(200)]      # ragged univariate
    >>> y = np.array([s[-3:].sum() for s in X])                                   # sum of the last 3 steps
    >>> reg = SequenceRegressor(units=16, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.9
    True
    """

    if HAVE_SKLEARN:
        def __sklearn_tags__(self):
            tags = self._base_tags()
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags(poor_score=False)
            tags.target_tags.multi_output = True
            tags.target_tags.single_output = True
            return tags
    else:
        _estimator_type = "regressor"

    def _new_target_state(self, y, n, classes, weights):
        values = _regression_targets(y, n)
        d = 1 if values.ndim == 1 else values.shape[1]
        flat = values.reshape(n, d)
        mean = np.average(flat, axis=0, weights=weights)                 # weighted: a weight k = k copies
        with np.errstate(over="ignore", invalid="ignore"):                  # checked just below
            scale = np.sqrt(np.average((flat - mean) ** 2, axis=0, weights=weights))
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale))):
            raise ValueError("y: the targets' mean or spread overflows float64; rescale y (e.g. divide it by "
                             "a constant) before fitting")
        return {"n_outputs_": d, "_y_is_1d": values.ndim == 1, "_head": RegressionHead(d),
                "_y_mean": mean, "_y_scale": np.where(scale > 0, scale, 1.0)}

    def _target_state(self):
        return {"n_outputs_": self.n_outputs_, "_y_is_1d": self._y_is_1d, "_head": self._head,
                "_y_mean": self._y_mean, "_y_scale": self._y_scale}

    def _encode_targets(self, y, n, state, first):
        values = _regression_targets(y, n)
        d = 1 if values.ndim == 1 else values.shape[1]
        if d != state["n_outputs_"]:
            raise ValueError(f"y: has {d} outputs per example, the model was fitted with {state['n_outputs_']}")
        return (values.reshape(n, d) - state["_y_mean"]) / state["_y_scale"]

    def fit(self, X, y, sample_weight=None, lengths=None, mask=None):
        """Train on sequences ``X`` and targets ``y`` ([B] or [B, n_outputs]) for ``epochs`` passes.

        ``X``, ``sample_weight``, ``lengths`` and ``mask`` as :meth:`SequenceClassifier.fit`.
        """
        return self._fit(X, y, sample_weight, lengths, mask)

    def partial_fit(self, X, y, sample_weight=None, lengths=None, mask=None):
        """One pass over ``X, y``, continuing from the current weights and optimizer state."""
        return self._fit(X, y, sample_weight, lengths, mask, epochs=1, incremental=True)

    def predict(self, X, lengths=None, mask=None):
        """Predictions [B] (or [B, n_outputs] when fitted on 2-D y), float64."""
        out = self._logits(X, lengths, mask).astype(np.float64) * self._y_scale + self._y_mean
        return out[:, 0] if self._y_is_1d else out

    def score(self, X, y, sample_weight=None, lengths=None, mask=None):
        """R^2 of :meth:`predict` (averaged uniformly over outputs, as scikit-learn's ``r2_score``)."""
        predicted = self.predict(X, lengths, mask)
        n = predicted.shape[0]
        truth = _regression_targets(y, n).reshape(n, -1)
        predicted = predicted.reshape(n, -1)
        if truth.shape != predicted.shape:
            raise ValueError(f"y: has {truth.shape[1]} outputs per example, the model predicts {predicted.shape[1]}")
        w = _read_sample_weight(sample_weight, n)
        w = np.ones(n) if w is None else w
        residual = (w[:, None] * (truth - predicted) ** 2).sum(axis=0)
        total = (w[:, None] * (truth - np.average(truth, axis=0, weights=w)) ** 2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0),
                          np.where(residual > 0, 0.0, 1.0))     # a constant y: 1 if exact, else 0 (as sklearn)
        return float(np.mean(r2))
