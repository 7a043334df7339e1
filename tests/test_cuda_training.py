"""Training on the device (``minirnn.cuda``) against CPU training, under Numba's CUDA simulator;
device selection without a GPU. (The import rules of the kernel modules: test_architecture.py.)

The simulator tests are in ``_cuda_training_sim.py`` and run in a child process (the simulator must
be on before Numba is first imported; see ``_cuda_subprocess.py``).
"""

import logging
import os
import subprocess
import sys

import pytest

from _cuda_subprocess import run_simulated



@pytest.mark.cudasim
def test_cuda_training_under_the_simulator(tmp_path):
    run_simulated("_cuda_training_sim.py", tmp_path)


def test_importing_minirnn_cuda_does_not_load_numba_cuda(tmp_path):
    code = "import sys, minirnn, minirnn.cuda; print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_select_device_without_a_gpu(caplog):
    from numba import config
    from minirnn.cuda import gpu_available, select_device
    if config.ENABLE_CUDASIM or gpu_available()[0]:
        pytest.skip("a GPU (or the simulator) is present: the no-GPU rules do not apply")
    assert select_device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="device='cuda' but no CUDA GPU"):
        select_device("cuda")
    with caplog.at_level(logging.INFO, logger="minirnn.cuda"):
        assert select_device("auto") == "cpu"
    assert [r.getMessage() for r in caplog.records if r.name == "minirnn.cuda"][0].startswith("device='auto'")
    with pytest.raises(ValueError, match="expected one of"):
        select_device("tpu")


def test_runconfig_device(tmp_path, caplog):
    import numpy as np
    import minirnn
    from numba import config
    from minirnn import feature_column as fc
    from minirnn.cuda import gpu_available
    from minirnn.inputs import numpy_input_fn
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda' or 'auto', got 'gpu'"):
        minirnn.RunConfig(device="gpu")
    assert minirnn.RunConfig().device == "cpu" and minirnn.RunConfig(device="auto").replace(model_dir="m").device == "auto"
    if config.ENABLE_CUDASIM or gpu_available()[0]:
        pytest.skip("a GPU (or the simulator) is present: the no-GPU rules do not apply")
    x, y = [np.ones((3, 1), np.float32), np.zeros((2, 1), np.float32)], np.array([1, 0])

    def estimator(device, name):
        return minirnn.RNNClassifier([fc.sequence_numeric_column("x")], units=[2], model_dir=tmp_path / name,
                                     config=minirnn.RunConfig(device=device, save_summary_steps=None))
    with pytest.raises(RuntimeError, match="device='cuda' but no CUDA GPU"):
        estimator("cuda", "cuda").train(numpy_input_fn({"x": x}, y, shuffle=False), steps=1)
    with caplog.at_level(logging.INFO, logger="minirnn.cuda"):
        estimator("auto", "auto").train(numpy_input_fn({"x": x}, y, shuffle=False), steps=1)
    assert any("training on the CPU" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "auto" / "model.ckpt-1.h5").exists()
    assert not (tmp_path / "cuda").exists()               # refused before anything was written


def test_inference_device_without_a_gpu(tmp_path, caplog):
    """evaluate/predict with RunConfig(device='cuda') and load_exported(device='cuda') refuse a
    missing GPU with the training path's error, before reading any batch; 'auto' runs on the CPU."""
    import numpy as np
    import minirnn
    from numba import config
    from minirnn import feature_column as fc
    from minirnn.cuda import gpu_available
    from minirnn.export import load_exported
    from minirnn.inputs import numpy_input_fn
    if config.ENABLE_CUDASIM or gpu_available()[0]:
        pytest.skip("a GPU (or the simulator) is present: the no-GPU rules do not apply")
    x, y = [np.ones((3, 1), np.float32), np.zeros((2, 1), np.float32)], np.array([1, 0])

    def estimator(device):
        return minirnn.RNNClassifier([fc.sequence_numeric_column("x")], units=[2], model_dir=tmp_path / "m",
                                     config=minirnn.RunConfig(device=device, save_summary_steps=None))
    cpu = estimator("cpu")
    cpu.train(numpy_input_fn({"x": x}, y, shuffle=False), steps=1)
    path = cpu.export_saved_model(str(tmp_path / "export"))

    def never():
        raise AssertionError("input_fn called")
    gpu = estimator("cuda")
    with pytest.raises(RuntimeError, match="device='cuda' but no CUDA GPU"):
        gpu.evaluate(never)
    with pytest.raises(RuntimeError, match="device='cuda' but no CUDA GPU"):
        gpu.predict(never)                               # at the call, not at the first next()
    with pytest.raises(RuntimeError, match="device='cuda' but no CUDA GPU"):
        load_exported(path, device="cuda")
    with pytest.raises(ValueError, match="expected one of"):
        load_exported(path, device="gpu")
    want = load_exported(path).predict({"x": x})
    with caplog.at_level(logging.INFO, logger="minirnn.cuda"):
        auto = load_exported(path, device="auto")
        metrics = estimator("auto").evaluate(numpy_input_fn({"x": x}, y, shuffle=False))
    assert auto.device == "cpu" and load_exported(path).device == "cpu"
    np.testing.assert_array_equal(auto.predict({"x": x})["probabilities"], want["probabilities"])
    assert metrics["loss"] == cpu.evaluate(numpy_input_fn({"x": x}, y, shuffle=False))["loss"]
    assert [r.getMessage().endswith("evaluating and predicting on the CPU") for r in caplog.records
            if r.name == "minirnn.cuda"] == [True, True]
