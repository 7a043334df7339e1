"""``minirnn serve``: exported bundles behind TensorFlow Serving's REST API.

    minirnn serve EXPORT_BASE [--model-name minirnn] [--host 127.0.0.1] [--port 8501]

EXPORT_BASE is the folder ``export_saved_model`` writes versions into (``<base>/<unix seconds>/``),
or one version folder. The URLs and JSON bodies are TF Serving's (its RESTful API page):

    GET  /v1/models/NAME[/versions/V]                  model status (model_version_status)
    GET  /v1/models/NAME[/versions/V]/metadata         signatures: inputs, outputs, method_name
    POST /v1/models/NAME[/versions/V]:predict          {"instances": [...]} or {"inputs": {...}}
    POST /v1/models/NAME[/versions/V]:classify         {"examples": [...], "context"?: {...}}
    POST /v1/models/NAME[/versions/V]:regress          {"examples": [...], "context"?: {...}}
    GET  /monitoring/prometheus/metrics                request, predictor-call and batch counters

Inputs are the exported model's features (a tf.Example's features, as JSON): one object per
example, sequences as nested lists of steps, of any length. Errors are a 4xx status and
``{"error": "..."}``, never a traceback or a dropped connection.

How it runs (one process):

* The HTTP stack is uvicorn (the ``serve`` extra), imported only by :func:`run`; the application is a
  plain ASGI callable (:class:`App`), with no web framework between it and the server.
* The event loop parses requests and writes responses; predictor calls run on one worker thread (the
  kernels release the GIL and split a batch over the cores themselves).
* Dynamic batching (TF Serving's ``--enable_batching``): requests for the same version and signature
  that wait while the worker is busy, or within ``--batch-timeout-micros`` of the first, are joined
  into one predictor call of at most ``--max-batch-size`` examples, and the outputs are split back.
  A joined call that fails is repeated request by request, so each request gets its own answer.
* Versions: the newest ``--num-versions`` loadable version folders are served. A folder thread polls
  EXPORT_BASE every ``--poll-seconds``; a new version is loaded and warmed up (every signature is
  run once on a made-up example) before it serves, the version it replaces is retired once its
  in-flight requests finish, and a version that fails to load is refused with a log line while the
  loaded ones keep serving.
* SIGTERM or SIGINT: no new connections; in-flight requests finish (up to ``--drain-seconds``); exit 0.
"""

import argparse
import asyncio
import base64
import collections
import concurrent.futures
import json
import logging
import math
import os
import re
import socket
import sys
import threading

import numpy as np

from .config import DEVICES
from .errors import install_hint

__all__ = ["add_parser", "run", "main", "App", "ModelServer", "ServeError"]

logger = logging.getLogger("minirnn.serving")

DEFAULT_PORT = 8501                          # TF Serving's REST port
DEFAULT_MAX_REQUEST_BYTES = 16 * 2 ** 20
METRICS_PATH = "/monitoring/prometheus/metrics"
SERVE_PACKAGES = "uvicorn httptools uvloop"
METHOD_NAMES = {"predict": "tensorflow/serving/predict", "classify": "tensorflow/serving/classify",
                "regress": "tensorflow/serving/regress"}
_URL = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/:]*))?/?$")


class ServeError(ValueError):
    """The serve command cannot start (bad EXPORT_BASE, nothing loadable, port taken, no uvicorn)."""


class _Disconnected(Exception):
    """The client closed the connection before its request body arrived."""


