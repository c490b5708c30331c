"""Integer-only entropy coding of the quantized parameters.

The payload is one binary adaptive range coder stream (the LZMA coder, with
15-bit probabilities adapted at two rates, as in VVC). From format version 2
the rates warm up with the number of bits a context has coded (1, 2, 3, ...
up to the two target rates, as AV1's symbol counters do), so that a context
learns its first bits quickly: in files of a few kilobytes most contexts see
only tens of bits. Every signed
integer is binarized (zero flag, sign, unary magnitude bins, then an
exp-Golomb escape in bypass bits) and each bin is coded with a context-chosen
adaptive probability. Everything is integer arithmetic, so encoder and decoder
compute identical probabilities on every machine.

Order of the stream (``spec/decoding.md`` section "Entropy decoding"):

1. the network parameters, layer by layer, weights then biases;
2. the latent grids in reverse order (last grid first), each in raster
   order. A latent's contexts use its causal neighbours (left, top-left, top,
   top-right) and its parent: the co-located value of the next grid when
   that grid is half as large (rounded up) in both directions.

Public entry points: :func:`encode_payload` and :func:`decode_payload`.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import njit
from .format import FORMAT_VERSION

PROB_BITS = 15
PROB_ONE = 1 << PROB_BITS
#: Target adaptation rates (shifts) of the two probabilities of a context.
RATE_FAST = 3
RATE_SLOW = 7
TOP = 1 << 24
#: Coded-bit count at which a context's counter stops.
COUNT_MAX = 255
#: Adaptation per format version: (initial count, fast rate, slow rate).
#: Version 1 had no warm-up: a saturated counter makes the rates the targets.
ADAPTATION = {1: (COUNT_MAX, 4, 7), 2: (0, RATE_FAST, RATE_SLOW), 3: (0, RATE_FAST, RATE_SLOW),
              4: (0, RATE_FAST, RATE_SLOW), 5: (0, RATE_FAST, RATE_SLOW)}
#: Largest Rice parameter of a parameter group (format version 3 on).
RICE_MAX = 7
#: Warm-up rate after n coded bits: the bit length of n + 1 (1, 2, 2, 3, 3,
#: 3, 3, 4, ...), before the cap at the context's target rate.
WARM_RATE = np.array([(n + 1).bit_length() for n in range(COUNT_MAX + 1)], dtype=np.int64)

# Binarization of network parameters: one zero flag, WEIGHT_UNARY magnitude
# bins, exp-Golomb escape.
WEIGHT_UNARY = 8
WCTX = 1 + WEIGHT_UNARY
# Binarization of latents.
LAT_UNARY = 14
L_ZERO = 0  # 8 contexts: 4 neighbourhood classes x parent nonzero
L_SIGN = 8  # 9 contexts: sign(left) x sign(top)
L_MAG = 17  # LAT_UNARY bins x 3 neighbourhood classes
LCTX = L_MAG + LAT_UNARY * 3
#: Longest exp-Golomb prefix the decoder accepts (values up to 2**24).
EG_MAX_PREFIX = 24

OK = 0
ERR_OVERFLOW = 1  # a value's escape code is longer than EG_MAX_PREFIX


# ---------------------------------------------------------------------------
# Range coder primitives. Encoder state ``st``: int64[5] =
# (low, range, cache, cache_size, out_pos). Decoder state: int64[3] =
# (code, range, in_pos).


@njit
def _enc_init(st):
    st[0] = 0
    st[1] = 0xFFFFFFFF
    st[2] = 0
    st[3] = 1
    st[4] = 0


@njit
def _shift_low(st, out):
    low = st[0]
    if low < 0xFF000000 or low >= 0x100000000:
        carry = low >> 32
        temp = st[2]
        while True:
            out[st[4]] = (temp + carry) & 0xFF
            st[4] += 1
            temp = 0xFF
            st[3] -= 1
            if st[3] == 0:
                break
        st[2] = (low >> 24) & 0xFF
    st[3] += 1
    st[0] = (low & 0x00FFFFFF) << 8


# Context state ``probs``: int64[n_contexts, 5] = (fast probability, slow
# probability, coded-bit count, fast target rate, slow target rate); the
# probabilities are those of a 0 bit, in units of 2^-15.


def new_probs(n: int, version: int = FORMAT_VERSION) -> np.ndarray:
    """Fresh state of ``n`` contexts for the given format version."""
    probs = np.empty((max(n, 1), 5), dtype=np.int64)
    probs[:, :2] = PROB_ONE // 2
    probs[:, 2:] = ADAPTATION[version]
    return probs


#: -log2(p / PROB_ONE) for every 15-bit probability p, so that the rate
#: models look costs up instead of calling log2 per bit (the values are those
#: of ``math.log2``; index 0 is never used).
_NEG_LOG2 = np.array([0.0] + [-math.log2(p / PROB_ONE) for p in range(1, PROB_ONE + 1)])


@njit
def _bit_cost(probs, ctx, bit):
    """Ideal code length of ``bit`` in context ``ctx`` (``probs`` unchanged)."""
    p0 = (probs[ctx, 0] + probs[ctx, 1]) >> 1
    p = p0 if bit == 0 else PROB_ONE - p0
    return _NEG_LOG2[p]


#: Fresh contexts of the unary bins of a Rice code (see :func:`_rice_cost`).
_FRESH_RICE = new_probs(WEIGHT_UNARY)


@njit
def _adapt(probs, ctx, bit):
    """Move context ``ctx`` towards ``bit`` (the same rule in coder and rate model)."""
    n = probs[ctx, 2]
    w = WARM_RATE[n]
    rf = min(w, probs[ctx, 3])
    rs = min(w, probs[ctx, 4])
    if n < COUNT_MAX:
        probs[ctx, 2] = n + 1
    if bit == 0:
        probs[ctx, 0] += (PROB_ONE - probs[ctx, 0]) >> rf
        probs[ctx, 1] += (PROB_ONE - probs[ctx, 1]) >> rs
    else:
        probs[ctx, 0] -= probs[ctx, 0] >> rf
        probs[ctx, 1] -= probs[ctx, 1] >> rs


@njit
def _enc_bit(st, out, probs, ctx, bit):
    p0 = (probs[ctx, 0] + probs[ctx, 1]) >> 1
    bound = (st[1] >> PROB_BITS) * p0
    if bit == 0:
        st[1] = bound
    else:
        st[0] += bound
        st[1] -= bound
    _adapt(probs, ctx, bit)
    while st[1] < TOP:
        st[1] <<= 8
        _shift_low(st, out)


@njit
def _enc_bypass(st, out, bit):
    half = st[1] >> 1
    if bit == 0:
        st[1] = half
    else:
        st[0] += half
        st[1] -= half
    while st[1] < TOP:
        st[1] <<= 8
        _shift_low(st, out)


@njit
def _enc_flush(st, out):
    for _ in range(5):
        _shift_low(st, out)


@njit
def _dec_byte(st, data):
    pos = st[2]
    st[2] = pos + 1
    if pos < data.shape[0]:
        return np.int64(data[pos])
    return np.int64(0)


@njit
def _dec_init(st, data):
    # The encoder's first byte is always zero and is not stored.
    st[0] = 0
    st[1] = 0xFFFFFFFF
    st[2] = 0
    for _ in range(4):
        st[0] = (st[0] << 8) | _dec_byte(st, data)


@njit
def _dec_bit(st, data, probs, ctx):
    p0 = (probs[ctx, 0] + probs[ctx, 1]) >> 1
    bound = (st[1] >> PROB_BITS) * p0
    if st[0] < bound:
        st[1] = bound
        bit = 0
    else:
        st[0] -= bound
        st[1] -= bound
        bit = 1
    _adapt(probs, ctx, bit)
    while st[1] < TOP:
        st[1] <<= 8
        st[0] = ((st[0] << 8) | _dec_byte(st, data)) & 0xFFFFFFFF
    return bit


@njit
def _dec_bypass(st, data):
    half = st[1] >> 1
    if st[0] < half:
        st[1] = half
        bit = 0
    else:
        st[0] -= half
        st[1] -= half
        bit = 1
    while st[1] < TOP:
        st[1] <<= 8
        st[0] = ((st[0] << 8) | _dec_byte(st, data)) & 0xFFFFFFFF
    return bit


# ---------------------------------------------------------------------------
# Exp-Golomb (order 0) escape in bypass bits.


@njit
def _eg0_bits(v):
    """Bypass bits of :func:`_enc_eg0`'s code of ``v >= 0``."""
    v1 = v + 1
    nb = 0
    while v1 > 1:
        v1 >>= 1
        nb += 1
    return 2 * nb + 1


