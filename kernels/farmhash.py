"""FarmHash Fingerprint64 (farmhashna::Hash64), the hash TensorFlow uses for hash buckets.

TF's ``categorical_column_with_hash_bucket`` and vocabulary OOV buckets map a string to
``Fingerprint64(utf-8 bytes) mod n`` (integers are hashed as their decimal strings). The fingerprint
is fixed by its published algorithm, so ids are stable across processes, platforms and Python
versions (unlike Python's ``hash``). This module computes it for many strings at once: the strings'
UTF-8 bytes are concatenated into one uint8 buffer with offsets, and one compiled loop hashes them.

The algorithm, on little-endian 64-bit words (all arithmetic modulo 2^64, ``rot`` rotates right):
strings of 0-16, 17-32 and 33-64 bytes are mixed by short fixed formulas; longer strings run a
64-byte-block loop over a 56-byte state and finish on the last 64 bytes. The constants k0, k1, k2
and the formulas are those of Google's FarmHash (farmhashna), reimplemented here and checked against
TensorFlow's own fingerprints (tests/data/tf_hash_buckets.json).
"""

import numpy as np

from ._jit import kernel_jit

K0 = np.uint64(0xC3A5C85C97CB3127)
K1 = np.uint64(0xB492B66FBE98F273)
K2 = np.uint64(0x9AE16A3B2F90404F)


@kernel_jit
def _fetch(buf, i, nbytes):
    """Little-endian unsigned integer of ``nbytes`` bytes at buf[i] (4 or 8)."""
    v = np.uint64(0)
    for k in range(nbytes):
        v |= np.uint64(buf[i + k]) << np.uint64(8 * k)
    return v


@kernel_jit
def _fetch64(buf, i):
    return _fetch(buf, i, 8)


@kernel_jit
def _fetch32(buf, i):
    return _fetch(buf, i, 4)


@kernel_jit
def _rot(v, shift):
    return (v >> np.uint64(shift)) | (v << np.uint64(64 - shift))


@kernel_jit
def _shift_mix(v):
    return v ^ (v >> np.uint64(47))


@kernel_jit
def _hash_len16(u, v, mul):
    a = (u ^ v) * mul
    a ^= a >> np.uint64(47)
    b = (v ^ a) * mul
    b ^= b >> np.uint64(47)
    return b * mul


@kernel_jit
def _hash_len0to16(buf, s, n):
    if n >= 8:
        mul = K2 + np.uint64(n) * np.uint64(2)
        a = _fetch64(buf, s) + K2
        b = _fetch64(buf, s + n - 8)
        c = _rot(b, 37) * mul + a
        d = (_rot(a, 25) + b) * mul
        return _hash_len16(c, d, mul)
    if n >= 4:
        mul = K2 + np.uint64(n) * np.uint64(2)
        a = _fetch32(buf, s)
        return _hash_len16(np.uint64(n) + (a << np.uint64(3)), _fetch32(buf, s + n - 4), mul)
    if n > 0:
        a = np.uint64(buf[s])
        b = np.uint64(buf[s + (n >> 1)])
        c = np.uint64(buf[s + n - 1])
        y = (a + (b << np.uint64(8))) & np.uint64(0xFFFFFFFF)
        z = (np.uint64(n) + (c << np.uint64(2))) & np.uint64(0xFFFFFFFF)
        return _shift_mix(y * K2 ^ z * K0) * K2
    return K2


@kernel_jit
def _hash_len17to32(buf, s, n):
    mul = K2 + np.uint64(n) * np.uint64(2)
    a = _fetch64(buf, s) * K1
    b = _fetch64(buf, s + 8)
    c = _fetch64(buf, s + n - 8) * mul
    d = _fetch64(buf, s + n - 16) * K2
    return _hash_len16(_rot(a + b, 43) + _rot(c, 30) + d, a + _rot(b + K2, 18) + c, mul)


