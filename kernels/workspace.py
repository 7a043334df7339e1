"""Scratch memory that a layer's training steps reuse, instead of asking the system for it each step.

A training step of a recurrent layer needs large arrays: the forward saves the time-major input,
the gates and every state for backward, and backward needs scratch for a chunk of steps and its
input gradient. Fresh allocations of that size cost more than they seem: the C allocator hands big
blocks back to the system when they are freed, so every step would touch them again page by page,
and a page fault costs about as much as the arithmetic done on that page. Reusing one layer's
buffers from step to step removes those faults.

A :class:`Workspace` belongs to one layer. Its ``forward`` buffers are overwritten by the layer's
next training forward (by then the layer has dropped what the previous one saved) and its
``backward`` buffers by the next backward. Forwards for inference use :meth:`Workspace.inference`,
a workspace of the calling thread's own: an inference call between a training forward and its
backward leaves what backward reads alone, and several threads can predict with one layer at once.
Inference would pay the same page faults whenever the allocator had handed its memory back. The
price: a layer keeps, for each thread that predicted with it, scratch the size of its largest
inference call.

Scratch is not part of a layer's state: a pickled or copied workspace comes back empty (a fitted
estimator's pickle would otherwise carry megabytes of scratch next to kilobytes of weights).

Every array is 64-byte aligned (a cache line, one AVX-512 vector): arrays from NumPy's allocator are
only 16-byte aligned, and the compiled loops' vector loads and stores are slower across lines.
"""

import functools
import math
import threading

import numpy as np

ALIGN = 64   # bytes


class Workspace:
    """Buffers reused from one training step to the next; one per layer (see the module docstring).

    A forward split into row blocks (:mod:`minirnn.kernels._threads`) gives each block its own
    :meth:`block`, since the blocks run at the same time.
    """

    def __init__(self):
        self._buffers = {}     # name -> 1-D buffer
        self._views = {}       # name -> (dtype, shapes, arrays) of the last call
        self._blocks = []
        self._threads = threading.local()   # .inference: that thread's inference workspace

    def block(self, k):
        """The workspace of row block ``k``."""
        while len(self._blocks) <= k:
            self._blocks.append(Workspace())
        return self._blocks[k]

    def inference(self):
        """The calling thread's workspace for inference forwards (see the module docstring)."""
        workspace = getattr(self._threads, "inference", None)
        if workspace is None:
            workspace = self._threads.inference = Workspace()
        return workspace

    def nbytes(self):
        """Bytes held for training, row blocks included (not the threads' inference workspaces)."""
        return (sum(buf.nbytes for buf in self._buffers.values())
                + sum(block.nbytes() for block in self._blocks))

    def __getstate__(self):
        return {}              # scratch, not state: pickles and copies start empty

    def __setstate__(self, state):
        self.__init__()


def scratch(workspace, name, dtype, *shapes):
    """Uninitialised arrays of ``shapes`` in ``dtype``, each 64-byte aligned.

    With a workspace they are views of its buffer ``name``, kept for the next call (grown when a
    call needs more); with ``workspace=None`` they are fresh. Either way they share one allocation.
    """
    dtype = np.dtype(dtype)
    if workspace is not None:
        last = workspace._views.get(name)
        if last is not None and last[0] == dtype and last[1] == shapes:   # the usual case: same step
            return last[2]
    sizes, starts, total = _layout(dtype.itemsize, shapes)
    buf = None if workspace is None else workspace._buffers.get(name)
    if buf is None or buf.dtype != dtype or buf.size < total:
        per_line = ALIGN // dtype.itemsize
        raw = np.empty(total + per_line, dtype)
        start = (-raw.ctypes.data % ALIGN) // dtype.itemsize
        buf = raw[start:start + total]
    arrays = [buf[at:at + n].reshape(shape) for shape, n, at in zip(shapes, sizes, starts)]
    if workspace is not None:
        workspace._buffers[name] = buf
        workspace._views[name] = (dtype, shapes, arrays)
    return arrays


@functools.lru_cache(maxsize=1024)
def _layout(itemsize, shapes):
    """(sizes, starts, total) in items: each array starts on a new 64-byte line."""
    per_line = ALIGN // itemsize
    sizes = [math.prod(shape) for shape in shapes]
    starts, total = [], 0
    for n in sizes:
        starts.append(total)
        total += -(-n // per_line) * per_line
    return sizes, starts, total
