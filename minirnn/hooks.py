"""Training hooks: TF's ``SessionRunHook`` protocol and the hooks minirnn ships.

A hook sees ``begin(estimator)``, then ``before_step(step)`` and ``after_step(step, loss)`` around
each step (return True from ``after_step`` to stop), and ``end(estimator)``. ``train`` calls them per
training step (``step`` = the global step after it), ``evaluate`` and ``predict`` per batch.
"""

import logging
import sys
import time

import numpy as np

__all__ = ["SessionRunHook", "StopAtStepHook", "LoggingHook", "EarlyStoppingHook", "ProgressBar", "check_hooks"]

logger = logging.getLogger("minirnn")


class SessionRunHook:
    """Called by ``train``: ``begin(estimator)``, ``before_step(step)`` and ``after_step(step, loss)``
    around each step (``step`` = global step after the step; return True to stop training), and
    ``end(estimator)``. ``evaluate`` and ``predict`` call them too, with one step per batch (numbered
    from 1; predict passes loss None); returning True stops after that batch."""

    def begin(self, estimator):
        pass

    def before_step(self, step):
        pass

    def after_step(self, step, loss):
        return False

    def end(self, estimator):
        pass


class StopAtStepHook(SessionRunHook):
    """Stop after ``num_steps`` more steps, or at global step ``last_step``."""

    def __init__(self, num_steps=None, last_step=None):
        if (num_steps is None) == (last_step is None):
            raise ValueError("exactly one of num_steps and last_step must be given")
        self.num_steps, self.last_step = num_steps, last_step

    def begin(self, estimator):
        if self.num_steps is not None:
            self.last_step = estimator._session.state.global_step + self.num_steps

    def after_step(self, step, loss):
        return step >= self.last_step


class LoggingHook(SessionRunHook):
    """Log ``loss = .., step = .. (.. steps/s)`` at INFO on the "minirnn" logger every ``every_n_steps``."""

    def __init__(self, every_n_steps=100):
        if not isinstance(every_n_steps, (int, np.integer)) or every_n_steps < 1:
            raise ValueError(f"every_n_steps: expected a positive integer, got {every_n_steps!r}")
        self.every_n_steps = int(every_n_steps)

    def begin(self, estimator):
        self._t, self._n = time.perf_counter(), 0

    def after_step(self, step, loss):
        self._n += 1
        if step % self.every_n_steps == 0:
            now = time.perf_counter()
            logger.info("loss = %.6g, step = %d (%.1f steps/s)", loss, step, self._n / max(now - self._t, 1e-9))
            self._t, self._n = now, 0
        return False


class EarlyStoppingHook(SessionRunHook):
    """Every ``every_n_steps``, evaluate on ``eval_input_fn`` (the in-memory model) and stop when
    ``metric`` has not improved by ``min_delta`` for ``max_steps_without_improvement`` steps.
    ``best`` holds the best value and ``best_step`` its step."""

    def __init__(self, eval_input_fn, metric="loss", max_steps_without_improvement=1000, every_n_steps=100,
                 higher_is_better=False, min_delta=0.0, eval_steps=None):
        if not callable(eval_input_fn):
            raise TypeError("eval_input_fn must be callable")
        self.eval_input_fn, self.metric = eval_input_fn, metric
        self.patience, self.every_n_steps = max_steps_without_improvement, every_n_steps
        self.higher_is_better, self.min_delta, self.eval_steps = higher_is_better, min_delta, eval_steps
        self.best = self.best_step = None

    def begin(self, estimator):
        self._estimator = estimator

    def after_step(self, step, loss):
        if step % self.every_n_steps:
            return False
        metrics = self._estimator._evaluate_in_memory(self.eval_input_fn, self.eval_steps)
        if self.metric not in metrics:
            raise KeyError(f"EarlyStoppingHook: metric {self.metric!r} not among {sorted(metrics)}")
        value = float(metrics[self.metric])
        better = self.best is None or (value > self.best + self.min_delta if self.higher_is_better
                                       else value < self.best - self.min_delta)
        if better:
            self.best, self.best_step = value, step
        elif step - self.best_step >= self.patience:
            logger.info("early stopping at step %d: %s has not improved on %.6g (step %d)",
                        step, self.metric, self.best, self.best_step)
            return True
        return False


class ProgressBar(SessionRunHook):
    """One line on a terminal's stderr, redrawn at most 10 times a second."""

    def __init__(self, target):
        self.target, self._last = target, 0.0

    def begin(self, estimator):
        self._start, self._first = time.perf_counter(), estimator._session.state.global_step

    def after_step(self, step, loss):
        now = time.perf_counter()
        if now - self._last > 0.1:
            self._last = now
            rate = (step - self._first) / max(now - self._start, 1e-9)
            total = f"/{self.target}" if self.target else ""
            sys.stderr.write(f"\rstep {step}{total}  loss {loss:.4f}  {rate:.0f} steps/s ")
            sys.stderr.flush()
        return False

    def end(self, estimator):
        sys.stderr.write("\n")
        sys.stderr.flush()


def check_hooks(hooks):
    hooks = list(hooks or [])
    for h in hooks:
        if not isinstance(h, SessionRunHook):
            raise TypeError(f"hooks: expected SessionRunHook instances, got {h!r}")
    return hooks
