"""The main job until the estimators land: train, evaluate and predict with an LSTM model.

``python -m minirnn`` runs it. The data is built in: variable-length noisy sine waves (5 to 60
steps) in three frequency bands; the task is to name the band. The model is minirnn's RNNModel (an
LSTM layer and dense logits on each sequence's last valid output) with a multi-class head, trained
with Adam on minibatches. Everything (data, initialisation, shuffling) follows one seed, so two runs
print the same numbers.
"""

import argparse
import time

import numpy as np

from .heads import MultiClassHead
from .model import RNNModel
from .optimizers import Adam

BANDS = ("slow", "medium", "fast")


def make_waves(n, seed, max_len=60):
    """n sequences [n, max_len, 2] (value, time since start), their lengths and band labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(BANDS), size=n)
    lengths = rng.integers(5, max_len + 1, size=n)
    base = np.array([0.05, 0.12, 0.25])[labels] * (1 + 0.2 * rng.uniform(-1, 1, size=n))
    phase = rng.uniform(0, 2 * np.pi, size=n)
    steps = np.arange(max_len)[None, :]
    values = np.sin(2 * np.pi * base[:, None] * steps + phase[:, None])
    values += 0.15 * rng.standard_normal(values.shape)
    x = np.stack([values, steps / max_len * np.ones_like(values)], axis=-1).astype(np.float32)
    x[steps.repeat(n, 0) >= lengths[:, None]] = 0.0              # padding
    return x, lengths, labels


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minirnn",
                                     description="Train, evaluate and predict an LSTM classifier on "
                                                 "built-in noisy sine waves (three frequency bands).")
    parser.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, len_train, y_train = make_waves(2000, args.seed)
    x_test, len_test, y_test = make_waves(500, args.seed + 1)
    print(f"data: {len(y_train)} training and {len(y_test)} test sequences, 5-60 steps, "
          f"{len(BANDS)} classes {BANDS}")
    model = RNNModel([args.units], cell_type="lstm", logits_dimension=len(BANDS), seed=args.seed)
    head, optimizer = MultiClassHead(len(BANDS)), Adam(learning_rate=0.01)
    mask_train = np.arange(x_train.shape[1])[None] < len_train[:, None]
    mask_test = np.arange(x_test.shape[1])[None] < len_test[:, None]

    def train_step(idx):
        result = head.loss(model.forward(x_train[idx], mask_train[idx], training=True), y_train[idx])
        model.zero_grads()
        model.backward(result.d_logits)
        optimizer.apply(model.params(), model.grads())
        return result.loss

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y_train))
    start = time.perf_counter()
    losses, pos = [], 0
    for step in range(1, args.steps + 1):
        if pos + args.batch_size > len(order):
            order, pos = rng.permutation(len(y_train)), 0
        idx = order[pos:pos + args.batch_size]
        pos += args.batch_size
        losses.append(train_step(idx))
        if step == 1:
            print(f"step 1: loss {losses[-1]:.4f} (first step, includes kernel compilation "
                  f"or cache load: {time.perf_counter() - start:.2f}s)")
            first_done = time.perf_counter()
        elif step % 100 == 0 or step == args.steps:
            rate = (step - 1) / (time.perf_counter() - first_done)
            print(f"step {step}: loss {np.mean(losses[-100:]):.4f}  ({rate:.0f} steps/s)")
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.1f}s")
    evaluation = head.metrics()
    for batch in np.array_split(np.arange(len(y_test)), 4):
        evaluation.update(model.forward(x_test[batch], mask_test[batch]), y_test[batch])
    metrics = evaluation.result()
    print(f"evaluation on {len(y_test)} test sequences: accuracy {metrics['accuracy']:.3f}, "
          f"average_loss {metrics['average_loss']:.4f}")
    probs = head.predictions(model.forward(x_test[:5], mask_test[:5]))["probabilities"]
    print("predictions:")
    for k in range(5):
        p = ", ".join(f"{name} {q:.2f}" for name, q in zip(BANDS, probs[k]))
        print(f"  length {len_test[k]:2d}  true {BANDS[y_test[k]]:6s}  predicted "
              f"{BANDS[probs[k].argmax()]:6s}  ({p})")
    return metrics


if __name__ == "__main__":
    main()
