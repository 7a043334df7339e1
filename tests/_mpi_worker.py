"""Scenarios that tests/test_distributed.py runs under ``mpiexec -n N`` (and, for the references, on
one process). Usage: ``python _mpi_worker.py SCENARIO OUT_DIR [options]``; every rank writes
``OUT_DIR/<scenario>-rank<r>.npz`` (or, on one process, ``-single``).

The model is float64 so that N ranks and one process agree to round-off: an embedding column
(sparse gradients) and a ragged numeric column, an LSTM, a binary head with a weight column, Adam
with global-norm clipping (clipping must act on the reduced gradient).
"""

import os
import signal
import sys
import time

import numpy as np

import minirnn
from minirnn import distributed as dist
from minirnn import feature_column as fc
from minirnn import optimizers as opt
from minirnn.hooks import SessionRunHook
from minirnn.heads import BinaryClassHead
from minirnn.inputs import numpy_input_fn

VOCAB, N, BATCH = 40, 23, 10          # batches of 10, 10, 3: uneven shares, and an empty one on 4+ ranks
CLIP = 0.1                            # global-norm clipping, below the first gradient's norm


def data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 9, n)
    tokens = [list(rng.integers(0, VOCAB, k)) for k in lengths]
    x = [rng.normal(size=(k, 2)) for k in lengths]
    labels = np.array([int(7 in t or s[:, 0].sum() > 0) for t, s in zip(tokens, x)])
    weights = rng.uniform(0.5, 2.0, n)
    weights[::5] = 0.0                                      # zero weights count for sum_over_batch_size
    return {"tok": tokens, "x": x, "w": weights}, labels


class RecordingAdam(opt.Adam):
    """Adam that keeps the (pre-clipping) gradients it is given, dense."""

    def apply(self, params, grads):
        if not hasattr(self, "seen"):
            self.seen = []
        self.seen.append([g.to_dense() if isinstance(g, opt.SparseRows) else np.array(g) for g in grads])
        return super().apply(params, grads)


class Record(SessionRunHook):
    def __init__(self):
        self.losses, self.saves = [], 0

    def after_step(self, step, loss):
        self.losses.append(loss)
        return False

    def after_save(self, step):                            # a saving listener too
        self.saves += 1


class Act(SessionRunHook):
    """Does ``action`` on rank ``rank`` before step ``step``."""

    def __init__(self, rank, step, action):
        self.rank, self.step, self.action = rank, step, action

    def before_step(self, step):
        ctx = dist.context(None)
        if ctx is not None and ctx.rank == self.rank and step == self.step:
            self.action()


def build(model_dir, seed=0, embedding="auto", timeout=None, reduction="sum_over_batch_size"):
    columns = [fc.embedding_column(fc.sequence_categorical_column_with_identity("tok", VOCAB), 3),
               fc.sequence_numeric_column("x", shape=(2,))]
    distribute = None if embedding == "auto" and timeout is None else \
        dist.MPIDistribution(timeout=timeout, embedding_gradients=embedding)
    if dist.launched_size() == 1:
        distribute = None
    config = minirnn.RunConfig(model_dir=model_dir, random_seed=seed, save_checkpoints_steps=1,
                               log_step_count_steps=None, save_summary_steps=0, distribute=distribute)
    head = BinaryClassHead(weight_column="w", loss_reduction=reduction)
    est = minirnn.RNNEstimator(head, columns, units=[5], cell_type="lstm",
                               optimizer=RecordingAdam(learning_rate=0.05, global_clipnorm=CLIP), config=config)
    est._net_args["dtype"] = "float64"                      # float64: ranks and one process agree to round-off
    est._session.state.network = est._session.new_network()
    return est


def rank_tag():
    ctx = dist.context(None)
    return "single" if ctx is None else f"rank{ctx.rank}"


