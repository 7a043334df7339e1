"""The MPI runner: what :class:`minirnn.loop.Session` asks of a runner, across ranks.

Each rank reads its share of every batch (:meth:`Context.batches`), computes its gradient with
:func:`minirnn.step.gradients` and the head's loss reduction set to 'sum', and :meth:`Context.reduce`
adds every rank's gradient with one fused Allreduce before the step's update (see the package
docstring for the buffer's layout). Rank 0 reads model_dir and broadcasts the
:class:`~minirnn.state.TrainState` (:meth:`Context.sync_state`); metrics and predictions are gathered.
"""

import copy
import functools
import zlib

import numpy as np

from ..config import MPIDistribution, launched_size
from ..inputs import batches
from ..loop import Local
from ..sparse import SparseRows
from .comm import Communicator, import_mpi, portable
from .sharding import Batch, InputContext, bounds, fingerprint, split_batch, takes_input_context

__all__ = ["Context", "context", "runner_for", "prefer_sparse", "SPARSE_COST", "concatenate"]

_FIRST_STEP_DENSE_LIMIT = 1 << 18          # 'auto', first step: dense for tables up to this many values
_META = 6                                  # W, Dn, alive, stop, error, examples


_CONTEXTS = {}
_DUPLICATES = {}


def runner_for(distribute):
    """The runner of a :class:`minirnn.loop.Session` for ``RunConfig.distribute``: this process's
    :class:`Context` when it is one of several data-parallel ranks, else :class:`minirnn.loop.Local`."""
    return context(distribute) or Local


def context(distribute):
    """The :class:`Context` for ``RunConfig.distribute``, or None when this process trains alone."""
    if distribute is False:
        return None
    if distribute is None:
        size = launched_size()
        if size <= 1:
            return None
        spec = MPIDistribution()
        MPI = import_mpi(f"this process is one of {size} started by mpiexec (RunConfig(distribute=None) then trains "
                          "data-parallel)")
    else:
        spec = MPIDistribution() if distribute == "mpi" else distribute
        MPI = import_mpi("RunConfig(distribute=...) asks for MPI")
    comm = spec.comm if spec.comm is not None else MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return None
    key = (MPI.Comm.py2f(comm), spec.timeout, spec.embedding_gradients)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        own = _DUPLICATES.get(key[0])
        if own is None:                          # a private communicator: our traffic never meets the user's
            own = _DUPLICATES[key[0]] = comm.Dup()
        ctx = _CONTEXTS[key] = Context(MPI, own, spec)
    return ctx


SPARSE_COST = 4     # measured (benchmarks/bench_distributed.py --embedding): a gathered byte costs ~4 dense ones


def prefer_sparse(rows, vocabulary, width, itemsize):
    """'auto': exchange a table's gradient sparsely when the rows all ranks touched, gathered
    (8 bytes of index + the row each), cost less than the dense [V, D] + V flags Allreduce. A gathered
    byte is counted SPARSE_COST times: the sort and sum behind it cost more than the dense path's
    zeroing and summing."""
    return SPARSE_COST * rows * (8 + width * itemsize) < (vocabulary * width + vocabulary) * itemsize