@kernel_jit
def _hash_len33to64(buf, s, n):
    mul = K2 + np.uint64(n) * np.uint64(2)
    a = _fetch64(buf, s) * K2
    b = _fetch64(buf, s + 8)
    c = _fetch64(buf, s + n - 8) * mul
    d = _fetch64(buf, s + n - 16) * K2
    y = _rot(a + b, 43) + _rot(c, 30) + d
    z = _hash_len16(y, a + _rot(b + K2, 18) + c, mul)
    e = _fetch64(buf, s + 16) * mul
    f = _fetch64(buf, s + 24)
    g = (y + _fetch64(buf, s + n - 32)) * mul
    h = (z + _fetch64(buf, s + n - 24)) * mul
    return _hash_len16(_rot(e + f, 43) + _rot(g, 30) + h, e + _rot(f + a, 18) + g, mul)


@kernel_jit
def _weak_hash32(buf, s, a, b):
    """A 16-byte hash of 32 bytes at s and two seeds: returns (first, second)."""
    w, x, y, z = _fetch64(buf, s), _fetch64(buf, s + 8), _fetch64(buf, s + 16), _fetch64(buf, s + 24)
    a += w
    b = _rot(b + a + z, 21)
    c = a
    a += x
    a += y
    b += _rot(a, 44)
    return a + z, b + c


@kernel_jit
def _hash_long(buf, s, n):
    """Strings over 64 bytes: 64-byte blocks through a 56-byte state (x, y, z, v, w)."""
    seed = np.uint64(81)
    x = seed
    y = seed * K1 + np.uint64(113)
    z = _shift_mix(y * K2 + np.uint64(113)) * K2
    v0, v1, w0, w1 = np.uint64(0), np.uint64(0), np.uint64(0), np.uint64(0)
    x = x * K2 + _fetch64(buf, s)
    end = s + ((n - 1) // 64) * 64
    last64 = s + n - 64
    p = s
    while True:
        x = _rot(x + y + v0 + _fetch64(buf, p + 8), 37) * K1
        y = _rot(y + v1 + _fetch64(buf, p + 48), 42) * K1
        x ^= w1
        y += v0 + _fetch64(buf, p + 40)
        z = _rot(z + w0, 33) * K1
        v0, v1 = _weak_hash32(buf, p, v1 * K1, x + w0)
        w0, w1 = _weak_hash32(buf, p + 32, z + w1, y + _fetch64(buf, p + 16))
        x, z = z, x
        p += 64
        if p == end:
            break
    mul = K1 + ((z & np.uint64(0xFF)) << np.uint64(1))
    p = last64
    w0 += np.uint64((n - 1) & 63)
    v0 += w0
    w0 += v0
    x = _rot(x + y + v0 + _fetch64(buf, p + 8), 37) * mul
    y = _rot(y + v1 + _fetch64(buf, p + 48), 42) * mul
    x ^= w1 * np.uint64(9)
    y += v0 * np.uint64(9) + _fetch64(buf, p + 40)
    z = _rot(z + w0, 33) * mul
    v0, v1 = _weak_hash32(buf, p, v1 * mul, x + w0)
    w0, w1 = _weak_hash32(buf, p + 32, z + w1, y + _fetch64(buf, p + 16))
    x, z = z, x
    return _hash_len16(_hash_len16(v0, w0, mul) + _shift_mix(y) * K0 + z, _hash_len16(v1, w1, mul) + x, mul)


@kernel_jit
def fingerprint_spans(buf, starts, ends):
    """Fingerprint64 of each byte span buf[starts[i]:ends[i]]: uint64 [N]."""
    out = np.empty(len(starts), dtype=np.uint64)
    for i in range(len(starts)):
        s, n = starts[i], ends[i] - starts[i]
        if n <= 16:
            out[i] = _hash_len0to16(buf, s, n)
        elif n <= 32:
            out[i] = _hash_len17to32(buf, s, n)
        elif n <= 64:
            out[i] = _hash_len33to64(buf, s, n)
        else:
            out[i] = _hash_long(buf, s, n)
    return out


def pack(strings):
    """UTF-8 bytes of ``strings`` (str or bytes) in one uint8 buffer, with int64 offsets [n + 1]."""
    encoded = [s if isinstance(s, bytes) else str(s).encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)
    return buf, offsets


def fingerprint64(strings):
    """FarmHash Fingerprint64 of each string (str is hashed as UTF-8): uint64 array [n]."""
    buf, offsets = pack(strings)
    return fingerprint_spans(np.ascontiguousarray(buf), offsets[:-1], offsets[1:])
