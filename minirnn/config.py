"""Run settings: TF's ``RunConfig`` and ``WarmStartSettings``, and ``MPIDistribution`` (how to
train data-parallel; the MPI runner itself is :mod:`minirnn.distributed`)."""

import os
from collections import namedtuple

import numpy as np

DEVICES = ("cpu", "cuda", "auto")   # where the recurrent model runs (RunConfig(device=), --device)

__all__ = ["RunConfig", "WarmStartSettings", "MPIDistribution", "check_distribute", "launched_size",
           "SIZE_VARIABLES", "DEFAULT_TIMEOUT", "EMBEDDING_MODES"]

SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
DEFAULT_TIMEOUT = 600.0
EMBEDDING_MODES = ("auto", "dense", "sparse")
_UNSET = object()


def launched_size(environ=None):
    """The number of processes mpiexec started this one with (1 when not under mpiexec):
    ``OMPI_COMM_WORLD_SIZE`` (Open MPI), ``PMI_SIZE`` (MPICH, Intel MPI), ``MV2_COMM_WORLD_SIZE``."""
    env = os.environ if environ is None else environ
    for key in SIZE_VARIABLES:
        try:
            return max(int(env[key]), 1)
        except (KeyError, ValueError):
            continue
    return 1


class MPIDistribution:
    """How to train data-parallel on MPI (``RunConfig(distribute=MPIDistribution(...))``).

    Parameters
    ----------
    comm : an mpi4py intracommunicator (default ``MPI.COMM_WORLD``); minirnn works on a duplicate
    timeout : seconds any collective may wait for the other ranks before the job is aborted with a
        message naming the collective (default ``MINIRNN_MPI_TIMEOUT`` or 600); the first step also
        waits for every rank's compilation of the kernels, so keep it well above a step's time
    embedding_gradients : 'auto' (default), 'dense' (inside the fused Allreduce) or 'sparse'
        (Allgatherv of the touched rows); see the module docstring
    """

    def __init__(self, comm=None, timeout=None, embedding_gradients="auto"):
        if timeout is None:
            text = os.environ.get("MINIRNN_MPI_TIMEOUT", DEFAULT_TIMEOUT)
            try:
                timeout = float(text)
            except ValueError:
                raise ValueError(f"MINIRNN_MPI_TIMEOUT: expected a positive number of seconds, got {text!r}") from None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
        if embedding_gradients not in EMBEDDING_MODES:
            raise ValueError(f"embedding_gradients: expected one of {EMBEDDING_MODES}, got {embedding_gradients!r}")
        self.comm, self.timeout, self.embedding_gradients = comm, float(timeout), embedding_gradients

    def __repr__(self):
        return (f"MPIDistribution(comm={self.comm!r}, timeout={self.timeout}, "
                f"embedding_gradients={self.embedding_gradients!r})")


def check_distribute(value):
    """RunConfig's check of ``distribute``: None (automatic under mpiexec), 'mpi', False, or an
    :class:`MPIDistribution`."""
    if value is None or value is False or (isinstance(value, str) and value == "mpi") \
            or isinstance(value, MPIDistribution):
        return value
    raise ValueError(f"distribute: expected None (data-parallel when launched by mpiexec with several processes), "
                     f"'mpi', False or a minirnn.distributed.MPIDistribution, got {value!r}")