class Context(Communicator):
    """The runner of one rank of a data-parallel job (the other runner is :class:`minirnn.loop.Local`)."""

    def __init__(self, MPI, comm, spec):
        super().__init__(MPI, comm, spec)
        self._layouts = {}
        self._rows_seen = {}              # table index -> rows touched by all ranks at the last step
        self._stop = False

    # ---- input ---------------------------------------------------------------------------------

    def batches(self, input_fn, repeat=False, endless=None):
        """This rank's share of each step, as ``(Batch, None)`` pairs (so a train loop can unpack
        them): DATA or EMPTY while the input lasts, then one FAILED if reading it raised, or
        EXHAUSTED for ever. ``repeat``, ``endless``: as :func:`minirnn.inputs.batches`."""
        if not callable(input_fn):
            raise TypeError(f"input_fn must be callable, got {type(input_fn).__name__}")
        own = takes_input_context(input_fn)
        if own:
            seed = self.bcast_obj(int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
                                  if self.is_chief else None, "the input seed")
            input_fn = functools.partial(input_fn, input_context=InputContext(self.size, self.rank, seed=seed))
        try:
            for features, labels in batches(input_fn, repeat, endless):
                if own:
                    if isinstance(features, dict) and not features:
                        yield Batch(Batch.EMPTY), None
                    else:
                        yield Batch(Batch.DATA, features, labels), None
                    continue
                part, part_labels, n = split_batch(features, labels, self.rank, self.size)
                start, stop = bounds(n, self.rank, self.size)
                kind = Batch.DATA if stop > start else Batch.EMPTY
                yield Batch(kind, part, part_labels, fingerprint(n, labels)), None
        except Exception as e:                # noqa: BLE001 - the step's Allreduce tells every rank
            yield Batch(Batch.FAILED, error=e), None
            return
        while True:
            yield Batch(Batch.EXHAUSTED), None

    # ---- model state: rank 0 -> everyone -------------------------------------------------------

    def sync_state(self, state, chief_fn):
        """Run ``chief_fn()`` on rank 0 (bring ``state`` up to date with model_dir) and give every
        rank rank 0's weights, optimizer state, global step and dropout RNG."""
        value, meta = self.on_chief(lambda: (chief_fn(), state.meta()), "reading model_dir on rank 0")
        buffer = np.concatenate([a.ravel() for a in state.arrays()]) if self.is_chief else \
            np.empty(meta["size"], dtype=meta["dtype"])
        if buffer.size:
            self.bcast_array(buffer, "broadcasting the model from rank 0")
        if not self.is_chief:
            state.load_flat(meta, buffer)
        return value

    def network_for(self, state, checkpoint_path, local, new_network):
        """``local(checkpoint_path)`` -> (network, step) on rank 0; every rank gets its weights."""
        if checkpoint_path is None:
            step = self.sync_state(state, lambda: local(None)[1])
            return state.network, step

        loaded = {}

        def chief():
            net, step = local(checkpoint_path)
            loaded["net"] = net
            return step, str(net.params()[0].dtype), sum(p.size for p in net.params())
        step, dtype, size = self.on_chief(chief, f"reading {checkpoint_path} on rank 0")
        net = loaded["net"] if self.is_chief else new_network()
        buffer = np.concatenate([p.ravel() for p in net.params()]) if self.is_chief else np.empty(size, dtype)
        self.bcast_array(buffer, "broadcasting the checkpoint from rank 0")
        if not self.is_chief:
            _unpack(buffer, net.params())
        return net, step

    # ---- one training step ---------------------------------------------------------------------

    def request_stop(self):
        """A hook on this rank asked to stop: the next step tells every rank, and none applies it."""
        self._stop = True

    def reduce(self, state, head, batch, labels, compute):
        """train_step's reducer: this rank's gradient of its share (``compute``), the fused Allreduce.
        Returns (the summed gradients, the global loss), or None when every rank's input has ended or
        a rank asked to stop."""
        net = state.network
        layout = self._layout(net)
        buf = layout.buffer
        buf[layout.zero_from:] = 0
        layout.sparse_bytes = b""
        meta = buf[layout.meta:]
        self.step = state.global_step + 1
        local_error = None
        master = net.model.rng                 # dropout: same draw on every rank, own stream per rank
        dropout = net.model.keep is not None
        seed = int(master.integers(1 << 62)) if dropout else None
        active = batch.kind == Batch.DATA and not self._stop
        if batch.kind == Batch.FAILED:
            local_error = batch.error
        if active:
            try:
                if dropout:
                    net.model.rng = np.random.default_rng([seed, self.rank])
                self._local_gradients(compute, head, layout, batch, meta)
            except Exception as e:            # noqa: BLE001 - every rank learns of it below
                local_error = e
            finally:
                net.model.rng = master
        if not active or local_error is not None:
            buf[:] = 0                         # nothing from this rank (after an error: values unused)
            layout.sparse_bytes = b""
        meta[2] = batch.kind in (Batch.DATA, Batch.EMPTY) and not self._stop
        meta[3] = self._stop
        meta[4] = local_error is not None
        meta[_META + self.rank] = batch.fingerprint if batch.kind in (Batch.DATA, Batch.EMPTY) else 0
        self.allreduce(buf, "the gradient Allreduce")
        if meta[4] > 0:
            errors = self.allgather_obj(portable(local_error), "sharing a failed step's error")
            self._raise_first(errors, f"training step {self.step}")
        if meta[3] > 0:
            self._stop = False
            return None
        if meta[2] == 0:
            return None
        fingerprints = meta[_META:_META + self.size]
        seen = fingerprints[fingerprints != 0]
        if seen.size and np.any(seen != seen[0]):
            raise ValueError(f"step {self.step}: the ranks read different batches from input_fn (an unseeded shuffle?). "
                             "Every rank calls an input_fn() without arguments and keeps its part of each batch, so the "
                             "batches must be the same on every rank: give numpy_input_fn / hdf5_input_fn a seed, or "
                             "write an input_fn(input_context) that reads this rank's share")
        if meta[5] == 0:
            raise ValueError(f"step {self.step}: no rank had an example (every rank's input_fn yielded an empty batch)")
        weighted, denominator = float(meta[0]), float(meta[1])
        if head.loss_reduction == "sum":
            scale = 1.0
        else:
            scale = 1.0 / denominator if denominator > 0 else 0.0
        loss = weighted * scale
        if not np.isfinite(loss):
            return None, loss                  # train_step raises before any update
        grads = self._reduced_gradients(layout, meta, scale)
        self.stats["steps"] += 1
        self._note_rows(layout, meta)
        return grads, loss

    def _local_gradients(self, compute, head, layout, batch, meta):
        result, trainable_grads = compute(batch.features, batch.labels, _summing(head))
        grads = [None] * len(layout.shapes)
        for index, position in layout.position.items():
            grads[index] = trainable_grads[position]
        for (index, view) in layout.dense:
            np.copyto(view, grads[index])
        pieces = []
        for k, (index, mode, values, flags) in enumerate(layout.tables):
            g = grads[index]
            if not isinstance(g, SparseRows):   # a dense table gradient: every row touched
                g = SparseRows(np.arange(g.shape[0]), g, g.shape)
            meta[_META + self.size + k * self.size + self.rank] = len(g.rows)
            if mode == "dense":
                values[g.rows] = g.values
                flags[g.rows] = 1
            else:
                pieces.append(g.rows.astype(np.int64).tobytes())
                pieces.append(np.ascontiguousarray(g.values, dtype=layout.dtype).tobytes())
        layout.sparse_bytes = b"".join(pieces)
        meta[0] = result.weighted_sum
        meta[1] = head.denominator(result.weights) if head.loss_reduction != "sum" else 0.0
        meta[5] = len(result.unreduced)

    def _reduced_gradients(self, layout, meta, scale):
        buf = layout.buffer
        if scale != 1.0:
            buf[:layout.values_end] *= layout.dtype.type(scale)
        grads = [None] * len(layout.trainable_params)
        for position, (index, view) in enumerate(layout.dense):
            grads[layout.position[index]] = view
        counts = meta[_META + self.size:].reshape(len(layout.tables), self.size) if layout.tables else None
        gathered = None
        if any(mode == "sparse" for _, mode, _, _ in layout.tables):
            itemsize = layout.dtype.itemsize
            per_rank = np.zeros(self.size, dtype=np.int64)
            for k, (index, mode, _, _) in enumerate(layout.tables):
                if mode == "sparse":
                    width = layout.row_width[index]
                    per_rank += counts[k].astype(np.int64) * (8 + width * itemsize)
            data = np.frombuffer(layout.sparse_bytes, dtype=np.uint8)
            gathered = self.allgatherv_bytes(data, per_rank, "the embedding-row Allgatherv")
            self.stats["sparse_row_bytes"] += gathered.nbytes
            starts = np.concatenate([[0], np.cumsum(per_rank)])
        offsets = None if gathered is None else starts[:-1].copy()
        for k, (index, mode, values, flags) in enumerate(layout.tables):
            shape = layout.shapes[index]
            if mode == "dense":
                rows = np.flatnonzero(flags)
                grads[layout.position[index]] = SparseRows(rows, values[rows], shape)
                continue
            width = layout.row_width[index]
            all_rows, all_values = [], []
            for r in range(self.size):
                n = int(counts[k, r])
                if n == 0:
                    continue
                o = offsets[r]
                all_rows.append(gathered[o:o + 8 * n].view(np.int64))
                o += 8 * n
                all_values.append(gathered[o:o + n * width * layout.dtype.itemsize].view(layout.dtype).reshape(
                    (n,) + shape[1:]))
                offsets[r] = o + n * width * layout.dtype.itemsize
            if not all_rows:
                grads[layout.position[index]] = SparseRows(np.zeros(0, np.int64), np.zeros((0,) + shape[1:],
                                                                                         layout.dtype), shape)
                continue
            rows, vals = np.concatenate(all_rows), np.concatenate(all_values)
            order = np.argsort(rows, kind="stable")
            rows, vals = rows[order], vals[order]
            first = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
            summed = np.add.reduceat(vals, first, axis=0)
            if scale != 1.0:
                summed *= layout.dtype.type(scale)
            grads[layout.position[index]] = SparseRows(rows[first], summed, shape)
        return grads

    def _note_rows(self, layout, meta):
        if not layout.tables:
            return
        counts = meta[_META + self.size:].reshape(len(layout.tables), self.size)
        for k, (index, _, _, _) in enumerate(layout.tables):
            self._rows_seen[(id(layout.net), index)] = int(counts[k].sum())

    def _table_mode(self, net, index, shape, itemsize):
        mode = self.embedding_gradients
        if mode != "auto":
            return mode
        size, width = int(np.prod(shape)), int(np.prod(shape[1:]))
        rows = self._rows_seen.get((id(net), index))
        if rows is None:
            return "dense" if size <= _FIRST_STEP_DENSE_LIMIT else "sparse"
        return "sparse" if prefer_sparse(rows, shape[0], width, itemsize) else "dense"

    def _layout(self, net):
        params, trainable = net.params(), net.trainable()
        n_tables = len(params) - len(net.model.params())
        dtype = params[0].dtype
        modes = tuple(self._table_mode(net, i, params[i].shape, dtype.itemsize) if i < n_tables else None
                      for i in range(len(params)))
        key = (id(net), modes)
        layout = self._layouts.get(key)
        if layout is None or layout.net is not net:
            if len(self._layouts) > 16:
                self._layouts.clear()
            layout = self._layouts[key] = _Layout(net, params, trainable, n_tables, modes, self.size)
        return layout

    # ---- evaluation ----------------------------------------------------------------------------

    def evaluate(self, new_evaluator, input_fn, steps, hooks, evaluate):
        """This rank's share of every batch (``evaluate(evaluator, features, labels)`` -> loss), then
        the evaluators of all ranks merged in rank order: the same on every rank, and equal to one
        pass over all the batches."""
        evaluator = new_evaluator()
        count, error, chain, stopped = 0, None, 0, False
        for batch, _ in self.batches(input_fn):
            if batch.kind in (Batch.EXHAUSTED, Batch.FAILED) or (steps is not None and count >= steps):
                error = batch.error
                break
            for hook in hooks:
                hook.before_step(count + 1)
            loss = None
            if batch.kind == Batch.EMPTY:
                evaluator.add_empty_batch()
            else:
                try:
                    loss = evaluate(evaluator, batch.features, batch.labels)
                except Exception as e:        # noqa: BLE001 - every rank learns of it below
                    error = e
                    break
            chain = zlib.crc32(np.int64(batch.fingerprint).tobytes(), chain)
            count += 1
            if any([bool(hook.after_step(count, loss)) for hook in hooks]):
                stopped = True
                break
        parts = self.allgather_obj((portable(error), None if error else evaluator.state(), count, chain, stopped),
                                   "gathering the evaluation")
        self._raise_first([p[0] for p in parts], "evaluate")
        if sum(p[2] for p in parts) == 0:
            raise ValueError("evaluate: input_fn produced no batch")
        chains = {p[3] for p in parts if p[3] and not p[4]}
        if len(chains) > 1:
            raise ValueError("evaluate: the ranks read different batches from input_fn (an unseeded shuffle?); give "
                             "the input a seed, or write an input_fn(input_context) that reads this rank's share")
        merged = new_evaluator()
        for p in parts:
            merged.merge_state(p[1])
        return merged

    # ---- prediction ----------------------------------------------------------------------------

    def predictions(self, input_fn, hooks, predict_batch, mask_key, return_sequences):
        """Each global batch's predictions, gathered to rank 0 in rank order: ``(preds, mask)`` on
        rank 0; the other ranks yield nothing (but take part until rank 0 stops)."""
        number = 0
        for batch, _ in self.batches(input_fn):
            if batch.kind in (Batch.DATA, Batch.EMPTY):
                number += 1
                for hook in hooks:
                    hook.before_step(number)
            status, payload = batch.kind, None
            if batch.kind == Batch.FAILED:
                status, payload = "failed", portable(batch.error)
            elif batch.kind == Batch.DATA:
                try:
                    payload = predict_batch(batch.features)
                except Exception as e:        # noqa: BLE001 - every rank learns of it below
                    status, payload = "failed", portable(e)
            parts = self.gather_obj((status, payload), "gathering predictions")
            if self.is_chief:
                failed = [p[1] for p in parts if p[0] == "failed"]
                if failed:
                    verdict = ("failed", failed[0])
                elif all(p[0] == Batch.EXHAUSTED for p in parts):
                    verdict = ("end", None)
                else:
                    verdict = ("go", None)
            verdict = self.bcast_obj(verdict if self.is_chief else None, "sharing the prediction status")
            if verdict[0] == "failed":
                raise verdict[1]
            if verdict[0] == "end":
                return
            if not self.is_chief:                 # rank 0 alone decides when predictions stop
                if batch.kind in (Batch.DATA, Batch.EMPTY):
                    for hook in hooks:
                        hook.after_step(number, None)
                continue
            out = concatenate([p[1] for p in parts if p[0] == Batch.DATA], mask_key, return_sequences)
            if out is None:                       # every rank's share of this batch was empty
                continue
            try:
                yield out
            except GeneratorExit:                 # rank 0 stopped early: tell the others
                self.gather_obj(("stop", None), "gathering predictions")
                self.bcast_obj(("end", None), "sharing the prediction status")
                raise