@njit
def _enc_eg0(st, out, v):
    v1 = v + 1
    nbits = 0
    t = v1
    while t > 1:
        t >>= 1
        nbits += 1
    for _ in range(nbits):
        _enc_bypass(st, out, 1)
    _enc_bypass(st, out, 0)
    for i in range(nbits - 1, -1, -1):
        _enc_bypass(st, out, (v1 >> i) & 1)


@njit
def _dec_eg0(st, data):
    nbits = 0
    while _dec_bypass(st, data) == 1:
        nbits += 1
        if nbits > EG_MAX_PREFIX:
            return -1
    v1 = 1
    for _ in range(nbits):
        v1 = (v1 << 1) | _dec_bypass(st, data)
    return v1 - 1


# ---------------------------------------------------------------------------
# Contexts.


@njit
def _clamp3(v):
    a = abs(v)
    return a if a < 3 else 3


@njit
def _neigh(q, i, j, hk, wk):
    """Return (activity, sign_ctx) of latent (i, j) from causal neighbours."""
    a = q[i, j - 1] if j > 0 else 0
    b = q[i - 1, j] if i > 0 else 0
    c = q[i - 1, j - 1] if (i > 0 and j > 0) else 0
    d = q[i - 1, j + 1] if (i > 0 and j + 1 < wk) else 0
    s = 2 * _clamp3(a) + 2 * _clamp3(b) + _clamp3(c) + _clamp3(d)
    sa = 0 if a == 0 else (1 if a > 0 else 2)
    sb = 0 if b == 0 else (1 if b > 0 else 2)
    return s, sa * 3 + sb