class RunConfig:
    """TF's RunConfig, the parts that matter here, with TF's defaults and rules.

    save_checkpoints_secs defaults to 600 when neither it nor save_checkpoints_steps is given;
    giving both is a ValueError. ``random_seed`` (alias ``tf_random_seed``) fixes initialisation
    and dropout. ``keep_checkpoint_max`` None or 0 keeps every checkpoint. ``save_summary_steps``
    (TensorBoard ``loss`` every N steps, :mod:`minirnn.summary`) None or 0 writes no event files.
    ``distribute``: None (data-parallel over MPI when mpiexec started several processes, else one
    process), 'mpi' (require it), False (each process on its own) or a
    :class:`MPIDistribution`; see :mod:`minirnn.distributed`.
    ``device``: where ``train``, ``evaluate`` and ``predict`` run the recurrent model: 'cpu' (the
    default), 'cuda' (an NVIDIA GPU through Numba; an error when there is none) or 'auto' (the GPU
    when Numba sees one, else the CPU with one log line); see :mod:`minirnn.cuda`. Checkpoints are
    the same whatever the device.
    """

    def __init__(self, model_dir=None, random_seed=None, save_checkpoints_steps=None, save_checkpoints_secs=_UNSET,
                 keep_checkpoint_max=5, log_step_count_steps=100, tf_random_seed=None, save_summary_steps=100,
                 keep_checkpoint_every_n_hours=10000, distribute=None, device="cpu"):
        distribute = check_distribute(distribute)
        if random_seed is not None and tf_random_seed is not None and random_seed != tf_random_seed:
            raise ValueError("give random_seed or tf_random_seed, not two different values")
        seed = random_seed if random_seed is not None else tf_random_seed
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"random_seed: expected a non-negative integer, got {seed!r}")
        if save_checkpoints_secs is _UNSET:
            save_checkpoints_secs = None if save_checkpoints_steps is not None else 600
        elif save_checkpoints_steps is not None and save_checkpoints_secs is not None:
            raise ValueError("can not provide both save_checkpoints_secs and save_checkpoints_steps")
        for name, value in (("save_checkpoints_steps", save_checkpoints_steps),
                            ("save_checkpoints_secs", save_checkpoints_secs),
                            ("log_step_count_steps", log_step_count_steps)):
            if value is not None and (not isinstance(value, (int, float, np.number)) or value <= 0):
                raise ValueError(f"{name}: expected a positive number or None, got {value!r}")
        if keep_checkpoint_max is not None and (not isinstance(keep_checkpoint_max, (int, np.integer))
                                                or keep_checkpoint_max < 0):
            raise ValueError(f"keep_checkpoint_max: expected a non-negative integer or None, got {keep_checkpoint_max!r}")
        if device not in DEVICES:
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'auto', got {device!r}")
        if save_summary_steps is not None and (not isinstance(save_summary_steps, (int, np.integer))
                                               or isinstance(save_summary_steps, bool) or save_summary_steps < 0):
            raise ValueError(f"save_summary_steps: expected a non-negative integer or None, got {save_summary_steps!r}")
        self.model_dir = None if model_dir is None else os.fspath(model_dir)
        self.random_seed = self.tf_random_seed = None if seed is None else int(seed)
        self.save_checkpoints_steps, self.save_checkpoints_secs = save_checkpoints_steps, save_checkpoints_secs
        self.keep_checkpoint_max = keep_checkpoint_max
        self.log_step_count_steps = log_step_count_steps
        self.save_summary_steps, self.keep_checkpoint_every_n_hours = save_summary_steps, keep_checkpoint_every_n_hours
        self.distribute = distribute
        self.device = device

    def replace(self, **changes):
        args = {"model_dir": self.model_dir, "random_seed": self.random_seed,
                "save_checkpoints_steps": self.save_checkpoints_steps,
                "save_checkpoints_secs": self.save_checkpoints_secs, "keep_checkpoint_max": self.keep_checkpoint_max,
                "log_step_count_steps": self.log_step_count_steps, "save_summary_steps": self.save_summary_steps,
                "distribute": self.distribute, "device": self.device}
        if "tf_random_seed" in changes:
            changes["random_seed"] = changes.pop("tf_random_seed")
        if "save_checkpoints_steps" in changes and "save_checkpoints_secs" not in changes:
            args["save_checkpoints_secs"] = None
        if "save_checkpoints_secs" in changes and "save_checkpoints_steps" not in changes:
            args["save_checkpoints_steps"] = None
        unknown = set(changes) - set(args)
        if unknown:
            raise ValueError(f"RunConfig.replace: unknown fields {sorted(unknown)}")
        args.update(changes)
        return RunConfig(**args)

    def __repr__(self):
        return (f"RunConfig(model_dir={self.model_dir!r}, random_seed={self.random_seed}, save_checkpoints_steps="
                f"{self.save_checkpoints_steps}, save_checkpoints_secs={self.save_checkpoints_secs}, "
                f"keep_checkpoint_max={self.keep_checkpoint_max}, log_step_count_steps={self.log_step_count_steps})")


WarmStartSettings = namedtuple("WarmStartSettings", ["ckpt_to_initialize_from", "vars_to_warm_start",
                                                     "var_name_to_prev_var_name"])
WarmStartSettings.__new__.__defaults__ = (".*", None)
WarmStartSettings.__doc__ = ("Warm start from a checkpoint file, a model_dir or an export dir: the variables "
                             "matching the regular expression ``vars_to_warm_start`` (optimizer slots are never "
                             "copied), renamed by ``var_name_to_prev_var_name``.")