class RequestError(Exception):
    """A request refused: the HTTP status and the one-line message of ``{"error": ...}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def _one_line(error):
    text = str(error.args[0]) if isinstance(error, KeyError) and len(error.args) == 1 else str(error)
    return " ".join((text or type(error).__name__).split())


# ---- what a bundle reads and writes: its features, and its signatures as TF Serving describes them

def _column_keys(spec):
    """The feature keys a column (spec) reads, those of the columns it is built on included."""
    kind = spec.get("type")
    if kind == "bucketized":
        return _column_keys(spec["source"])
    if kind == "weighted":
        return _column_keys(spec["categorical"]) + [spec["weight_feature_key"]]
    if kind in ("embedding", "indicator"):
        return _column_keys(spec["categorical"])
    return [spec["key"]]


def _base_column(spec):
    while spec.get("type") in ("bucketized", "weighted", "embedding", "indicator"):
        spec = spec.get("source") or spec["categorical"]
    return spec


def _input_specs(spec):
    """{feature key: (TF dtype name, shape with -1 for batch and time, made-up value of one example)}."""
    out = {}
    for group, sequence in (("sequence_columns", True), ("context_columns", False)):
        for column in spec.get(group) or []:
            base = _base_column(column)
            steps = 2
            kind = base.get("type")
            if kind == "numeric":
                shape = tuple(base.get("shape") or ())
                value = np.zeros(((steps,) if sequence else ()) + shape).tolist()
                entry = ("DT_FLOAT", shape, value)
            elif kind == "identity":
                entry = ("DT_INT64", (), [0] * steps if sequence else 0)
            else:
                vocabulary = base.get("vocabulary") or ["a"]
                word = vocabulary[0]
                entry = ("DT_INT64" if isinstance(word, int) else "DT_STRING", (), [word] * steps if sequence else word)
            dims = (-1, -1) if sequence else (-1,)
            out[base["key"]] = (entry[0], dims + entry[1], entry[2])
            if column.get("type") == "weighted":
                out[column["weight_feature_key"]] = ("DT_FLOAT", dims, [1.0] * steps if sequence else 1.0)
    return out


_DTYPES = {"f": {4: "DT_FLOAT", 8: "DT_DOUBLE", 2: "DT_HALF"}, "i": {8: "DT_INT64", 4: "DT_INT32", 2: "DT_INT16",
           1: "DT_INT8"}, "u": {1: "DT_UINT8", 2: "DT_UINT16", 4: "DT_UINT32", 8: "DT_UINT64"}, "b": {1: "DT_BOOL"}}


def _dtype_name(array):
    if array.dtype.kind in "OSU":
        return "DT_STRING"
    return _DTYPES.get(array.dtype.kind, {}).get(array.dtype.itemsize, "DT_INVALID")


def _tensor_info(name, dtype, shape):
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in shape],
                                             "unknown_rank": False}, "name": name}


class Servable:
    """One loaded version: the model, its signatures' metadata, and its in-flight request count."""

    def __init__(self, version, path, model):
        self.version, self.path, self.model = version, path, model
        spec = model.spec
        self.inputs = _input_specs(spec)
        self.required = sorted(self.inputs)
        head = spec.get("head") or {}
        self.optional = {head["weight_column"]} if head.get("weight_column") else set()
        self.dynamic = spec.get("kind") == "dynamic_rnn"
        self.sequence_keys = {_base_column(c)["key"] for c in spec.get("sequence_columns") or []}
        self.return_sequences = bool((spec.get("network") or {}).get("return_sequences"))
        self.signatures = spec["signatures"]
        self.outputs = {}
        self.active = 0
        self.retired = False
        self.batcher = None

    def warm_up(self):
        """Run every signature on a made-up example of 1 and of 2 steps: compiles the kernels before
        the first request, and gives each output's dtype and shape (-1 where the steps change it)."""
        examples = [{k: v for k, (_, _, v) in self.inputs.items()}]
        shorter = [{k: (v[:1] if k in self.sequence_keys else v) for k, (_, _, v) in self.inputs.items()}]
        for name in sorted(self.signatures):
            call = self.model.signature(name)
            first, second = call(examples), call(shorter)
            self.outputs[name] = {
                key: (_dtype_name(np.asarray(value)),
                      (-1,) + tuple(-1 if np.ndim(second[key]) != np.ndim(value) or
                                    np.shape(second[key])[i + 1] != d else d
                                    for i, d in enumerate(np.shape(value)[1:])))
                for key, value in first.items()}

    def signature_def(self, name):
        signature = self.signatures[name]
        inputs = {k: _tensor_info(k, dtype, shape) for k, (dtype, shape, _) in self.inputs.items()}
        outputs = {k: _tensor_info(k, dtype, shape) for k, (dtype, shape) in self.outputs.get(name, {}).items()}
        return {"inputs": inputs, "outputs": outputs,
                "method_name": METHOD_NAMES.get(signature.get("method"), METHOD_NAMES["predict"])}

    def known(self, key):
        return key in self.inputs or key in self.optional or (self.dynamic and key.startswith("rnn_cell_state_"))


def load_servable(version, path, device="cpu"):
    """Load and warm up one version (predicting on ``device``, see ``load_exported``); any failure
    is a ValueError naming the folder."""
    from .export import load_exported
    try:
        model = load_exported(path, device=device)
        servable = Servable(version, path, model)
        servable.warm_up()
    except Exception as error:                    # an untrusted folder: every failure refuses it
        raise ValueError(f"{type(error).__name__}: {_one_line(error)}") from error
    return servable


# ---- JSON in: rows of examples ----------------------------------------------------------------

def _decode_b64(value):
    """TF Serving's binary values: {"b64": "..."} anywhere in a value becomes the decoded bytes
    (a str when they are UTF-8, as the feature columns read text)."""
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise RequestError(400, f"a JSON object in a value must be {{\"b64\": \"<base64>\"}}, got keys "
                                    f"{sorted(value)}")
        try:
            raw = base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise RequestError(400, f"invalid base64 in {{\"b64\": {value['b64'][:40]!r}}}") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    return value


