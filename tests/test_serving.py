"""``minirnn serve``: TF Serving's REST API over exported bundles, checked against a real server.

The server tests start ``python -m minirnn.serving`` (what ``minirnn serve`` runs) in a subprocess on
a free port, on bundles exported by a small RNNClassifier trained a few steps, and compare each
answer with TF Serving's JSON for the same request shape and with ``load_exported(...)``'s arrays.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

import minirnn
from minirnn import feature_column as fc
from minirnn import serving
from minirnn.inputs import numpy_input_fn

uvicorn = pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")


# ---- the server in a subprocess ---------------------------------------------------------------

class Server:
    """``python -m minirnn.serving BASE --port 0 ...``: its port, its log lines, requests to it."""

    def __init__(self, base, *options, command=("-m", "minirnn.serving")):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, *command, str(base), "--port", "0", *options],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=env, cwd=str(base))
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        match = self.wait_for(r"serving model .* at http://127\.0\.0\.1:(\d+)/", timeout=120)
        self.port = int(match.group(1))

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}; the server wrote:\n" + "\n".join(self.lines))

    def request(self, method, path, body=None, raw=False):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            text = response.read().decode()
            return response.status, (text if raw else json.loads(text))
        finally:
            connection.close()

    def post(self, path, body):
        return self.request("POST", path, body)

    def metrics(self):
        status, text = self.request("GET", "/monitoring/prometheus/metrics", raw=True)
        assert status == 200
        calls = sum(int(n) for n in re.findall(r"^minirnn_serving_predictor_calls_total\{.*\} (\d+)$", text, re.M))
        requests = sum(int(n) for n in re.findall(r"^minirnn_serving_predictor_requests_total\{.*\} (\d+)$", text,
                                                  re.M))
        return calls, requests

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            self._reader.join(timeout=10)
            self.process.stdout.close()


# ---- bundles ----------------------------------------------------------------------------------

def sequences(n, seed=0):
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(rng.integers(2, 7), 2)).round(3) for _ in range(n)]
    c = rng.normal(size=n).round(3)
    return x, c, np.array([int(s[:, 0].sum() + k > 0) for s, k in zip(x, c)])


def train(model_dir, context=True, steps=3):
    x, c, y = sequences(32)
    clf = minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=(2,))],
                                [fc.numeric_column("c")] if context else None, units=[4], cell_type="gru",
                                model_dir=str(model_dir), config=minirnn.RunConfig(random_seed=0))
    features = {"x": x, "c": c} if context else {"x": x}
    clf.train(numpy_input_fn(features, y, batch_size=8, num_epochs=None, shuffle=True, seed=0), steps=steps)
    return clf


def export(clf, base):
    return os.fsdecode(clf.export_saved_model(str(base)))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A binary classifier over a sequence feature x [steps, 2] and a context feature c."""
    folder = tmp_path_factory.mktemp("serving")
    path = export(train(folder / "model"), folder / "export")
    return folder / "export", path, minirnn.load_exported(path)


@pytest.fixture(scope="module")
def server(bundle):
    server = Server(bundle[0], "--batch-timeout-micros", "20000", "--max-request-bytes", "100000")
    yield server
    assert server.stop() == 0


def instances(n=3, seed=1):
    x, c, _ = sequences(n, seed)
    return [{"x": s.tolist(), "c": float(k)} for s, k in zip(x, c)]


def URL(path=""):
    return f"/v1/models/minirnn{path}"


def assert_equal(values, expected, rtol=0):
    """JSON values against arrays: exact (float32 survives JSON), or within ``rtol`` for rows that
    ran in a joined batch (a batch's size changes the kernels' summation order, not the maths)."""
    expected = np.asarray(expected)
    if expected.dtype.kind in "OS":
        expected = np.vectorize(lambda b: b.decode())(expected)
        np.testing.assert_array_equal(np.asarray(values), expected)
    elif rtol:
        np.testing.assert_allclose(np.asarray(values, dtype=expected.dtype), expected, rtol=rtol, atol=1e-7)
    else:
        np.testing.assert_array_equal(np.asarray(values, dtype=expected.dtype), expected)


# ---- without a server: the JSON of TF Serving's responses ------------------------------------