@njit
def _is_parent(dims, lev):
    """True if grid lev + 1 is the next coarser level of grid lev (half size, rounded up)."""
    if lev + 1 >= dims.shape[0]:
        return False
    return dims[lev + 1, 0] == (dims[lev, 0] + 1) // 2 and dims[lev + 1, 1] == (dims[lev, 1] + 1) // 2


@njit
def _zero_class(s):
    if s == 0:
        return 0
    if s <= 2:
        return 1
    if s <= 5:
        return 2
    return 3


@njit
def _mag_class(s):
    if s == 0:
        return 0
    if s <= 4:
        return 1
    return 2


# ---------------------------------------------------------------------------
# Payload kernels.


@njit
def _code_weights_enc(st, out, probs, wq, group_ends, rice):
    start = 0
    for g in range(group_ends.shape[0]):
        base = g * WCTX
        rk = rice[g]  # Rice parameter; -1: unary code (versions 1 and 2)
        for n in range(start, group_ends[g]):
            v = wq[n]
            if v == 0:
                _enc_bit(st, out, probs, base, 0)
                continue
            _enc_bit(st, out, probs, base, 1)
            _enc_bypass(st, out, 1 if v < 0 else 0)
            if rk >= 0:
                # Rice code of |v| - 1: quotient in adaptive unary bins, then
                # the k low bits in bypass bits, most significant first.
                m = abs(v) - 1
                hi = m >> rk
                b = 0
                while b < WEIGHT_UNARY:
                    more = 1 if hi > b else 0
                    _enc_bit(st, out, probs, base + 1 + b, more)
                    if more == 0:
                        break
                    b += 1
                if hi >= WEIGHT_UNARY:
                    _enc_eg0(st, out, hi - WEIGHT_UNARY)
                for i in range(rk - 1, -1, -1):
                    _enc_bypass(st, out, (m >> i) & 1)
                continue
            m = abs(v)
            k = 1
            while k <= WEIGHT_UNARY:
                more = 1 if m > k else 0
                _enc_bit(st, out, probs, base + k, more)
                if more == 0:
                    break
                k += 1
            if m > WEIGHT_UNARY:
                _enc_eg0(st, out, m - WEIGHT_UNARY - 1)
        start = group_ends[g]