def scenario_train(out, base, embedding):
    """Train K steps (split batches), evaluate, predict, resume with a new estimator without seed."""
    features, labels = data()
    train_fn = numpy_input_fn(features, labels, batch_size=BATCH, num_epochs=None, shuffle=True, seed=1)
    eval_fn = numpy_input_fn(features, labels, batch_size=BATCH, shuffle=False)
    est = build(os.path.join(base, "a"), embedding=embedding)
    record = Record()
    est.train(train_fn, steps=4, hooks=[record], saving_listeners=[record])
    result = {"grads": est._session.state.optimizer.seen[0], "params": [p.copy() for p in est._session.state.network.params()],
              "losses": record.losses, "saves": record.saves}
    metrics = est.evaluate(eval_fn)
    exact = est.evaluate(eval_fn, exact_auc=True, name="exact")
    probabilities = est.predict_proba(eval_fn)
    dist.predict_to_files(est, eval_fn, os.path.join(base, "predictions"))
    written = dist.read_predictions(os.path.join(base, "predictions"))
    # a new estimator on the same model_dir, without a seed: rank 0's checkpoint must reach every rank
    resumed = build(os.path.join(base, "a"), seed=None, embedding=embedding)
    resumed.train(train_fn, steps=2)
    result["resumed"] = resumed._session.state.network.params()
    result["resumed_slots"] = [s["m"] for s in resumed._session.state.optimizer._slots]
    # per-rank input: shard_input_fn gives each rank its rows of the same global batches
    sharded = build(os.path.join(base, "b"), embedding=embedding)
    sharded.train(dist.shard_input_fn(features, labels, batch_size=BATCH, num_epochs=None, shuffle=True, seed=1),
                  steps=4)
    result["sharded"] = sharded._session.state.network.params()
    np.savez(os.path.join(out, f"train-{rank_tag()}.npz"),
             **{f"grad{k}": g for k, g in enumerate(result["grads"])},
             **{f"param{k}": p for k, p in enumerate(result["params"])},
             **{f"resumed{k}": p for k, p in enumerate(result["resumed"])},
             **{f"slot{k}": p for k, p in enumerate(result["resumed_slots"])},
             **{f"sharded{k}": p for k, p in enumerate(result["sharded"])},
             **{f"metric:{k}": v for k, v in metrics.items()},
             **{f"exact:{k}": v for k, v in exact.items()},
             losses=np.array(result["losses"]), saves=result["saves"],
             probabilities=np.zeros(0) if probabilities is None else probabilities,
             written=written["probabilities"], step=resumed._session.state.global_step,
             **{f"stats:{k}": v for k, v in getattr(est._session.runner(), "stats", {}).items()})


def scenario_reduction(out, base, reduction):
    """One step under another loss reduction: the gradient and loss of the whole batch."""
    if reduction == "all":
        for name in ("sum", "mean", "sum_by_nonzero_weights"):
            scenario_reduction(out, base, name)
        return
    features, labels = data()
    est = build(os.path.join(base, reduction), reduction=reduction)
    record = Record()
    est.train(numpy_input_fn(features, labels, batch_size=N, shuffle=False), steps=1, hooks=[record])
    np.savez(os.path.join(out, f"{reduction}-{rank_tag()}.npz"), losses=np.array(record.losses),
             **{f"grad{k}": g for k, g in enumerate(est._session.state.optimizer.seen[0])})


def scenario_fail(out, base, how):
    """Rank 1 dies (kill), hangs (hang), or reads a bad batch (error) at step 3; or the ranks
    shuffle differently (a seed of their own on each rank: "unseeded")."""
    features, labels = data()
    est = build(os.path.join(base, "fail"), timeout=4.0 if how == "hang" else None)
    actions = {"kill": lambda: os.kill(os.getpid(), signal.SIGKILL), "hang": lambda: time.sleep(120)}
    if how == "unseeded":                                  # each rank shuffles its own way
        rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
        train_fn = numpy_input_fn(features, labels, batch_size=BATCH, num_epochs=None, shuffle=True, seed=rank)
        hooks = []
    elif how == "error":
        def train_fn(input_context=None):
            rank = 0 if input_context is None else input_context.input_pipeline_id
            for step in range(1, 100):
                bad = rank == 1 and step == 3
                yield ({"tok": features["tok"][:4], "x": features["x"][:4], "w": features["w"][:4]},
                       np.array([0, 1, 2, 0]) if bad else labels[:4])
        hooks = []
    else:
        train_fn = numpy_input_fn(features, labels, batch_size=BATCH, num_epochs=None, shuffle=True, seed=1)
        hooks = [Act(1, 3, actions[how])]
    print(f"{rank_tag()} starts", flush=True)
    est.train(train_fn, steps=6, hooks=hooks)
    print(f"{rank_tag()} finished training: should not happen", flush=True)


if __name__ == "__main__":
    scenario, out_dir, option = sys.argv[1], sys.argv[2], sys.argv[3]
    base = os.path.join(out_dir, "models-" + ("mpi" if dist.launched_size() > 1 else "single"))
    {"train": scenario_train, "reduction": scenario_reduction, "fail": scenario_fail}[scenario](out_dir, base, option)