def test_import_minirnn_and_the_serving_module_stay_light():
    code = ("import sys, minirnn; assert 'minirnn.serving' not in sys.modules; import minirnn.serving; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('uvicorn', 'uvloop', 'httptools')]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())


def test_a_single_named_output_is_unwrapped_and_several_are_named():
    one = {"outputs": np.array([[1.5], [2.5]], dtype=np.float32)}
    assert serving.predict_response(one, row=True) == {"predictions": [[1.5], [2.5]]}
    assert serving.predict_response(one, row=False) == {"outputs": [[1.5], [2.5]]}
    two = {"a": np.array([1, 2]), "b": np.array([[b"x"], [b"y"]], dtype=object)}
    assert serving.predict_response(two, row=True) == {"predictions": [{"a": 1, "b": ["x"]}, {"a": 2, "b": ["y"]}]}
    assert serving.predict_response(two, row=False) == {"outputs": {"a": [1, 2], "b": [["x"], ["y"]]}}


def test_bytes_outputs_are_text_or_b64_as_tf_serving():
    out = {"text": np.array([b"ok", b"\xff\x00"], dtype=object), "image_bytes": np.array([b"ok"], dtype=object)}
    assert serving.jsonable("text", out["text"]) == ["ok", {"b64": "/wA="}]
    assert serving.jsonable("image_bytes", out["image_bytes"]) == [{"b64": "b2s="}]


def test_b64_inputs_are_decoded_and_bad_json_is_one_error():
    body = json.dumps({"instances": [{"w": {"b64": "aGk="}, "v": [{"b64": "/w=="}]}]}).encode()
    assert serving.parse_body(body)["instances"] == [{"w": "hi", "v": [b"\xff"]}]
    for bad, match in ((b"{", "malformed JSON"), (b"[1]", "must be a JSON object"), (b"\xff", "not UTF-8"),
                       (b'{"instances": [{"w": {"b64": "***"}}]}', "invalid base64"),
                       (b'{"instances": [{"w": {"b64": "aGk=", "x": 1}}]}', "must be .*b64")):
        with pytest.raises(serving.RequestError, match=match):
            serving.parse_body(bad)


# ---- the server: endpoints --------------------------------------------------------------------

@pytest.mark.slow
def test_model_status_is_tf_servings(server, bundle):
    version = os.path.basename(bundle[1])
    expected = {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    assert server.request("GET", URL()) == (200, expected)
    assert server.request("GET", URL(f"/versions/{version}")) == (200, expected)


@pytest.mark.slow
def test_metadata_has_every_signature_in_tf_servings_shape(server, bundle):
    _, path, model = bundle
    status, body = server.request("GET", URL("/metadata"))
    assert status == 200
    assert body["model_spec"] == {"name": "minirnn", "signature_name": "", "version": os.path.basename(path)}
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert sorted(defs) == model.signatures == ["classification", "predict", "regression", "serving_default"]

    def dims(info):
        assert info["tensor_shape"]["unknown_rank"] is False
        return [int(d["size"]) for d in info["tensor_shape"]["dim"]]
    for name, sig in defs.items():
        assert {k: (v["dtype"], dims(v)) for k, v in sig["inputs"].items()} == \
            {"x": ("DT_FLOAT", [-1, -1, 2]), "c": ("DT_FLOAT", [-1, 1])}
    assert defs["serving_default"]["method_name"] == "tensorflow/serving/classify"
    assert {k: (v["dtype"], dims(v)) for k, v in defs["classification"]["outputs"].items()} == \
        {"classes": ("DT_STRING", [-1, 2]), "scores": ("DT_FLOAT", [-1, 2])}
    assert defs["regression"]["method_name"] == "tensorflow/serving/regress"
    assert {k: (v["dtype"], dims(v)) for k, v in defs["regression"]["outputs"].items()} == \
        {"outputs": ("DT_FLOAT", [-1, 1])}
    assert defs["predict"]["method_name"] == "tensorflow/serving/predict"
    assert sorted(defs["predict"]["outputs"]) == sorted(model.predict(instances(1)))
    assert server.request("GET", URL(f"/versions/{os.path.basename(path)}/metadata"))[1] == body


@pytest.mark.slow
def test_predict_row_format_equals_load_exported(server, bundle):
    model, rows = bundle[2], instances(5)                  # ragged: 2..6 steps each
    status, body = server.post(URL(":predict"), {"instances": rows})
    assert status == 200 and list(body) == ["predictions"] and len(body["predictions"]) == 5
    expected = model.signature("serving_default")(rows)
    for key in ("classes", "scores"):
        assert_equal([p[key] for p in body["predictions"]], expected[key])
    status, body = server.post(URL(":predict"), {"signature_name": "predict", "instances": rows})
    expected = model.predict(rows)
    assert sorted(body["predictions"][0]) == sorted(expected)
    for key, value in expected.items():
        assert_equal([p[key] for p in body["predictions"]], value)


@pytest.mark.slow
def test_predict_columnar_format_equals_load_exported(server, bundle):
    model, rows = bundle[2], instances(4, seed=2)
    inputs = {"x": [r["x"] for r in rows], "c": [r["c"] for r in rows]}
    status, body = server.post(URL(":predict"), {"signature_name": "predict", "inputs": inputs})
    assert status == 200 and list(body) == ["outputs"]
    expected = model.predict(inputs)
    assert sorted(body["outputs"]) == sorted(expected)
    for key, value in expected.items():
        assert_equal(body["outputs"][key], value)


@pytest.mark.slow
def test_a_single_output_signature_answers_bare_values(server, bundle):
    model, rows = bundle[2], instances(3)
    expected = model.regress(rows)["outputs"]              # [3, 1]
    status, body = server.post(URL(":predict"), {"signature_name": "regression", "instances": rows})
    assert status == 200 and np.shape(body["predictions"]) == (3, 1)
    assert_equal(body["predictions"], expected)
    status, body = server.post(URL(":predict"), {"signature_name": "regression",
                                                 "inputs": {"x": [r["x"] for r in rows], "c": [r["c"] for r in rows]}})
    assert_equal(body["outputs"], expected)


@pytest.mark.slow
def test_classify_and_regress_answer_results(server, bundle):
    model, rows = bundle[2], instances(3)
    status, body = server.post(URL(":classify"), {"examples": rows})
    assert status == 200 and list(body) == ["results"]
    expected = model.classify(rows)
    assert [[label for label, _ in r] for r in body["results"]] == [["0", "1"]] * 3
    assert_equal([[score for _, score in r] for r in body["results"]], expected["scores"])
    context = {"c": rows[0]["c"]}
    shared = [{"x": r["x"]} for r in rows]
    status, body = server.post(URL(":regress"), {"signature_name": "regression", "context": context,
                                                 "examples": shared})
    assert status == 200 and np.shape(body["results"]) == (3,)
    assert_equal(body["results"], model.regress([dict(e, **context) for e in shared])["outputs"][:, 0])


# ---- the server: errors -----------------------------------------------------------------------

ROWS = [{"x": [[0.1, 0.2], [0.3, 0.4]], "c": 0.5}]


@pytest.mark.slow
@pytest.mark.parametrize("method, path, body, status, match", [
    ("POST", URL(":predict"), b'{"instances": [', 400, "malformed JSON"),
    ("POST", URL(":predict"), b'[1, 2]', 400, "must be a JSON object"),
    ("POST", URL(":predict"), {"instances": [{"x": [[1, 2]], "c": 1, "y": 2}]}, 400, "unknown feature 'y'"),
    ("POST", URL(":predict"), {"instances": [{"x": [[1, 2]]}]}, 400, "instance 0 has no feature 'c'"),
    ("POST", URL(":predict"), {"instances": [{"x": [[1, 2, 3]], "c": 1}]}, 400, r"feature 'x'.*shape \[steps, 2\]"),
    ("POST", URL(":predict"), {"instances": [{"x": [["a", "b"]], "c": 1}]}, 400, "feature 'x': expected numbers"),
    ("POST", URL(":predict"), {"instances": [[[1, 2]]]}, 400, "instance 0 is not an object"),
    ("POST", URL(":predict"), {"instances": [], "c": 1}, 400, "unknown field 'c'"),
    ("POST", URL(":predict"), {"instances": []}, 400, "'instances' must be a non-empty list"),
    ("POST", URL(":predict"), {"instances": ROWS, "inputs": {}}, 400, "either 'instances'.*not both"),
    ("POST", URL(":predict"), {"inputs": {"x": [[[1, 2]]], "c": [1, 2]}}, 400, "different numbers of examples"),
    ("POST", URL(":predict"), {"signature_name": "nope", "instances": ROWS}, 400, "signature name: 'nope' not found"),
    ("POST", URL(":classify"), {"signature_name": "predict", "examples": ROWS}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify"),
    ("POST", URL(":regress"), {"examples": ROWS}, 400, "Expected regression signature"),
    ("POST", URL(":classify"), {"examples": ROWS, "context": {"c": 1}}, 400, "feature 'c' is in both 'context'"),
    ("POST", URL(":classify"), {"instances": ROWS}, 400, "unknown field 'instances'"),
    ("POST", "/v1/models/other:predict", {"instances": ROWS}, 404, r"Servable not found for request: Latest\(other\)"),
    ("POST", URL("/versions/12:predict"), {"instances": ROWS}, 404, r"Specific\(minirnn, 12\)"),
    ("GET", URL("/versions/12"), None, 404, r"Specific\(minirnn, 12\)"),
    ("POST", URL(":explain"), {"instances": ROWS}, 404, "unknown verb 'explain'"),
    ("GET", URL(":predict"), None, 405, "use POST"),
    ("GET", "/v2/models", None, 404, "Malformed request"),
    ("POST", URL(":predict"), b'{"instances": [' + b"1," * 60000 + b"1]}", 413, "larger than the limit"),
])
def test_errors_are_one_line_with_tf_servings_status(server, method, path, body, status, match):
    got, answer = server.request(method, path, body)
    assert got == status and list(answer) == ["error"] and "\n" not in answer["error"], answer
    assert re.search(match, answer["error"]), answer["error"]
    assert "Traceback" not in "\n".join(server.lines)
    assert server.request("GET", URL())[0] == 200            # still serving


# ---- the server: batching ---------------------------------------------------------------------

def concurrently(server, bodies):
    barrier = threading.Barrier(len(bodies))
    answers = [None] * len(bodies)

    def send(i):
        barrier.wait()
        answers[i] = server.post(URL(":predict"), bodies[i])
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


@pytest.mark.slow
def test_concurrent_requests_share_predictor_calls(server, bundle):
    model = bundle[2]
    bodies = [{"signature_name": "predict", "instances": instances(1 + i % 3, seed=10 + i)} for i in range(16)]
    calls, requests = server.metrics()
    answers = concurrently(server, bodies)
    after_calls, after_requests = server.metrics()
    assert after_requests - requests == 16
    assert after_calls - calls < 16, "every request ran alone"
    for body, (status, answer) in zip(bodies, answers):
        assert status == 200
        for key, value in model.predict(body["instances"]).items():
            assert_equal([p[key] for p in answer["predictions"]], value, rtol=1e-5)


@pytest.mark.slow
def test_a_bad_request_batched_with_good_ones_gets_its_own_error(server, bundle):
    good = [{"instances": instances(2, seed=20 + i)} for i in range(5)]
    bad = {"instances": [{"x": [[1.0, 2.0, 3.0]], "c": 0.0}]}          # passes the key checks, fails the model
    answers = concurrently(server, good[:2] + [bad] + good[2:])
    statuses = [status for status, _ in answers]
    assert statuses == [200, 200, 400, 200, 200, 200]
    assert re.search(r"feature 'x', example 0: expected shape \[steps, 2\]", answers[2][1]["error"])
    expected = bundle[2].signature("serving_default")(good[0]["instances"])
    assert_equal([p["scores"] for p in answers[0][1]["predictions"]], expected["scores"], rtol=1e-5)


# ---- the server: versions, SIGTERM, start-up failures ------------------------------------------

@pytest.mark.slow
def test_a_new_version_is_served_without_restart_and_a_broken_one_refused(tmp_path):
    clf = train(tmp_path / "model", context=False)
    base = tmp_path / "export"
    first = export(clf, base)
    rows = [s.tolist() for s in sequences(3, seed=5)[0]]
    examples = [{"x": r} for r in rows]
    server = Server(base, "--poll-seconds", "0.2")
    try:
        old = minirnn.load_exported(first).signature("serving_default")(examples)["scores"]
        status, body = server.post(URL(":predict"), {"instances": rows})   # one input: bare instances
        assert status == 200
        assert_equal([p["scores"] for p in body["predictions"]], old)

        clf.train(numpy_input_fn({"x": sequences(32)[0]}, sequences(32)[2], batch_size=8, num_epochs=None,
                                 shuffle=True, seed=1), steps=5)
        second = export(clf, base)
        v1, v2 = os.path.basename(first), os.path.basename(second)
        server.wait_for(f"version {v2} loaded")
        server.wait_for(f"version {v1} retired")
        assert server.request("GET", URL())[1]["model_version_status"][0]["version"] == v2
        assert server.request("GET", URL(f"/versions/{v1}"))[0] == 404
        new = minirnn.load_exported(second).signature("serving_default")(examples)["scores"]
        assert not np.array_equal(new, old)
        body = server.post(URL(":predict"), {"instances": rows})[1]
        assert_equal([p["scores"] for p in body["predictions"]], new)
        body = server.post(URL(f"/versions/{v2}:predict"), {"inputs": rows})[1]
        assert_equal([o for o in body["outputs"]["scores"]], new)

        broken = base / str(int(v2) + 1)
        broken.mkdir()
        (broken / "spec.json").write_text("{not json")
        (broken / "model.h5").write_bytes(b"\x00" * 64)
        server.wait_for(f"version {broken.name} at .* refused: .*; still serving version {v2}")
        assert server.request("GET", URL())[1]["model_version_status"][0]["version"] == v2
        body = server.post(URL(":predict"), {"instances": rows})[1]
        assert_equal([p["scores"] for p in body["predictions"]], new)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "\n".join(server.lines)


@pytest.mark.slow
def test_sigterm_finishes_the_requests_in_flight_and_exits_0(bundle):
    server = Server(bundle[0], "--batch-timeout-micros", "1500000")   # a request waits 1.5 s for company
    answer = []
    thread = threading.Thread(target=lambda: answer.append(server.post(URL(":predict"), {"instances": ROWS})))
    thread.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    assert server.stop() == 0
    thread.join()
    assert answer and answer[0][0] == 200 and len(answer[0][1]["predictions"]) == 1
    server.wait_for("SIGTERM received")


def run_serve(*args, cwd=None, command=("-m", "minirnn.serving")):
    """The server's command in a folder outside the checkout (whose minirnn/ lacks minirnn.kernels)."""
    cwd = cwd or tempfile.gettempdir()
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("make, args, match", [
    (None, ["--port", "0"], "EXPORT_BASE .*: no such folder"),
    ("empty", ["--port", "0"], "no version folder"),
    ("broken", ["--port", "0"], "every version folder failed to load"),
    ("bundle", ["--port", "70000"], "expected a port number"),
    ("bundle", ["--max-batch-size", "0"], "expected a positive integer"),
    ("bundle", ["--port", "busy"], "cannot listen on 127.0.0.1"),
])
def test_start_up_failures_are_one_error_line_and_status_2(tmp_path, bundle, make, args, match):
    base = tmp_path / "base"
    if make == "empty":
        base.mkdir()
    elif make == "broken":
        (base / "123").mkdir(parents=True)
        (base / "123" / "spec.json").write_text("{}")
    elif make == "bundle":
        base = bundle[0]
    with __import__("socket").socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [str(busy.getsockname()[1]) if a == "busy" else a for a in args]
        result = run_serve(str(base), *args)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("minirnn: error:")]
    assert len(errors) == 1 and re.search(match, errors[0]), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_minirnn_serve_is_the_command_line_entry(bundle):
    """``python -m minirnn serve`` (the CLI's subcommand) runs the same server."""
    server = Server(bundle[0], command=("-m", "minirnn", "serve"))
    try:
        assert server.request("GET", URL())[0] == 200
    finally:
        assert server.stop() == 0
    result = run_serve("/no/such/base", "--port", "0", command=("-m", "minirnn", "serve"))
    assert result.returncode == 2 and result.stderr.startswith("minirnn: error: EXPORT_BASE /no/such/base")


@pytest.mark.slow
def test_a_device_without_a_gpu_is_one_error_and_auto_serves_on_the_cpu(bundle, tmp_path):
    cuda = pytest.importorskip("numba.cuda")
    if cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda would serve")
    result = run_serve(str(bundle[0]), "--port", "0", "--device", "cuda")
    errors = [line for line in result.stderr.splitlines() if line.startswith("minirnn: error:")]
    assert result.returncode == 2 and len(errors) == 1 and "--device cuda:" in errors[0], result.stderr
    assert "no CUDA GPU" in errors[0] and "Traceback" not in result.stderr
    server = Server(bundle[0], "--device", "auto")
    try:
        status, body = server.post(URL(":predict"), {"instances": ROWS})
        assert status == 200 and len(body["predictions"]) == 1
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.stop() == 0
