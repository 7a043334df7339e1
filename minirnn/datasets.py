"""Small real datasets shipped with minirnn.

``load_japanese_vowels()``: the UCI *Japanese Vowels* speaker-recognition set (CC BY 4.0). Nine
male speakers each uttered the Japanese vowels /ae/; every utterance is 7 to 29 frames of 12 LPC
cepstrum coefficients, and the task is to name the speaker. 270 training and 370 test utterances,
stored exactly (335 KB HDF5). Source: Kudo, Toyama and Shimbo (1999), Pattern Recognition Letters
20(11-13), 1103-1111; https://doi.org/10.24432/C5NS47.
"""

import os

import numpy as np

_FILE = os.path.join(os.path.dirname(__file__), "data", "japanese_vowels.h5")


def load_japanese_vowels():
    """{'train': (sequences, speakers), 'test': (sequences, speakers)}.

    sequences: list of float32 arrays [frames, 12] (7 to 29 frames); speakers: int64 array of
    speaker ids 0..8 (the source numbers them 1..9).
    """
    import h5py
    with h5py.File(_FILE, "r") as f:
        values = (f["values"][()] * f.attrs["scale"]).astype(np.float32)
        lengths = f["lengths"][()].astype(np.int64)
        speakers = f["speaker"][()].astype(np.int64) - 1
        is_train = f["is_train"][()]
    sequences = np.split(values, np.cumsum(lengths)[:-1])
    out = {}
    for name, rows in (("train", np.nonzero(is_train)[0]), ("test", np.nonzero(~is_train)[0])):
        out[name] = ([sequences[i] for i in rows], speakers[rows])
    return out
