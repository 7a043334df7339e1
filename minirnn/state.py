"""What training changes, in one object: :class:`TrainState`.

    TrainState = network (its weights)  +  optimizer (slots, iteration count)
                 + global step  +  the dropout RNG (the network's generator)

Everything that moves training state goes through it, in one of two forms:

- checkpoint form (:meth:`TrainState.variables` / :meth:`~TrainState.attributes`, read back by
  :meth:`~TrainState.restore`): named arrays (TF's variable names, slots under
  ``training/<optimizer>/<variable>/<slot>``) and JSON attributes; :mod:`minirnn.checkpoint` writes it;
- flat form (:meth:`~TrainState.arrays`, :meth:`~TrainState.meta`, :meth:`~TrainState.load_flat`):
  the weights and slots as one list of arrays plus small metadata, which the MPI runner broadcasts
  from rank 0 (:mod:`minirnn.distributed`).

The GPU runner (:mod:`minirnn.cuda`) keeps the weights and slots on the device while it trains and
pulls them back into this object before anything reads it.
"""

import numpy as np

__all__ = ["TrainState"]


class TrainState:
    """A network, its optimizer and the global step.

    Parameters
    ----------
    network : a :class:`~minirnn.network.Network` (or any object with ``params()``, ``param_names()``,
        ``trainable()`` and a ``model`` holding the dropout generator ``rng``)
    optimizer : a :class:`~minirnn.optimizers.Optimizer`; its slots follow the trainable parameters
    global_step : steps taken so far

    ``fresh`` is True while the weights are the initial ones (nothing trained or restored yet).
    """

    def __init__(self, network, optimizer, global_step=0):
        self.network = network
        self.optimizer = optimizer
        self.global_step = int(global_step)
        self.fresh = True

    @property
    def rng(self):
        """The generator of the dropout masks (part of the state: resuming repeats the same masks)."""
        return self.network.model.rng

    @rng.setter
    def rng(self, generator):
        self.network.model.rng = generator

    def trainable_params(self):
        """The parameters the optimizer updates (embedding_column(trainable=False) tables are not)."""
        return [p for p, keep in zip(self.network.params(), self.network.trainable()) if keep]

    def trainable_names(self):
        return [n for n, keep in zip(self.network.param_names(), self.network.trainable()) if keep]

    def apply(self, grads):
        """One optimizer update (clipping included) with ``grads`` aligned with :meth:`trainable_params`."""
        self.optimizer.apply(self.trainable_params(), grads)

    # ---- checkpoint form -----------------------------------------------------------------------

    def variables(self):
        """{name: array}: the weights, ``global_step``, and the optimizer slots."""
        out = dict(zip(self.network.param_names(), self.network.params()))
        out["global_step"] = np.int64(self.global_step)
        state = self.optimizer.state()
        for name, slots in zip(self.trainable_names(), state["slots"]):
            for slot, value in slots.items():
                out[f"training/{self.optimizer.name}/{name}/{slot}"] = value
        return out

    def attributes(self):
        """JSON-able attributes of a checkpoint: the step, the optimizer's config and iteration
        count, the dropout RNG's state."""
        return {"global_step": self.global_step,
                "optimizer": {"config": self.optimizer.get_config(), "iterations": self.optimizer.iterations},
                "rng": self.rng.bit_generator.state}

    def slot_shapes(self):
        """{checkpoint name: shape} of the optimizer slots this state can hold."""
        return {f"training/{self.optimizer.name}/{name}/{slot}": p.shape
                for name, p in zip(self.trainable_names(), self.trainable_params()) for slot in self.optimizer.slots}

    def restore(self, variables, attributes):
        """Take the optimizer slots, iteration count, RNG and step of a checkpoint (the weights are
        loaded by :func:`minirnn.checkpoint.load_weights`)."""
        names = self.trainable_names()
        prefix = f"training/{self.optimizer.name}/"
        slots = []
        if any(k.startswith(prefix) for k in variables):
            for name in names:
                slots.append({s: variables[f"{prefix}{name}/{s}"] for s in self.optimizer.slots})
        iterations = attributes["optimizer"]["iterations"]
        if not self.optimizer.slots:
            slots = [{} for _ in names] if iterations else []
        self.optimizer.load_state({"iterations": iterations, "slots": slots})
        self.rng.bit_generator.state = attributes["rng"]
        self.global_step = int(attributes["global_step"])
        self.fresh = False

    # ---- flat form (broadcast) -----------------------------------------------------------------

    def arrays(self):
        """The weights, then each trainable parameter's slots in slot order: the arrays to broadcast."""
        out = list(self.network.params())
        for slots in self.optimizer._slots or []:
            out += [slots[name] for name in self.optimizer.slots]
        return out

    def meta(self):
        """Small metadata that goes with :meth:`arrays`."""
        arrays = self.arrays()
        return {"global_step": self.global_step, "iterations": self.optimizer.iterations, "fresh": self.fresh,
                "has_slots": self.optimizer._slots is not None, "rng": self.rng.bit_generator.state,
                "size": int(sum(a.size for a in arrays)), "dtype": str(self.network.params()[0].dtype)}

    def load_flat(self, meta, buffer):
        """Set the whole state from a :meth:`meta` and the concatenation of :meth:`arrays`."""
        params = self.network.params()
        offset = 0
        for p in params:
            p[...] = buffer[offset:offset + p.size].reshape(p.shape)
            offset += p.size
        slots = []
        if meta["has_slots"]:
            for p in self.trainable_params():
                entry = {}
                for name in self.optimizer.slots:
                    entry[name] = buffer[offset:offset + p.size].reshape(p.shape)
                    offset += p.size
                slots.append(entry)
        self.optimizer.load_state({"iterations": meta["iterations"], "slots": slots})
        self.rng.bit_generator.state = meta["rng"]
        self.global_step, self.fresh = int(meta["global_step"]), bool(meta["fresh"])