class _Layout:
    """Where each gradient lives in the fused buffer of a network (see the module docstring)."""

    def __init__(self, net, params, trainable, n_tables, modes, size):
        self.net = net
        self.dtype = params[0].dtype
        self.shapes = [p.shape for p in params]
        self.row_width = [int(np.prod(p.shape[1:])) for p in params]
        kept = [i for i, k in enumerate(trainable) if k]
        self.trainable_params = [params[i] for i in kept]
        self.position = {i: n for n, i in enumerate(kept)}
        dense_sizes = [(i, params[i].size) for i in kept if i >= n_tables]
        tables = [i for i in kept if i < n_tables]
        total = sum(s for _, s in dense_sizes)
        table_values = sum(params[i].size for i in tables if modes[i] == "dense")
        table_flags = sum(params[i].shape[0] for i in tables if modes[i] == "dense")
        self.values_end = total + table_values
        self.meta = self.values_end + table_flags
        self.buffer = np.zeros(self.meta + _META + size + len(tables) * size, dtype=self.dtype)
        self.zero_from = total                       # dense gradients are overwritten, the rest zeroed
        self.dense, offset = [], 0
        for i, n in dense_sizes:
            self.dense.append((i, self.buffer[offset:offset + n].reshape(params[i].shape)))
            offset += n
        self.tables, flag_offset = [], self.values_end
        for i in tables:
            if modes[i] == "dense":
                n, v = params[i].size, params[i].shape[0]
                values = self.buffer[offset:offset + n].reshape(params[i].shape)
                flags = self.buffer[flag_offset:flag_offset + v]
                offset, flag_offset = offset + n, flag_offset + v
                self.tables.append((i, "dense", values, flags))
            else:
                self.tables.append((i, "sparse", None, None))
        self.sparse_bytes = b""