@njit
def _code_weights_dec(st, data, probs, wq, group_ends, rice):
    start = 0
    for g in range(group_ends.shape[0]):
        base = g * WCTX
        rk = rice[g]  # Rice parameter; -1: unary code (versions 1 and 2)
        for n in range(start, group_ends[g]):
            if _dec_bit(st, data, probs, base) == 0:
                wq[n] = 0
                continue
            neg = _dec_bypass(st, data)
            if rk >= 0:
                hi = 0
                while hi < WEIGHT_UNARY and _dec_bit(st, data, probs, base + 1 + hi) == 1:
                    hi += 1
                if hi == WEIGHT_UNARY:
                    e = _dec_eg0(st, data)
                    if e < 0:
                        return ERR_OVERFLOW
                    hi = WEIGHT_UNARY + e
                m = hi
                for i in range(rk):
                    m = (m << 1) | _dec_bypass(st, data)
                m += 1
                wq[n] = -m if neg else m
                continue
            m = 1
            while m <= WEIGHT_UNARY:
                if _dec_bit(st, data, probs, base + m) == 0:
                    break
                m += 1
            if m > WEIGHT_UNARY:
                e = _dec_eg0(st, data)
                if e < 0:
                    return ERR_OVERFLOW
                m = WEIGHT_UNARY + 1 + e
            wq[n] = -m if neg else m
        start = group_ends[g]
    return OK


@njit
def _code_latents_enc(st, out, probs, lat, offsets, dims, ctx_base):
    nlev = dims.shape[0]
    for lev in range(nlev - 1, -1, -1):
        hk = dims[lev, 0]
        wk = dims[lev, 1]
        q = lat[offsets[lev] : offsets[lev] + hk * wk].reshape((hk, wk))
        has_parent = _is_parent(dims, lev)
        if has_parent:
            hp = dims[lev + 1, 0]
            wp = dims[lev + 1, 1]
            par = lat[offsets[lev + 1] : offsets[lev + 1] + hp * wp].reshape((hp, wp))
        else:
            par = q  # unused
        base = ctx_base + lev * LCTX
        for i in range(hk):
            for j in range(wk):
                s, sctx = _neigh(q, i, j, hk, wk)
                pnz = 0
                if has_parent and par[i >> 1, j >> 1] != 0:
                    pnz = 1
                v = q[i, j]
                zc = base + L_ZERO + _zero_class(s) * 2 + pnz
                if v == 0:
                    _enc_bit(st, out, probs, zc, 0)
                    continue
                _enc_bit(st, out, probs, zc, 1)
                _enc_bit(st, out, probs, base + L_SIGN + sctx, 1 if v < 0 else 0)
                m = abs(v)
                mc = _mag_class(s)
                k = 1
                while k <= LAT_UNARY:
                    more = 1 if m > k else 0
                    _enc_bit(st, out, probs, base + L_MAG + (k - 1) * 3 + mc, more)
                    if more == 0:
                        break
                    k += 1
                if m > LAT_UNARY:
                    _enc_eg0(st, out, m - LAT_UNARY - 1)


