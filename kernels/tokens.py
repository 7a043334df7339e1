"""String tokens -> ids for many tokens at once: TF's vocabulary lookup and hash buckets, in Numba.

A batch of N tokens is one uint8 buffer of UTF-8 bytes; token i is ``buf[starts[i]:ends[i]]``. A
Python list of str becomes such a buffer in one step, ``"\\x00".join(tokens).encode("utf-8")``, and
:func:`split_joined` finds the spans. In UTF-8 a NUL byte encodes U+0000 and nothing else, so the
split is exact unless a token contains U+0000; then the count differs, ``split_joined`` says so and
the caller packs the tokens one by one. :func:`farmhash.fingerprint_spans` gives each token's FarmHash Fingerprint64
(:mod:`farmhash`); :func:`hash_bucket_ids` its bucket, ``fingerprint % num_buckets``.

Vocabulary table (:func:`build_table`, :func:`vocabulary_ids`): open addressing with linear probing
over a power-of-two number of slots, keyed by the entries' fingerprints. A slot is one row
(vocabulary index, fingerprint, key start, key end), so a probe reads one cache line::

    slot_0 = fingerprint & (capacity - 1),   slot_{j+1} = (slot_j + 1) & (capacity - 1)

Two different strings may share a fingerprint, so a slot whose fingerprint matches also compares the
bytes: a lookup is exact. The table is at most half full, so a probe ends after a few slots. Ids
follow TF: out-of-vocabulary tokens go to ``vocabulary_size + fingerprint % num_oov_buckets``.
"""

import numpy as np

from ._jit import kernel_jit


@kernel_jit
def split_joined(buf, count):
    """Spans of ``count`` tokens joined by NUL bytes -> (starts, ends, ok).

    ``ok`` is False when the buffer holds another number of tokens (some token contains a NUL)."""
    starts = np.empty(count, dtype=np.int64)
    ends = np.empty(count, dtype=np.int64)
    k, s = 0, 0
    for i in range(len(buf) + 1):
        if i == len(buf) or buf[i] == 0:          # end of token k
            if k == count:
                return starts, ends, False
            starts[k], ends[k] = s, i
            k += 1
            s = i + 1
    return starts, ends, k == count


@kernel_jit
def hash_bucket_ids(fingerprints, padding, num_buckets):
    """Bucket of each token, fingerprint mod num_buckets (unsigned); -1 where padding: int64 [N]."""
    out = np.empty(len(fingerprints), dtype=np.int64)
    n = np.uint64(num_buckets)
    for i in range(len(fingerprints)):
        out[i] = -1 if padding[i] else np.int64(fingerprints[i] % n)
    return out


@kernel_jit
def build_table(keys, starts, ends, fingerprints, index):
    """The vocabulary table: rows [capacity, 4] of (vocabulary index, fingerprint bits, key start,
    key end), index -1 where empty; key e is keys[starts[e]:ends[e]], its vocabulary index index[e].
    capacity is a power of two >= 2 * entries."""
    capacity = 16
    while capacity < 2 * len(starts):
        capacity *= 2
    table = np.full((capacity, 4), -1, dtype=np.int64)
    for e in range(len(starts)):
        fp = np.int64(fingerprints[e])                  # the same 64 bits, as a signed integer
        j = fp & (capacity - 1)
        while table[j, 0] >= 0:                         # linear probing to the next empty slot
            j = (j + 1) & (capacity - 1)
        table[j, 0], table[j, 1], table[j, 2], table[j, 3] = index[e], fp, starts[e], ends[e]
    return table


@kernel_jit
def _same_bytes(a, a_start, a_end, b, b_start, b_end):
    if a_end - a_start != b_end - b_start:
        return False
    for i in range(a_end - a_start):
        if a[a_start + i] != b[b_start + i]:
            return False
    return True


@kernel_jit
def vocabulary_ids(buf, starts, ends, fingerprints, padding, table, keys, vocabulary_size, num_oov_buckets,
                   default_value):
    """Id of each token: its vocabulary index when found; else vocabulary_size + fingerprint mod
    num_oov_buckets (unsigned), or default_value when there are no OOV buckets; -1 where padding."""
    out = np.empty(len(starts), dtype=np.int64)
    capacity = table.shape[0]
    for i in range(len(starts)):
        if padding[i]:
            out[i] = -1
            continue
        fp = np.int64(fingerprints[i])
        j = fp & (capacity - 1)
        found = -1
        while table[j, 0] >= 0:                         # probe until an empty slot: not in the table
            if table[j, 1] == fp and _same_bytes(buf, starts[i], ends[i], keys, table[j, 2], table[j, 3]):
                found = table[j, 0]
                break
            j = (j + 1) & (capacity - 1)
        if found >= 0:
            out[i] = found
        elif num_oov_buckets > 0:
            out[i] = vocabulary_size + np.int64(fingerprints[i] % np.uint64(num_oov_buckets))
        else:
            out[i] = default_value
    return out