def _summing(head):
    """The head with loss_reduction 'sum': each rank's loss and gradient are plain sums, scaled by
    the global denominator once they are added up."""
    clone = copy.copy(head)
    clone.loss_reduction = "sum"
    return clone


def _unpack(buffer, arrays):
    offset = 0
    for a in arrays:
        a[...] = buffer[offset:offset + a.size].reshape(a.shape)
        offset += a.size
    return offset


def concatenate(parts, mask_key, return_sequences):
    """Ranks' prediction dicts of one batch, in rank order, as one batch. Per-step outputs of
    shares padded to different lengths are padded to the longest: the mask with False, outputs by
    repeating their last step (a masked step repeats the last valid output, as on one process)."""
    if not parts:
        return None
    preds = [p[0] for p in parts]
    masks = [p[1] for p in parts]
    T = max(m.shape[1] for m in masks)

    def pad(a, mask_like, key):
        if a.shape[1] == T:
            return a
        width = [(0, 0), (0, T - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
        if mask_like:
            return np.pad(a, width, constant_values=False)
        return np.pad(a, width, mode="edge")

    out = {}
    for key in preds[0]:
        arrays = []
        for p, m in zip(preds, masks):
            a = np.asarray(p[key])
            per_step = (return_sequences and a.ndim >= 2 and a.shape[:2] == m.shape
                        and not key.startswith(("all_", "rnn_cell_state")))
            arrays.append(pad(a, key == mask_key, key) if per_step else a)
        out[key] = np.concatenate(arrays)
    mask = np.concatenate([np.pad(m, [(0, 0), (0, T - m.shape[1])], constant_values=False) for m in masks])
    return out, mask
