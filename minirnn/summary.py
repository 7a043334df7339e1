"""TensorBoard event files, as TF's estimators wrote them, readable by TensorBoard without TensorFlow.

What is written (TF's tags and places):

- ``train``: the scalar ``loss`` at the first step of each ``train`` call, every
  ``RunConfig.save_summary_steps`` (default 100) global steps and at the last step, and
  ``global_step/sec`` every ``log_step_count_steps``, into ``model_dir``;
- ``evaluate``: every metric (``accuracy``, ``loss``, ``auc``, ...; not ``global_step``) at the
  global step of the evaluated checkpoint, into ``eval_dir(name)``.

``RunConfig(save_summary_steps=None)`` (or 0) writes no event files at all. The files are written
through tensorboardX, an optional dependency (the ``tensorboard`` extra), imported only
when the first file is opened; without it, one line is logged once and nothing else changes. Each
``train`` or ``evaluate`` call opens its own file and closes it when done, so the file is complete
as soon as the call returns.
"""

import itertools
import logging
import numbers
import os
import time

from .errors import install_hint
from .hooks import SessionRunHook

__all__ = ["EventWriter", "SummarySaverHook", "write_scalars"]

logger = logging.getLogger("minirnn")

_writer_class = None        # tensorboardX.SummaryWriter once imported; False when it can not be
_file_numbers = itertools.count()


def _load_writer_class():
    """tensorboardX's SummaryWriter, or None (logged once) when tensorboardX can not be imported."""
    global _writer_class
    if _writer_class is None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as error:
            _writer_class = False
            logger.info("TensorBoard summaries are off: tensorboardX is not installed (%s); %s; or pass "
                        "RunConfig(save_summary_steps=None) to skip this message", error,
                        install_hint("tensorboard", "tensorboardX"))
        except Exception as error:           # e.g. a protobuf version it does not support
            _writer_class = False
            logger.info("TensorBoard summaries are off: tensorboardX failed to import (%s: %s)",
                        type(error).__name__, error)
        else:
            _writer_class = SummaryWriter
    return _writer_class or None


class EventWriter:
    """Scalars into a TensorBoard event file in ``logdir``; does nothing when tensorboardX is missing.

    Parameters
    ----------
    logdir : folder of the event file (created if needed). Every writer opens a new file, named
        ``events.out.tfevents.<seconds>.<host>.<pid>.<number>`` so that two writers opened in the same
        second never overwrite each other.

    Example
    -------
    >>> import tempfile
    >>> with EventWriter(tempfile.mkdtemp()) as writer:
    ...     writer.scalars(1, {"loss": 0.69})
    """

    def __init__(self, logdir):
        self.logdir = os.fspath(logdir)
        self._writer = None
        writer_class = _load_writer_class()
        if writer_class is not None:
            os.makedirs(self.logdir, exist_ok=True)
            suffix = f".{os.getpid()}.{next(_file_numbers):06d}"
            self._writer = writer_class(self.logdir, filename_suffix=suffix)

    @property
    def enabled(self):
        """True when events are really written (tensorboardX is installed and the writer is open)."""
        return self._writer is not None

    def scalars(self, step, values):
        """One scalar event per ``{tag: number}`` entry at global step ``step``."""
        if self._writer is None:
            return
        for tag, value in values.items():
            self._writer.add_scalar(tag, float(value), int(step))

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        """Flush and close the file; the writer does nothing afterwards."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_scalars(logdir, step, values):
    """Write ``{tag: number}`` at ``step`` into a new event file in ``logdir`` and close it."""
    with EventWriter(logdir) as writer:
        writer.scalars(step, values)


class SummarySaverHook(SessionRunHook):
    """Training summaries (TF's SummarySaverHook and StepCounterHook together) into ``output_dir``.

    Writes ``loss`` at the first step, every ``save_steps`` global steps and at the last step of
    the ``train`` call, and ``global_step/sec`` every ``log_step_count_steps`` steps (None: never).
    ``train`` adds one to its hooks when ``RunConfig.save_summary_steps`` is set.
    """

    def __init__(self, output_dir, save_steps=100, log_step_count_steps=100):
        for name, value in (("save_steps", save_steps), ("log_step_count_steps", log_step_count_steps)):
            if (value is not None or name == "save_steps") and \
                    (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"{name}: expected a positive integer{'' if name == 'save_steps' else ' or None'}, "
                                 f"got {value!r}")
        self.output_dir, self.save_steps = os.fspath(output_dir), int(save_steps)
        self.log_step_count_steps = None if log_step_count_steps is None else int(log_step_count_steps)
        self._writer = None

    def begin(self, estimator):
        self._writer, self._last_written, self._last = None, None, None

    def after_step(self, step, loss):
        now = time.perf_counter()
        if self._last is None:                 # the first step: open the file (train's finally closes it);
            self._writer = EventWriter(self.output_dir)       # rates count from its end, as TF's
            self._rate_start, self._rate_steps = now, 0
        else:
            self._rate_steps += 1
        self._last = (step, loss)
        if not self._writer.enabled:
            return False
        if self._last_written is None or step % self.save_steps == 0:
            self._writer.scalars(step, {"loss": loss})
            self._last_written = step
        if self.log_step_count_steps and step % self.log_step_count_steps == 0 and self._rate_steps:
            self._writer.scalars(step, {"global_step/sec": self._rate_steps / max(now - self._rate_start, 1e-9)})
            self._rate_start, self._rate_steps = now, 0
        return False

    def end(self, estimator):
        if self._writer is None:
            return
        if self._writer.enabled and self._last[0] != self._last_written:
            step, loss = self._last
            self._writer.scalars(step, {"loss": loss})
        self._writer.close()
        self._writer = None
