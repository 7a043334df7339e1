"""Serving benchmark: ``minirnn serve`` (TF Serving's REST API) under 1, 8 and 32 concurrent clients.

The script exports a small RNNClassifier (or takes ``--export-base``), starts the server in a
subprocess on a free port, checks its answers against ``load_exported(...)`` (status, metadata, a
predict request compared value for value, classify), then for each concurrency keeps that many
keep-alive connections busy for ``--seconds`` (after a one-second warm-up) and reports requests/s,
latency p50/p99, and the predictor calls the server made (from its metrics page: requests per call
is the dynamic batching at work). Every response of the timed runs must be 200 with one prediction
per example, or the run stops.

The load generator is an asyncio HTTP/1.1 client in this process (standard library only), so on a
2-core machine it competes with the server for the CPUs: the figures are what one client machine
sees, not the server's ceiling. ``--stacks`` compares uvicorn's HTTP parsers and event loops
(httptools or h11, uvloop or asyncio) on the same model; docs/serving.md says why the default is
httptools + uvloop.

    .venv/bin/python benchmarks/bench_serving.py
    .venv/bin/python benchmarks/bench_serving.py --stacks auto h11-asyncio --concurrency 1 8 32 --seconds 5
"""

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import _common

_common.require_minirnn()

import numpy as np  # noqa: E402

STACKS = {"auto": {}, "httptools-uvloop": {"http": "httptools", "loop": "uvloop"},
          "httptools-asyncio": {"http": "httptools", "loop": "asyncio"},
          "h11-uvloop": {"http": "h11", "loop": "uvloop"}, "h11-asyncio": {"http": "h11", "loop": "asyncio"}}