@njit
def _code_latents_dec(st, data, probs, lat, offsets, dims, ctx_base):
    nlev = dims.shape[0]
    for lev in range(nlev - 1, -1, -1):
        hk = dims[lev, 0]
        wk = dims[lev, 1]
        q = lat[offsets[lev] : offsets[lev] + hk * wk].reshape((hk, wk))
        has_parent = _is_parent(dims, lev)
        if has_parent:
            hp = dims[lev + 1, 0]
            wp = dims[lev + 1, 1]
            par = lat[offsets[lev + 1] : offsets[lev + 1] + hp * wp].reshape((hp, wp))
        else:
            par = q
        base = ctx_base + lev * LCTX
        for i in range(hk):
            for j in range(wk):
                s, sctx = _neigh(q, i, j, hk, wk)
                pnz = 0
                if has_parent and par[i >> 1, j >> 1] != 0:
                    pnz = 1
                zc = base + L_ZERO + _zero_class(s) * 2 + pnz
                if _dec_bit(st, data, probs, zc) == 0:
                    q[i, j] = 0
                    continue
                neg = _dec_bit(st, data, probs, base + L_SIGN + sctx)
                mc = _mag_class(s)
                m = 1
                while m <= LAT_UNARY:
                    if _dec_bit(st, data, probs, base + L_MAG + (m - 1) * 3 + mc) == 0:
                        break
                    m += 1
                if m > LAT_UNARY:
                    e = _dec_eg0(st, data)
                    if e < 0:
                        return ERR_OVERFLOW
                    m = LAT_UNARY + 1 + e
                q[i, j] = -m if neg else m
    return OK


@njit
def _encode_all(wq, group_ends, lat, offsets, dims, out, probs, rice):
    st = np.zeros(5, dtype=np.int64)
    _enc_init(st)
    _code_weights_enc(st, out, probs, wq, group_ends, rice)
    _code_latents_enc(st, out, probs, lat, offsets, dims, group_ends.shape[0] * WCTX)
    _enc_flush(st, out)
    return st[4]


@njit
def _decode_all(data, wq, group_ends, lat, offsets, dims, probs, rice):
    st = np.zeros(3, dtype=np.int64)
    _dec_init(st, data)
    err = _code_weights_dec(st, data, probs, wq, group_ends, rice)
    if err != OK:
        return err, st[2]
    err = _code_latents_dec(st, data, probs, lat, offsets, dims, group_ends.shape[0] * WCTX)
    return err, st[2]