def parse_body(body):
    """The JSON object of a request body (NaN and Infinity allowed, as TF Serving)."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "malformed JSON: the body is not UTF-8") from None
    except ValueError as error:
        raise RequestError(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"the request body must be a JSON object, got a JSON {type(data).__name__}")
    if b'"b64"' in body:
        data = _decode_b64_fields(data)
    return data


def _decode_b64_fields(data):
    out = dict(data)
    for field in ("instances", "inputs", "examples", "context"):
        if field in out:
            value = out[field]
            if isinstance(value, dict) and set(value) != {"b64"}:
                out[field] = {k: _decode_b64(v) for k, v in value.items()}
            elif isinstance(value, list):
                out[field] = [{k: _decode_b64(v) for k, v in e.items()} if isinstance(e, dict) and set(e) != {"b64"}
                              else _decode_b64(e) for e in value]
            else:
                out[field] = _decode_b64(value)
    return out


def _check_fields(data, allowed, verb):
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r} in a {verb} request; its fields are "
                                f"{', '.join(repr(a) for a in allowed)}")


def _check_examples(servable, examples, what):
    for i, example in enumerate(examples):
        for key in example:
            if not servable.known(key):
                raise RequestError(400, f"{what} {i}: unknown feature {key!r}; the model's inputs are "
                                        f"{servable.required}")
        for key in servable.required:
            if key not in example:
                raise RequestError(400, f"{what} {i} has no feature {key!r}; the model's inputs are "
                                        f"{servable.required}")
    return examples


def rows_from_predict(servable, data):
    """(examples, row format?) of a predict body: ``instances`` (rows) or ``inputs`` (columns); a
    model with one input takes the values themselves in either."""
    _check_fields(data, ("signature_name", "instances", "inputs"), "predict")
    if ("instances" in data) == ("inputs" in data):
        raise RequestError(400, "a predict request has either 'instances' (row format) or 'inputs' (columnar "
                                "format)" + (", not both" if "inputs" in data else ""))
    single = servable.required[0] if len(servable.required) == 1 else None
    if "instances" in data:
        instances = data["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError(400, "'instances' must be a non-empty list of examples")
        examples = []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                if single is None:
                    raise RequestError(400, f"instance {i} is not an object; the model has several inputs "
                                            f"{servable.required}, so each instance names them")
                instance = {single: instance}
            examples.append(instance)
        return _check_examples(servable, examples, "instance"), True
    inputs = data["inputs"]
    if not isinstance(inputs, dict):
        if single is None:
            raise RequestError(400, f"'inputs' must be an object naming the model's inputs {servable.required}")
        inputs = {single: inputs}
    if not inputs:
        raise RequestError(400, "'inputs' is empty")
    sizes = {}
    for key, value in inputs.items():
        if not servable.known(key):
            raise RequestError(400, f"inputs: unknown feature {key!r}; the model's inputs are {servable.required}")
        if not isinstance(value, list) or not value:
            raise RequestError(400, f"inputs: feature {key!r} must be a non-empty list, one value per example")
        sizes[key] = len(value)
    if len(set(sizes.values())) > 1:
        raise RequestError(400, f"inputs: the features have different numbers of examples {sizes}; an "
                                "estimator's features share the batch dimension")
    missing = [k for k in servable.required if k not in inputs]
    if missing:
        raise RequestError(400, f"inputs: no feature {missing[0]!r}; the model's inputs are {servable.required}")
    n = next(iter(sizes.values()))
    return [{k: v[i] for k, v in inputs.items()} for i in range(n)], False


def rows_from_examples(servable, data, verb):
    """The examples of a classify/regress body, each with the ``context`` features added."""
    _check_fields(data, ("signature_name", "examples", "context"), verb)
    examples = data.get("examples")
    if not isinstance(examples, list) or not examples:
        raise RequestError(400, f"a {verb} request needs 'examples': a non-empty list of objects")
    context = data.get("context", {})
    if not isinstance(context, dict):
        raise RequestError(400, "'context' must be an object of features shared by every example")
    rows = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise RequestError(400, f"example {i} is not an object of features")
        both = sorted(set(example) & set(context))
        if both:
            raise RequestError(400, f"feature {both[0]!r} is in both 'context' and example {i}")
        rows.append({**context, **example} if context else example)
    return _check_examples(servable, rows, "example")


def padded_steps(servable, examples):
    """The steps a batch of these examples is padded to (return_sequences outputs have them)."""
    longest = 0
    for example in examples:
        for key in servable.sequence_keys:
            value = example.get(key)
            if isinstance(value, list):
                longest = max(longest, len(value))
    return max(longest, 1) if servable.dynamic else longest


# ---- JSON out --------------------------------------------------------------------------------

def _text(value, binary):
    if isinstance(value, bytes):
        if not binary:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, str) and binary:
        return {"b64": base64.b64encode(value.encode("utf-8")).decode("ascii")}
    if isinstance(value, list):
        return [_text(v, binary) for v in value]
    return value


def jsonable(name, array):
    """An output array as JSON values: numbers as numbers, strings as strings, and bytes that are not
    UTF-8 (or any string of an output whose name ends in ``_bytes``) as {"b64": ...}."""
    array = np.asarray(array)
    values = array.tolist()
    if array.dtype.kind in "OSU":
        return _text(values, name.endswith("_bytes"))
    return values


def predict_response(outputs, row):
    """TF Serving's predict response: ``predictions`` (rows) or ``outputs`` (columns); a single
    named output is given without its name."""
    columns = {name: jsonable(name, value) for name, value in outputs.items()}
    if not row:
        return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    names = list(columns)
    return {"predictions": [dict(zip(names, values)) for values in zip(*columns.values())]}


def classify_response(outputs):
    """``results``: per example, [label, score] pairs (label "" when the signature has no classes)."""
    scores = outputs.get("scores")
    classes = outputs.get("classes")
    if scores is None and classes is None:
        raise RequestError(400, "the classification signature has neither 'classes' nor 'scores'")
    n = len(scores if scores is not None else classes)
    scores = jsonable("scores", np.reshape(scores, (n, -1))) if scores is not None else None
    labels = jsonable("classes", np.reshape(classes, (n, -1))) if classes is not None else None
    results = []
    for i in range(n):
        row_labels = labels[i] if labels is not None else [""] * len(scores[i])
        row_scores = scores[i] if scores is not None else [None] * len(row_labels)
        results.append([[label, score] for label, score in zip(row_labels, row_scores)])
    return {"results": results}


def regress_response(outputs):
    """``results``: one number per example."""
    if len(outputs) != 1:
        raise RequestError(400, f"a regression signature has one output; this one has {sorted(outputs)}")
    (name, values), = outputs.items()
    values = np.asarray(values)
    if values.ndim > 2 or (values.ndim == 2 and values.shape[1] != 1):
        raise RequestError(400, f"regress needs one value per example; output {name!r} has shape "
                                f"[batch, {', '.join(str(d) for d in values.shape[1:])}]: use :predict")
    return {"results": jsonable(name, values.reshape(-1))}


# ---- dynamic batching ---------------------------------------------------------------------------

class Stats:
    """Counters for the metrics page (all touched on the event loop's thread)."""

    def __init__(self):
        self.requests = collections.Counter()           # (api, status) -> count
        self.calls = collections.Counter()              # (version, signature) -> predictor calls
        self.examples = collections.Counter()           # (version, signature) -> examples predicted
        self.batched = collections.Counter()            # (version, signature) -> requests in those calls
        self.largest = 0
        self.loaded = collections.Counter()             # "loaded" / "refused" / "retired" -> count


class _Item:
    __slots__ = ("signature", "key", "examples", "future", "arrived")

    def __init__(self, signature, key, examples, future, arrived):
        self.signature, self.key, self.examples, self.future = signature, key, examples, future
        self.arrived = arrived


class Batcher:
    """Joins the requests waiting for one version into predictor calls of at most ``max_batch_size``
    examples (a larger request runs alone). The first waiting request starts a batch; it runs when it
    is full or ``timeout`` seconds after that request arrived, and requests that arrive while the
    worker is busy wait for the next one. Requests join only with requests of the same signature
    (and, for per-step outputs, the same padded length)."""

    def __init__(self, servable, pool, stats, max_batch_size, timeout):
        self.servable, self.pool, self.stats = servable, pool, stats
        self.max_batch_size, self.timeout = max_batch_size, timeout
        self.pending = collections.deque()
        self.rows = 0
        self.task = None
        self.full = None

    async def submit(self, signature, examples):
        loop = asyncio.get_running_loop()
        key = (signature, padded_steps(self.servable, examples) if self.servable.return_sequences else None)
        item = _Item(signature, key, examples, loop.create_future(), loop.time())
        self.pending.append(item)
        self.rows += len(examples)
        if self.task is None:
            self.full = asyncio.Event()
            self.task = loop.create_task(self._drain())
        elif self.rows >= self.max_batch_size:
            self.full.set()
        return await item.future

    async def _drain(self):
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                wait = self.pending[0].arrived + self.timeout - loop.time()
                if wait > 0 and self.rows < self.max_batch_size:
                    self.full.clear()
                    try:
                        await asyncio.wait_for(self.full.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                group = self._take()
                await self._run(loop, group)
        finally:
            self.task = None

    def _take(self):
        first = self.pending.popleft()
        group, rows, kept = [first], len(first.examples), collections.deque()
        while self.pending:
            item = self.pending.popleft()
            if item.key == first.key and rows + len(item.examples) <= self.max_batch_size:
                group.append(item)
                rows += len(item.examples)
            else:
                kept.append(item)
        self.pending = kept
        self.rows -= rows
        return group

    async def _run(self, loop, group):
        signature = group[0].signature
        call = self.servable.model.signature(signature)
        examples = [e for item in group for e in item.examples]
        try:
            outputs = await loop.run_in_executor(self.pool, call, examples)
        except Exception as error:
            self._count(signature, len(examples), len(group))
            if len(group) == 1:
                self._answer(group[0], error=error)
                return
            for item in group:                     # one request's bad input: each gets its own answer
                try:
                    self._answer(item, await loop.run_in_executor(self.pool, call, item.examples))
                except Exception as single:
                    self._answer(item, error=single)
                self._count(signature, len(item.examples), 1)
            return
        self._count(signature, len(examples), len(group))
        start = 0
        for item in group:
            n = len(item.examples)
            self._answer(item, {k: v[start:start + n] for k, v in outputs.items()})
            start += n

    def _count(self, signature, examples, requests):
        key = (self.servable.version, signature)
        self.stats.calls[key] += 1
        self.stats.examples[key] += examples
        self.stats.batched[key] += requests
        self.stats.largest = max(self.stats.largest, examples)

    @staticmethod
    def _answer(item, outputs=None, error=None):
        if item.future.done():                     # the client went away
            return
        if error is None:
            item.future.set_result(outputs)
        elif isinstance(error, (ValueError, KeyError, TypeError, IndexError, OverflowError)):
            item.future.set_exception(RequestError(400, _one_line(error)))
        else:
            item.future.set_exception(error)


# ---- versions ---------------------------------------------------------------------------------

def _version_of(folder):
    name = os.path.basename(os.path.normpath(folder))
    return int(name) if name.isdigit() else 1


def _stamp(path):
    """What changes when a version folder's files change (a refused one is tried again then)."""
    out = []
    for name in ("spec.json", "model.h5"):
        try:
            st = os.stat(os.path.join(path, name))
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class ModelServer:
    """The versions of one model: loading, polling the base folder, retiring, and the request API."""

    def __init__(self, base, name="minirnn", num_versions=1, poll_seconds=1.0, max_batch_size=64,
                 batch_timeout_micros=0, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES, device="cpu"):
        self.base, self.name, self.device = os.path.abspath(base), name, device
        self.num_versions, self.poll_seconds = num_versions, poll_seconds
        self.max_batch_size, self.batch_timeout = max_batch_size, batch_timeout_micros / 1e6
        self.max_request_bytes = max_request_bytes
        self.single = os.path.isfile(os.path.join(self.base, "spec.json"))
        self.versions = {}                          # version -> Servable, replaced whole (copy on write)
        self.refused = {}                           # version -> stamp of the files that failed
        self.stats = Stats()
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="minirnn-predict")
        self.loop = None
        self._stop = threading.Event()
        self._poller = None

    # -- the folder ---------------------------------------------------------------------------
    def _on_disk(self):
        """{version: path} of the version folders under the base (or the base itself)."""
        if self.single:
            return {_version_of(self.base): self.base}
        out = {}
        for entry in os.scandir(self.base):
            if entry.name.isdigit() and entry.is_dir():
                out[int(entry.name)] = entry.path
        return out

    def _scan(self):
        """Load the newest versions not yet loaded (or refused); returns {version: Servable} of the
        ones loaded now, and the versions that should serve."""
        on_disk = self._on_disk()
        loaded = dict(self.versions)
        wanted, fresh = [], {}
        for version in sorted(on_disk, reverse=True):
            if len(wanted) == self.num_versions:
                break
            path = on_disk[version]
            if version in loaded:
                wanted.append(version)
                continue
            stamp = _stamp(path)
            if self.refused.get(version) == stamp:
                continue
            try:
                fresh[version] = load_servable(version, path, self.device)
            except ValueError as error:
                self.refused[version] = stamp
                self.stats.loaded["refused"] += 1
                serving = sorted(loaded, reverse=True)
                logger.warning("model %r version %d at %s refused: %s%s", self.name, version, path, error,
                               f"; still serving version {serving[0]}" if serving else "")
                continue
            self.refused.pop(version, None)
            wanted.append(version)
        return fresh, wanted

    def load_initial(self):
        if not os.path.isdir(self.base):
            raise ServeError(f"EXPORT_BASE {self.base}: no such folder")
        try:
            fresh, wanted = self._scan()
        except OSError as error:
            raise ServeError(f"EXPORT_BASE {self.base}: {error.strerror or error}") from error
        if not wanted:
            reason = ("every version folder failed to load (see the lines above)" if self.refused else
                      "no version folder (<base>/<number>/ holding spec.json and model.h5) to serve")
            raise ServeError(f"EXPORT_BASE {self.base}: {reason}")
        self._install(fresh, wanted)

    def _install(self, fresh, wanted):
        """On the event loop's thread (or before it runs): serve ``wanted``, retire the others."""
        current = dict(self.versions)
        current.update(fresh)
        serving = {v: current[v] for v in wanted if v in current}
        if not serving:
            return
        for version, servable in fresh.items():
            servable.batcher = Batcher(servable, self.pool, self.stats, self.max_batch_size, self.batch_timeout)
            self.stats.loaded["loaded"] += 1
            logger.info("model %r version %d loaded from %s", self.name, version, servable.path)
        for version, servable in current.items():
            if version not in serving:
                servable.retired = True
                self.stats.loaded["retired"] += 1
                logger.info("model %r version %d retired%s", self.name, version,
                            f"; unloaded after its {servable.active} in-flight requests" if servable.active else
                            "; unloaded")
        self.versions = serving

    def _poll(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                fresh, wanted = self._scan()
            except OSError as error:
                logger.warning("model %r: cannot read %s (%s); still serving %s", self.name, self.base,
                               error.strerror or error, sorted(self.versions))
                continue
            except Exception:                       # never let the folder thread die silently
                logger.exception("model %r: polling %s failed", self.name, self.base)
                continue
            if fresh or set(wanted) != set(self.versions):
                future = asyncio.run_coroutine_threadsafe(self._install_async(fresh, wanted), self.loop)
                try:
                    future.result()
                except Exception:
                    logger.exception("model %r: installing versions %s failed", self.name, sorted(fresh))

    async def _install_async(self, fresh, wanted):
        self._install(fresh, wanted)

    def start(self, loop):
        self.loop = loop
        if self.poll_seconds > 0 and not self.single:
            self._poller = threading.Thread(target=self._poll, name="minirnn-versions", daemon=True)
            self._poller.start()

    def stop(self):
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        self.pool.shutdown(wait=True)

    # -- requests -----------------------------------------------------------------------------
    def servable(self, name, version):
        if name != self.name:
            raise RequestError(404, f"Servable not found for request: Latest({name}) (this server serves "
                                    f"model {self.name!r})")
        if version is None:
            if not self.versions:
                raise RequestError(404, f"Servable not found for request: Latest({name})")
            return self.versions[max(self.versions)]
        if not version.isdigit():
            raise RequestError(400, f"version {version!r}: expected a whole number")
        servable = self.versions.get(int(version))
        if servable is None:
            raise RequestError(404, f"Servable not found for request: Specific({name}, {version}); loaded "
                                    f"versions: {sorted(self.versions)}")
        return servable

    def status(self, name, version):
        self.servable(name, version)               # the errors: unknown model or version
        servables = [self.versions[int(version)]] if version is not None else \
            [self.versions[v] for v in sorted(self.versions, reverse=True)]
        return {"model_version_status": [{"version": str(s.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}} for s in servables]}

    def metadata(self, name, version):
        servable = self.servable(name, version)
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(servable.version)},
                "metadata": {"signature_def": {"signature_def": {
                    signature: servable.signature_def(signature) for signature in sorted(servable.signatures)}}}}

    async def infer(self, name, version, verb, body):
        servable = self.servable(name, version)
        data = parse_body(body)
        signature = data.get("signature_name", "serving_default")
        if not isinstance(signature, str):
            raise RequestError(400, "'signature_name' must be a string")
        signature = signature or "serving_default"
        if signature not in servable.signatures:
            raise RequestError(400, f"Serving signature name: {signature!r} not found in signature def; the "
                                    f"model has {sorted(servable.signatures)}")
        method = servable.signatures[signature].get("method", "predict")
        if verb in ("classify", "regress") and method != verb:
            raise RequestError(400, f"Expected {'classification' if verb == 'classify' else 'regression'} signature "
                                    f"method_name to be {METHOD_NAMES[verb]}. Was: {METHOD_NAMES.get(method)} "
                                    f"(signature {signature!r})")
        if verb == "predict":
            examples, row = rows_from_predict(servable, data)
        else:
            examples = rows_from_examples(servable, data, verb)
        servable.active += 1
        try:
            outputs = await servable.batcher.submit(signature, examples)
        finally:
            servable.active -= 1
            if servable.retired and servable.active == 0:
                logger.info("model %r version %d unloaded (its in-flight requests finished)", self.name,
                            servable.version)
        if verb == "predict":
            return predict_response(outputs, row)
        if verb == "classify":
            return classify_response(outputs)
        return regress_response(outputs)

    def metrics(self):
        s, m = self.stats, self.name
        lines = ["# TYPE minirnn_serving_requests_total counter"]
        lines += [f'minirnn_serving_requests_total{{model="{m}",api="{api}",code="{code}"}} {n}'
                  for (api, code), n in sorted(s.requests.items())]
        for metric, counter, help_text in (
                ("predictor_calls_total", s.calls, "predictor calls (one per batch)"),
                ("predictor_examples_total", s.examples, "examples predicted"),
                ("predictor_requests_total", s.batched, "requests answered by those calls")):
            lines += [f"# HELP minirnn_serving_{metric} {help_text}", f"# TYPE minirnn_serving_{metric} counter"]
            lines += [f'minirnn_serving_{metric}{{model="{m}",version="{v}",signature="{sig}"}} {n}'
                      for (v, sig), n in sorted(counter.items())]
        lines += ["# TYPE minirnn_serving_largest_batch gauge", f'minirnn_serving_largest_batch{{model="{m}"}} '
                  f"{s.largest}", "# TYPE minirnn_serving_versions_total counter"]
        lines += [f'minirnn_serving_versions_total{{model="{m}",event="{e}"}} {n}' for e, n in sorted(s.loaded.items())]
        lines += ["# TYPE minirnn_serving_version_available gauge"]
        lines += [f'minirnn_serving_version_available{{model="{m}",version="{v}"}} 1' for v in sorted(self.versions)]
        return "\n".join(lines) + "\n"


