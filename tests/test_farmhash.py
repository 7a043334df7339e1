"""FarmHash Fingerprint64 and hash buckets against TensorFlow's own values and the C++ FarmHash."""

import json
import os

import numpy as np

from minirnn.kernels.farmhash import fingerprint64

DATA = os.path.join(os.path.dirname(__file__), "data")
TF = json.load(open(os.path.join(DATA, "tf_hash_buckets.json"), encoding="utf-8"))


def test_fingerprints_equal_tensorflow():
    expected = [int(h, 16) for h in TF["fingerprint64_strings_hex"]]
    assert [int(v) for v in fingerprint64(TF["strings"])] == expected


def test_bucket_ids_equal_tensorflow_for_strings_and_integers():
    fp_strings = fingerprint64(TF["strings"])
    fp_ints = fingerprint64([str(i) for i in TF["ints"]])        # TF hashes ints as decimal strings
    for n in TF["num_buckets"]:
        assert (fp_strings % np.uint64(n)).tolist() == TF["string_buckets"][str(n)]
        assert (fp_ints % np.uint64(n)).tolist() == TF["int_buckets"][str(n)]


def test_every_length_path_equals_the_cpp_farmhash():
    """Strings of 0..129 bytes and longer (every branch: 0-16, 17-32, 33-64, the 64-byte loop),
    ASCII and multi-byte UTF-8, against pyfarmhash (Google's C++ FarmHash) recorded in tests/data."""
    vectors = json.load(open(os.path.join(DATA, "farmhash_vectors.json"), encoding="utf-8"))["vectors"]
    lengths = {v["utf8_bytes"] for v in vectors}
    assert {0, 16, 17, 32, 33, 64, 65, 128} <= lengths
    got = fingerprint64([v["string"] for v in vectors])
    assert [int(g) for g in got] == [int(v["fingerprint64"]) for v in vectors]


def test_bytes_and_str_agree_and_empty_input():
    assert fingerprint64(["été"])[0] == fingerprint64(["été".encode("utf-8")])[0]
    assert fingerprint64([]).shape == (0,)