def _layout(dims):
    dims = np.asarray(dims, dtype=np.int64).reshape(-1, 2)
    sizes = dims[:, 0] * dims[:, 1]
    offsets = np.zeros(len(dims) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return dims, offsets


def _n_contexts(group_ends, dims) -> int:
    return group_ends.shape[0] * WCTX + dims.shape[0] * LCTX


def _rice_array(rice, n_groups: int, version: int) -> np.ndarray:
    """Per-group Rice parameters for the kernels: -1 (unary code) before version 3."""
    if version < 3:
        return np.full(n_groups, -1, np.int64)
    if rice is None:
        return np.zeros(n_groups, np.int64)
    rice = np.asarray(rice, dtype=np.int64).reshape(-1)
    if rice.size != n_groups or (rice < 0).any() or (rice > RICE_MAX).any():
        raise ValueError(f"need {n_groups} Rice parameters in 0..{RICE_MAX}, got {rice.tolist()}")
    return rice


@njit
def _rice_cost(q, k):
    """Bits of the magnitudes of ``q`` (nonzero values) in a Rice code of
    parameter ``k`` with fresh adaptive unary bins: the ideal code length
    under the coder's own adaptation, bypass bits at one bit each."""
    probs = _FRESH_RICE.copy()
    bits = 0.0
    for n in range(q.shape[0]):
        if q[n] == 0:
            continue
        m = abs(q[n]) - 1
        hi = m >> k
        b = 0
        while b < WEIGHT_UNARY:
            more = 1 if hi > b else 0
            bits += _bit_cost(probs, b, more)
            _adapt(probs, b, more)
            if more == 0:
                break
            b += 1
        if hi >= WEIGHT_UNARY:
            bits += _eg0_bits(hi - WEIGHT_UNARY)
        bits += k
    return bits


def choose_rice(wq: np.ndarray, group_sizes) -> list[int]:
    """The Rice parameter (0..RICE_MAX) that codes each group's magnitudes in
    the fewest bits (format version 3; the zero flags and signs cost the
    same for every parameter)."""
    wq = np.ascontiguousarray(wq, dtype=np.int64)
    out, start = [], 0
    for size in group_sizes:
        q = wq[start:start + size]
        start += size
        costs = [_rice_cost(q, k) for k in range(RICE_MAX + 1)]
        out.append(int(np.argmin(costs)))
    return out


def encode_payload(wq: np.ndarray, group_sizes, lat: np.ndarray, dims,
                   version: int = FORMAT_VERSION, rice=None) -> bytes:
    """Range-code quantized parameters and latents.

    Args:
        wq: int64[P], all quantized network parameters, group after group.
        group_sizes: length of each parameter group (a layer's weights, then
            its biases, layer after layer).
        lat: int64[N], all latent grids, finest level first, each raster order.
        dims: (L, 2) grid heights and widths, finest first.
        version: format version whose probability adaptation and parameter
            code to use.
        rice: from version 3, the Rice parameter of each group (see
            :func:`choose_rice`; zeros if None).
    Returns:
        The coded bytes (leading zero byte and trailing zero bytes stripped).
    """
    wq = np.ascontiguousarray(wq, dtype=np.int64)
    lat = np.ascontiguousarray(lat, dtype=np.int64)
    group_ends = np.cumsum(np.asarray(group_sizes, dtype=np.int64)).astype(np.int64)
    dims, offsets = _layout(dims)
    # Each binary decision costs at most PROB_BITS bits; escapes < 64 bits.
    nsym = wq.size * (WEIGHT_UNARY + 3) + lat.size * (LAT_UNARY + 3)
    cap = 64 + (nsym * PROB_BITS) // 8 + 16 * (wq.size + lat.size)
    out = np.zeros(cap, dtype=np.uint8)
    probs = new_probs(_n_contexts(group_ends, dims), version)
    n = _encode_all(wq, group_ends, lat, offsets, dims, out, probs,
                    _rice_array(rice, group_ends.shape[0], version))
    body = out[1:n].tobytes()  # the first byte is always 0
    return body.rstrip(b"\x00")


def decode_payload(data: bytes, group_sizes, dims, version: int = FORMAT_VERSION, rice=None):
    """Inverse of :func:`encode_payload`. Returns ``(wq, lat, err, consumed)``.

    ``err`` is nonzero when the stream holds an impossible value (a corrupted
    file); ``consumed`` is how many bytes the decoder read (it may exceed
    ``len(data)``: missing bytes read as zero, which is how the encoder's
    stripped trailing zeros come back).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    group_ends = np.cumsum(np.asarray(group_sizes, dtype=np.int64)).astype(np.int64)
    dims, offsets = _layout(dims)
    wq = np.zeros(int(group_ends[-1]) if len(group_ends) else 0, dtype=np.int64)
    lat = np.zeros(int(offsets[-1]), dtype=np.int64)
    probs = new_probs(_n_contexts(group_ends, dims), version)
    err, consumed = _decode_all(buf, wq, group_ends, lat, offsets, dims, probs,
                                _rice_array(rice, group_ends.shape[0], version))
    return wq, lat, int(err), int(consumed)