# ---- the ASGI application -----------------------------------------------------------------------

def _dumps(payload):
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _api(path):
    """The metrics label of a request: predict, classify, regress, metadata, status, metrics or other."""
    if path == METRICS_PATH:
        return "metrics"
    match = _URL.match(path)
    if match is None:
        return "other"
    if match["verb"] is not None:
        return match["verb"] if match["verb"] in METHOD_NAMES else "other"
    return "metadata" if match["metadata"] else "status"


class App:
    """The raw ASGI application: TF Serving's REST URLs over a :class:`ModelServer`."""

    def __init__(self, server, on_startup=None):
        self.server, self.on_startup = server, on_startup

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        api = _api(scope["path"])
        try:
            status, payload = await self._handle(scope, receive)
        except RequestError as error:
            status, payload = error.status, {"error": error.message}
        except _Disconnected:
            return
        except Exception as error:
            logger.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            status, payload = 500, {"error": f"internal error: {type(error).__name__}: {_one_line(error)}"}
        self.server.stats.requests[(api, status)] += 1
        if isinstance(payload, str):
            body, kind = payload.encode("utf-8"), b"text/plain; version=0.0.4; charset=utf-8"
        else:
            body, kind = _dumps(payload), b"application/json"
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode("ascii"))]
        if status == 405:
            headers.append((b"allow", b"POST" if api in METHOD_NAMES else b"GET"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.server.start(asyncio.get_running_loop())
                if self.on_startup is not None:
                    self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.server.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, scope, receive):
        limit = self.server.max_request_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise RequestError(413, f"request body of {int(value)} bytes is larger than the limit of {limit} "
                                        "bytes (--max-request-bytes)")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body larger than the limit of {limit} bytes (--max-request-bytes)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _handle(self, scope, receive):
        method, path = scope["method"], scope["path"]
        server = self.server
        if path == METRICS_PATH:
            if method != "GET":
                raise RequestError(405, f"{method} {path}: use GET")
            return 200, server.metrics()
        match = _URL.match(path)
        if match is None:
            raise RequestError(404, f"Malformed request: {method} {path} (the URLs are /v1/models/NAME"
                                    "[/versions/V][/metadata|:predict|:classify|:regress])")
        name, version, verb = match["name"], match["version"], match["verb"]
        if verb is not None:
            if verb not in METHOD_NAMES:
                raise RequestError(404, f"Malformed request: {method} {path}: unknown verb {verb!r}; the verbs are "
                                        "predict, classify and regress")
            if method != "POST":
                raise RequestError(405, f"{method} {path}: use POST")
            body = await self._read_body(scope, receive)
            return 200, await server.infer(name, version, verb, body)
        if method != "GET":
            raise RequestError(405, f"{method} {path}: use GET")
        if match["metadata"]:
            return 200, server.metadata(name, version)
        return 200, server.status(name, version)


# ---- the command ------------------------------------------------------------------------------

def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _non_negative_int(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _port(text):
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}")
    return int(text)


DESCRIPTION = """\
Serve the exported models under EXPORT_BASE over TensorFlow Serving's REST API (the same URLs and
JSON): GET /v1/models/NAME[/versions/V][/metadata], POST /v1/models/NAME[/versions/V]:predict,
:classify and :regress. The newest version folder is served; new versions are picked up without a
restart. Concurrent requests are batched into one predictor call. SIGTERM finishes the requests in
flight, then exits. Needs the serve extra (uvicorn)."""


def add_parser(subparsers, **kwargs):
    """Add the ``serve`` command to an argparse subparsers object; returns its parser."""
    parser = subparsers.add_parser("serve", help="serve exported models over TF Serving's REST API",
                                   description=DESCRIPTION, **kwargs)
    _add_arguments(parser)
    return parser


def _add_arguments(parser):
    parser.add_argument("export_base", metavar="EXPORT_BASE",
                        help="the folder export_saved_model writes versions into (or one version folder)")
    parser.add_argument("--model-name", default="minirnn", metavar="NAME",
                        help="the model's name in the URLs (default minirnn)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}, TF Serving's REST port; 0: any free port)")
    batching = parser.add_argument_group("batching (as TF Serving's --enable_batching)")
    batching.add_argument("--max-batch-size", type=_positive_int, default=64, metavar="N",
                          help="most examples in one predictor call (default 64; 1 turns batching off)")
    batching.add_argument("--batch-timeout-micros", type=_non_negative_int, default=0, metavar="US",
                          help="how long the first request of a batch waits for others (default 0: requests "
                               "join while the predictor is busy)")
    versions = parser.add_argument_group("versions")
    versions.add_argument("--num-versions", type=_positive_int, default=1, metavar="N",
                          help="serve the newest N versions (default 1)")
    versions.add_argument("--poll-seconds", type=_seconds, default=1.0, metavar="S",
                          help="look for new versions every S seconds (default 1; 0: only at start)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-request-bytes", type=_positive_int, default=DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                        help=f"larger request bodies are refused with 413 (default {DEFAULT_MAX_REQUEST_BYTES})")
    limits.add_argument("--drain-seconds", type=_seconds, default=30.0, metavar="S",
                        help="on SIGTERM, how long requests in flight may take to finish (default 30)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where predictions run: cpu (default), cuda (an NVIDIA GPU; an error when there is "
                             "none) or auto (the GPU when one is usable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    parser.set_defaults(run=run)


def _listen(host, port):
    """A listening socket, made here so that a taken port fails before the server starts and port 0
    is known. Its protocol is IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    only on sockets that say so, and with it on a response written in two parts waits for the
    client's delayed ACK (40 ms on Linux)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             proto=socket.IPPROTO_TCP)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    return sock


def run(args, **uvicorn_options):
    """Run the server until SIGTERM or SIGINT; returns 0. Failures to start raise :class:`ServeError`
    (a ValueError: the command line prints it as one ``minirnn: error:`` line). ``uvicorn_options``
    go to ``uvicorn.Config`` (``http="h11"``, ``loop="asyncio"``: what benchmarks/bench_serving.py
    compares; the default "auto" takes httptools and uvloop when installed)."""
    try:
        import uvicorn
    except ImportError as error:
        raise ServeError(f"the serve command needs uvicorn: {install_hint('serve', SERVE_PACKAGES)}") from error
    if args.device != "cpu":                      # a missing GPU is one error now, not a refusal per version
        from .cuda import predictor_for
        try:
            predictor_for(args.device)
        except (RuntimeError, ValueError) as error:
            raise ServeError(f"--device {args.device}: {_one_line(error)}") from error
    server = ModelServer(args.export_base, args.model_name, args.num_versions, args.poll_seconds,
                         args.max_batch_size, args.batch_timeout_micros, args.max_request_bytes, args.device)
    server.load_initial()
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host

    def started():
        logger.info("serving model %r version%s %s from %s at http://%s:%d/v1/models/%s (batches of up to %d, "
                    "timeout %d us)", server.name, "s" if len(server.versions) > 1 else "",
                    ", ".join(str(v) for v in sorted(server.versions, reverse=True)), server.base, shown, port,
                    server.name, server.max_batch_size, args.batch_timeout_micros)

    config = uvicorn.Config(App(server, started), lifespan="on", log_config=None, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=args.drain_seconds, server_header=False,
                            **uvicorn_options)
    uv = _server_class()(config)
    try:
        uv.run(sockets=[sock])
    finally:
        sock.close()
    if uv.interrupted:
        raise KeyboardInterrupt
    logger.info("model %r: stopped", server.name)
    return 0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, ending with status 0 on SIGTERM (uvicorn raises the signal again)."""

        interrupted = False

        def capture_signals(self):
            import contextlib
            import signal

            @contextlib.contextmanager
            def captured():
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                handlers = {sig: signal.signal(sig, self._exit) for sig in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for sig, handler in handlers.items():
                        signal.signal(sig, handler)
            return captured()

        def _exit(self, sig, frame):
            import signal
            if sig == signal.SIGINT:
                if self.should_exit:
                    self.force_exit = True
                self.interrupted = True
            logger.info("%s received: finishing the requests in flight", signal.Signals(sig).name)
            self.should_exit = True

    return Server


def main(argv=None, **uvicorn_options):
    """``python -m minirnn.serving EXPORT_BASE ...`` (the same as ``minirnn serve``); returns the exit
    status: 0 after SIGTERM, 2 when it cannot start (one ``minirnn: error:`` line)."""

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise ServeError(f"{message} (see '{self.prog} --help')")

    parser = Parser(prog="minirnn serve", description=DESCRIPTION)
    _add_arguments(parser)
    log = logging.getLogger("minirnn")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("minirnn: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
        if args.quiet:
            handler.setLevel(logging.WARNING)
        return run(args, **uvicorn_options)
    except (ValueError, OSError) as error:
        print(f"minirnn: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minirnn: interrupted", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
