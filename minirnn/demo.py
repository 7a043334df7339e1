"""The main job until the estimators land: train, evaluate and predict with an LSTM layer.

``python -m minirnn`` runs it. The data is built in: variable-length noisy sine waves (5 to 60
steps) in three frequency bands; the task is to name the band. The model is an LSTM layer with a
dense softmax head on each sequence's last valid output, trained with Adam on minibatches.
Everything (data, initialisation, shuffling) follows one seed, so two runs print the same numbers.
"""

import argparse
import time

import numpy as np

from .layers import LSTM

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


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Adam:
    """Minimal Adam (Kingma & Ba) for the demo's parameter list."""

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-7):
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        lr = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m += (1 - self.b1) * (g - m)
            v += (1 - self.b2) * (g * g - v)
            p -= (lr * m / (np.sqrt(v) + self.eps)).astype(p.dtype)


class WaveClassifier:
    """LSTM(units) -> dense -> softmax over the bands."""

    def __init__(self, units, seed):
        rng = np.random.default_rng(seed)
        self.lstm = LSTM(units, seed=seed, dtype="float32")
        self.lstm.build(2)
        limit = np.sqrt(6 / (units + len(BANDS)))
        self.w = rng.uniform(-limit, limit, (units, len(BANDS))).astype(np.float32)
        self.b = np.zeros(len(BANDS), np.float32)
        self.opt = Adam([self.lstm.kernel, self.lstm.recurrent_kernel, self.lstm.bias, self.w, self.b])

    def logits(self, x, lengths, training=False):
        self._h = self.lstm.forward(x, lengths=lengths, training=training)
        return self._h @ self.w + self.b

    def train_step(self, x, lengths, labels):
        probs = softmax(self.logits(x, lengths, training=True))
        B = len(labels)
        loss = -np.mean(np.log(probs[np.arange(B), labels] + 1e-12))
        dlogits = probs
        dlogits[np.arange(B), labels] -= 1.0
        dlogits /= B                                   # mean cross-entropy
        dw, db = self._h.T @ dlogits, dlogits.sum(axis=0)
        self.lstm.zero_grads()
        self.lstm.backward(dlogits @ self.w.T, need_input_grad=False)
        self.opt.step(self.lstm.grads + [dw, db])
        return loss

    def evaluate(self, x, lengths, labels):
        probs = softmax(self.logits(x, lengths))
        loss = -np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12))
        return {"accuracy": float(np.mean(probs.argmax(axis=1) == labels)), "loss": float(loss)}


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
    model = WaveClassifier(args.units, args.seed)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y_train))
    start = time.perf_counter()
    losses, pos = [], 0
    for step in range(1, args.steps + 1):
        if pos + args.batch_size > len(order):
            order, pos = rng.permutation(len(y_train)), 0
        idx = order[pos:pos + args.batch_size]
        pos += args.batch_size
        losses.append(model.train_step(x_train[idx], len_train[idx], y_train[idx]))
        if step == 1:
            print(f"step 1: loss {losses[-1]:.4f} (first step, includes kernel compilation "
                  f"or cache load: {time.perf_counter() - start:.2f}s)")
            first_done = time.perf_counter()
        elif step % 100 == 0 or step == args.steps:
            rate = (step - 1) / (time.perf_counter() - first_done)
            print(f"step {step}: loss {np.mean(losses[-100:]):.4f}  ({rate:.0f} steps/s)")
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.1f}s")
    metrics = model.evaluate(x_test, len_test, y_test)
    print(f"evaluation on {len(y_test)} test sequences: accuracy {metrics['accuracy']:.3f}, "
          f"loss {metrics['loss']:.4f}")
    probs = softmax(model.logits(x_test[:5], len_test[:5]))
    print("predictions:")
    for k in range(5):
        p = ", ".join(f"{name} {q:.2f}" for name, q in zip(BANDS, probs[k]))
        print(f"  length {len_test[k]:2d}  true {BANDS[y_test[k]]:6s}  predicted "
              f"{BANDS[probs[k].argmax()]:6s}  ({p})")
    return metrics


if __name__ == "__main__":
    main()