def make_bundle(folder, units, steps):
    import minirnn
    from minirnn import feature_column as fc
    from minirnn.inputs import numpy_input_fn
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(rng.integers(steps // 2, steps + 1), 2)) for _ in range(256)]
    y = np.array([int(s[:, 0].sum() > 0) for s in x])
    clf = minirnn.RNNClassifier([fc.sequence_numeric_column("x", shape=(2,))], units=units, cell_type="lstm",
                                model_dir=os.path.join(folder, "model"), config=minirnn.RunConfig(random_seed=0))
    clf.train(numpy_input_fn({"x": x}, y, batch_size=32, num_epochs=None, shuffle=True, seed=0), steps=20)
    return os.path.join(folder, "export"), os.fsdecode(clf.export_saved_model(os.path.join(folder, "export")))


class Server:
    def __init__(self, base, stack, options):
        code = ("import sys, json; from minirnn.serving import main; "
                "sys.exit(main(sys.argv[2:], **json.loads(sys.argv[1])))")
        self.process = subprocess.Popen([sys.executable, "-c", code, json.dumps(STACKS[stack]), base, "--port", "0",
                                         *options], stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:
            match = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
            if match:
                self.port = int(match.group(1))
                return
        raise SystemExit(f"the server did not start (exit status {self.process.wait()})")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=60)
        if status != 0:
            raise SystemExit(f"the server exited with status {status} after SIGTERM")


async def request(reader, writer, method, path, body=b""):
    head = (f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    writer.write(head + body)
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return int(status_line.split()[1]), await reader.readexactly(length)


async def once(port, method, path, body=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        status, data = await request(reader, writer, method, path, b"" if body is None else json.dumps(body).encode())
        return status, json.loads(data) if data[:1] in (b"{", b"[") else data.decode()
    finally:
        writer.close()


def validate(port, path, rows):
    """The server's answers against load_exported's, before anything is timed."""
    import minirnn
    model = minirnn.load_exported(path)
    url = "/v1/models/minirnn"
    status, body = asyncio.run(once(port, "GET", url))
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE", body
    status, body = asyncio.run(once(port, "GET", url + "/metadata"))
    assert status == 200 and "serving_default" in body["metadata"]["signature_def"]["signature_def"], body
    status, body = asyncio.run(once(port, "POST", url + ":predict", {"signature_name": "predict", "instances": rows}))
    assert status == 200, body
    for key, value in model.predict(rows).items():
        got = [p[key] for p in body["predictions"]]
        if value.dtype.kind in "OS":
            assert got == [[v.decode() for v in row] for row in value.tolist()], key
        else:
            np.testing.assert_array_equal(np.asarray(got, dtype=value.dtype), value, err_msg=key)
    status, body = asyncio.run(once(port, "POST", url + ":classify", {"examples": rows}))
    assert status == 200, body
    np.testing.assert_array_equal(np.asarray([[s for _, s in r] for r in body["results"]], dtype=np.float32),
                                  model.classify(rows)["scores"])


def predictor_calls(port):
    status, text = asyncio.run(once(port, "GET", "/monitoring/prometheus/metrics"))
    assert status == 200
    calls = sum(int(n) for n in re.findall(r"^minirnn_serving_predictor_calls_total\{.*\} (\d+)$", text, re.M))
    examples = sum(int(n) for n in re.findall(r"^minirnn_serving_predictor_examples_total\{.*\} (\d+)$", text, re.M))
    return calls, examples


async def load(port, bodies, concurrency, seconds, warmup=1.0):
    """``concurrency`` connections, each sending the next body as soon as the last answer came back."""
    latencies, errors = [], []
    start = time.perf_counter()
    stop_at = start + warmup + seconds

    async def client(k):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        try:
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                body, n = bodies[i % len(bodies)]
                i += concurrency
                status, data = await request(reader, writer, "POST", "/v1/models/minirnn:predict", body)
                done = time.perf_counter()
                if status != 200 or data.count(b'"scores"') != n:
                    errors.append((status, data[:200]))
                    return
                if sent >= start + warmup:
                    latencies.append(done - sent)
        finally:
            writer.close()

    await asyncio.gather(*(client(k) for k in range(concurrency)))
    if errors:
        raise SystemExit(f"bad responses under load: {errors[:3]}")
    return latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-base", help="serve this folder instead of a freshly trained model (its features "
                                              "must be one sequence feature 'x' of 2 values per step)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per concurrency (default 5)")
    parser.add_argument("--stacks", nargs="+", choices=sorted(STACKS), default=["auto"])
    parser.add_argument("--units", type=int, nargs="+", default=[32], help="the trained model's units (default 32)")
    parser.add_argument("--steps", type=int, default=30, help="longest sequence in a request (default 30)")
    parser.add_argument("--examples-per-request", type=int, default=1)
    parser.add_argument("--server-options", default="", help="more options for minirnn serve, e.g. "
                                                             "'--max-batch-size 32 --batch-timeout-micros 1000'")
    _common.add_output_argument(parser)
    args = parser.parse_args()
    report = _common.Report(args.output)
    report.machine(bench="serving", versions_serving={n: _common.version(n) for n in ("uvicorn", "httptools",
                                                                                      "uvloop")})
    with tempfile.TemporaryDirectory() as folder:
        if args.export_base:
            base = args.export_base
            path = os.path.join(base, max((d for d in os.listdir(base) if d.isdigit()), key=int))
        else:
            base, path = make_bundle(folder, args.units, args.steps)
        rng = np.random.default_rng(1)
        bodies = []
        for _ in range(64):
            rows = [{"x": rng.normal(size=(rng.integers(args.steps // 2, args.steps + 1), 2)).round(4).tolist()}
                    for _ in range(args.examples_per_request)]
            bodies.append((json.dumps({"instances": rows}).encode(), len(rows)))
        for stack in args.stacks:
            server = Server(base, stack, args.server_options.split())
            try:
                validate(server.port, path, [json.loads(b)["instances"][0] for b, _ in bodies[:4]])
                for concurrency in args.concurrency:
                    calls, examples = predictor_calls(server.port)
                    latencies = asyncio.run(load(server.port, bodies, concurrency, args.seconds))
                    calls, examples = (a - b for a, b in zip(predictor_calls(server.port), (calls, examples)))
                    ms = sorted(1000 * t for t in latencies)
                    report.row({"bench": "serving", "stack": stack, "concurrency": concurrency,
                                "examples_per_request": args.examples_per_request, "requests": len(ms),
                                "requests_per_s": round(len(ms) / args.seconds, 1),
                                "p50_ms": round(statistics.median(ms), 2),
                                "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
                                "predictor_calls": calls, "examples_per_call": round(examples / max(calls, 1), 2),
                                "server_options": args.server_options})
            finally:
                server.stop()


if __name__ == "__main__":
    main()
