"""Input-preparation benchmark: token sequences -> padded id batches, against a naive NumPy baseline.

Data: 100k token sequences, lengths uniform in 5..200, tokens drawn (Zipf-like) from a 10k-word
vocabulary plus 5% unknown words. Each batch of 64 goes through minirnn's SequenceFeatures with two
columns on the same tokens: a vocabulary list (10k words + 100 OOV buckets) and a hash bucket column
(10k buckets), both through indicator-free embeddings (dimension 8), giving x [64, T, 16] and the mask.
The naive baseline does what a hand-written loop would: per example, a dict lookup per token,
Python's hash() for buckets, and row-by-row padding (it does not even match TF's hashing).

Before timing, the first batches are checked against a plain-Python oracle (TF's ids: vocabulary
index, else 10k + Fingerprint64 % 100; Fingerprint64 % 10k for the hash column; '' gets no id).

Reported: examples/s for both, the ratio, and minirnn's preparation time for 32 examples as a share
of one S1 training step (LSTM, B=32, T=50, D=16, H=64: forward + backward + Adam) measured in the
same process. Target: < 10%. Prints the machine (CPU model, BLAS kernels; a JSON line
{"bench": "machine", ...}) and the JSON row; ``--output FILE`` also appends the JSON lines to FILE.

    python3 benchmarks/bench_inputs.py [--examples 100000] [--output inputs.jsonl]
"""

import argparse
import datetime
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))     # _common.py, also under python -P
from _common import Report, add_output_argument, require_minirnn  # noqa: E402


def make_data(n, rng, vocab_size=10_000):
    vocab = np.array([f"w{i}" for i in range(vocab_size)])
    lengths = rng.integers(5, 201, n)
    ranks = np.minimum(rng.zipf(1.3, lengths.sum()) - 1, vocab_size - 1)
    tokens = vocab[ranks].astype(object)
    unknown = rng.random(len(tokens)) < 0.05
    tokens[unknown] = np.array([f"unk{i}" for i in rng.integers(0, 50_000, unknown.sum())], dtype=object)
    splits = np.cumsum(lengths)[:-1]
    return list(vocab), [list(s) for s in np.split(tokens, splits)]


def naive_batch(seqs, lookup, n_oov, buckets):
    T = max(len(s) for s in seqs)
    ids = np.full((len(seqs), T), -1, dtype=np.int64)
    hashed = np.full((len(seqs), T), -1, dtype=np.int64)
    for b, s in enumerate(seqs):
        for t, tok in enumerate(s):
            ids[b, t] = lookup.get(tok, len(lookup) + hash(tok) % n_oov)
            hashed[b, t] = hash(tok) % buckets
    return ids, hashed


def check(layer, batch, vocab):
    """minirnn's x for one batch == the table rows of TF's ids computed in plain Python."""
    from minirnn.kernels.farmhash import fingerprint64
    lookup = {w: i for i, w in enumerate(vocab)}
    tokens = [t for s in batch for t in s]
    fp = [int(f) for f in fingerprint64(tokens)]
    vocab_ids = [lookup.get(t, len(vocab) + f % 100) for t, f in zip(tokens, fp)]
    hash_ids = [f % 10_000 for f in fp]
    x, mask = layer.forward({"tok": batch, "tok_hashed": batch})
    tables = layer.embeddings.tables
    rows = np.concatenate([tables["tok_embedding"][vocab_ids], tables["tok_hashed_embedding"][hash_ids]], axis=1)
    if not (mask.sum() == len(tokens) and np.array_equal(x[mask], rows)):
        raise SystemExit("bench_inputs: minirnn's ids differ from the plain-Python oracle of TF's ids")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="token sequences (default 100000)")
    parser.add_argument("--batch-size", type=int, default=64, help="default 64")
    add_output_argument(parser)
    parser.add_argument("--label", default="", help="a note stored with the row (e.g. the code version)")
    args = parser.parse_args()
    require_minirnn()
    report = Report(args.output)
    report.machine(script="bench_inputs", batch_size=args.batch_size, examples=args.examples)
    from minirnn import feature_column as fc
    from minirnn.features import SequenceFeatures

    rng = np.random.default_rng(0)
    vocab, seqs = make_data(args.examples, rng)
    columns = [fc.embedding_column(fc.sequence_categorical_column_with_vocabulary_list("tok", vocab, num_oov_buckets=100), 8),
               fc.embedding_column(fc.sequence_categorical_column_with_hash_bucket("tok", 10_000), 8)]
    # two columns on one feature key need distinct names: give the hashed one its own key
    columns[1].categorical.key = columns[1].key = "tok_hashed"
    layer = SequenceFeatures(columns, seed=0)
    B = args.batch_size
    layer.forward({"tok": seqs[:B], "tok_hashed": seqs[:B]})          # compile / warm up
    for start in range(0, 4 * B, B):                                  # validate, then time
        check(layer, seqs[start:start + B], vocab)

    t = time.perf_counter()
    for start in range(0, len(seqs), B):
        batch = seqs[start:start + B]
        layer.forward({"tok": batch, "tok_hashed": batch})
    minirnn_s = time.perf_counter() - t

    lookup = {w: i for i, w in enumerate(vocab)}
    t = time.perf_counter()
    for start in range(0, len(seqs), B):
        naive_batch(seqs[start:start + B], lookup, 100, 10_000)
    naive_s = time.perf_counter() - t

    from minirnn.heads import MultiClassHead
    from minirnn.model import RNNModel
    from minirnn.optimizers import Adam
    model, head, opt = RNNModel([64], logits_dimension=10, seed=0), MultiClassHead(10), Adam()
    x = rng.standard_normal((32, 50, 16)).astype(np.float32)
    labels = rng.integers(0, 10, 32)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        result = head.loss(model.forward(x, None, training=True), labels)
        model.zero_grads()
        model.backward(result.d_logits)
        opt.apply(model.params(), model.grads())
        times.append(time.perf_counter() - t)
    step_ms = 1e3 * sorted(times)[len(times) // 2]
    prep_32_ms = 1e3 * minirnn_s / len(seqs) * 32
    row = {"bench": "inputs", "label": args.label, "date": datetime.date.today().isoformat(),
           "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""), "examples": len(seqs), "batch_size": B,
           "minirnn_examples_per_s": round(len(seqs) / minirnn_s), "naive_examples_per_s": round(len(seqs) / naive_s),
           "ratio_time": round(minirnn_s / naive_s, 3), "prep_ms_per_32_examples": round(prep_32_ms, 3),
           "s1_train_step_ms": round(step_ms, 3), "prep_share_of_s1_step": round(prep_32_ms / step_ms, 3)}
    print(f"minirnn {row['minirnn_examples_per_s']:,} examples/s   naive {row['naive_examples_per_s']:,} examples/s   "
          f"time ratio {row['ratio_time']:.2f}")
    print(f"preparing 32 examples: {prep_32_ms:.3f} ms = {100 * row['prep_share_of_s1_step']:.1f}% of an S1 training "
          f"step ({step_ms:.2f} ms)")
    report.row(row)


if __name__ == "__main__":
    main()
