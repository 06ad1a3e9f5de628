"""R's default random number generators (Mersenne-Twister, normal by inversion, ``rgamma``), for
DESeq2's prior-variance simulation (:func:`gexplain.pipelines.de.deseq2.prior.simulated_prior_variance`).

``set.seed(seed)`` scrambles the seed with R's linear congruential steps into the 624-word
Mersenne-Twister state; uniforms are ``fixup(y * 2^-32)`` of the tempered 32-bit outputs; normals
are R's ``INVERSION``: ``qnorm((floor(2^27 u1) + u2) / 2^27)`` with Wichura's AS 241 (R's
``qnorm``); ``rchisq(df)`` is ``2 * rgamma(df / 2)`` with Ahrens-Dieter GD (shape >= 1) or GS
(shape < 1) and R's ``exp_rand``. The sequence equals R's draw for draw
(``tests/test_deseq2_r_parity.py::test_r_random_numbers``), up to the last bits of ``log``/``sqrt``.
Compiled with numba: the simulation draws 4e6 numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_N = 624
_M = 397
_I2_32M1 = 2.328306437080797e-10
_Q = np.array(
    [
        0.6931471805599453, 0.9333736875190459, 0.9888777961838675, 0.9984959252914960040,
        0.9998292811061389, 0.9999833164100727, 0.9999985508193260, 0.9999998906925558,
        0.9999999924734159, 0.9999999995283275, 0.9999999999728814, 0.9999999999985598,
        0.9999999999999289, 0.9999999999999968, 0.9999999999999999, 1.0000000000000000,
    ]
)  # fmt: skip


def seeded_state(seed: int) -> np.ndarray:
    """The generator state after R's ``set.seed(seed)``: 625 words, position first (dims (625,), uint32)."""
    s = np.uint32(seed & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        for _ in range(50):
            s = np.uint32(np.uint32(69069) * s + np.uint32(1))
        state = np.empty(_N + 1, dtype=np.uint32)
        for j in range(_N + 1):
            s = np.uint32(np.uint32(69069) * s + np.uint32(1))
            state[j] = s
    state[0] = _N  # R's FixupSeeds: position 624, so the first draw regenerates the block
    return state


@njit(cache=True)
def _genrand(state: np.ndarray) -> float:
    mt = state[1:]
    mti = state[0]
    if mti >= _N:
        for kk in range(_N - _M):
            y = (mt[kk] & np.uint32(0x80000000)) | (mt[kk + 1] & np.uint32(0x7FFFFFFF))
            mt[kk] = mt[kk + _M] ^ (y >> np.uint32(1)) ^ (np.uint32(0x9908B0DF) * (y & np.uint32(1)))
        for kk in range(_N - _M, _N - 1):
            y = (mt[kk] & np.uint32(0x80000000)) | (mt[kk + 1] & np.uint32(0x7FFFFFFF))
            mt[kk] = mt[kk + (_M - _N)] ^ (y >> np.uint32(1)) ^ (np.uint32(0x9908B0DF) * (y & np.uint32(1)))
        y = (mt[_N - 1] & np.uint32(0x80000000)) | (mt[0] & np.uint32(0x7FFFFFFF))
        mt[_N - 1] = mt[_M - 1] ^ (y >> np.uint32(1)) ^ (np.uint32(0x9908B0DF) * (y & np.uint32(1)))
        mti = 0
    y = mt[mti]
    state[0] = mti + 1
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return float(y) * 2.3283064365386963e-10


@njit(cache=True)
def unif_rand(state: np.ndarray) -> float:
    """R's ``unif_rand()``: a uniform in (0, 1)."""
    v = _genrand(state)
    if v <= 0.0:
        return 0.5 * _I2_32M1
    if 1.0 - v <= 0.0:
        return 1.0 - 0.5 * _I2_32M1
    return v


@njit(cache=True)
def qnorm(p: float) -> float:
    """Standard normal quantile, Wichura's AS 241 (R's ``qnorm5`` for lower tail, non-log p)."""
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r
                   + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r
                + 133.14166789178437745) * r + 3.387132872796366608)  # fmt: skip
        den = (((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) * r
                   + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r
                + 42.313330701600911252) * r + 1.0)  # fmt: skip
        return q * num / den
    r = min(p, 1.0 - p)
    r = np.sqrt(-np.log(r))
    if r <= 5.0:
        r -= 1.6
        val = (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r + 0.24178072517745061177) * r
                   + 1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r
                + 4.6303378461565452959) * r + 1.42343711074968357734) / (
            ((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r
                 + 0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r
             + 2.05319162663775882187) * r + 1.0)  # fmt: skip
    else:
        r -= 5.0
        val = (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r
                   + 0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r
                + 5.4637849111641143699) * r + 6.6579046435011037772) / (
            ((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r
                 + 7.868691311456132591e-4) * r + 0.0148753612908506148525) * r + 0.13692988092273580531) * r
             + 0.59983220655588793769) * r + 1.0)  # fmt: skip
    return -val if q < 0.0 else val


@njit(cache=True)
def norm_rand(state: np.ndarray) -> float:
    """R's ``norm_rand()`` with ``normal.kind = "Inversion"``."""
    big = 134217728.0
    u = unif_rand(state)
    u = float(int(big * u)) + unif_rand(state)
    return qnorm(u / big)


@njit(cache=True)
def exp_rand(state: np.ndarray, q: np.ndarray) -> float:
    """R's ``exp_rand()`` (Ahrens & Dieter 1972)."""
    a = 0.0
    u = unif_rand(state)
    while u <= 0.0 or u >= 1.0:
        u = unif_rand(state)
    while True:
        u += u
        if u > 1.0:
            break
        a += q[0]
    u -= 1.0
    if u <= q[0]:
        return a + u
    i = 0
    ustar = unif_rand(state)
    umin = ustar
    while True:
        ustar = unif_rand(state)
        if umin > ustar:
            umin = ustar
        i += 1
        if u <= q[i]:
            break
    return a + umin * q[0]


@njit(cache=True)
def _q_of(s: float, t: float, v: float, q0: float, s2: float) -> float:
    if abs(v) <= 0.25:
        return q0 + 0.5 * t * t * ((((((0.1233795 * v - 0.1367177) * v + 0.1423657) * v - 0.1662921) * v
                                     + 0.2000062) * v - 0.250003) * v + 0.3333333) * v  # fmt: skip
    return q0 - s * t + 0.25 * t * t + (s2 + s2) * np.log(1.0 + v)


@njit(cache=True)
def rgamma(state: np.ndarray, q: np.ndarray, a: float, scale: float) -> float:
    """R's ``rgamma(1, shape = a, scale = scale)``."""
    if a < 1.0:  # GS algorithm
        e = 1.0 + 0.36787944117144233 * a
        while True:
            p = e * unif_rand(state)
            if p >= 1.0:
                x = -np.log((e - p) / a)
                if exp_rand(state, q) >= (1.0 - a) * np.log(x):
                    break
            else:
                x = np.exp(np.log(p) / a)
                if exp_rand(state, q) >= x:
                    break
        return scale * x
    s2 = a - 0.5
    s = np.sqrt(s2)
    d = 5.656854 - s * 12.0
    t = norm_rand(state)
    x = s + 0.5 * t
    ret = x * x
    if t >= 0.0:
        return scale * ret
    u = unif_rand(state)
    if d * u <= t * t * t:
        return scale * ret
    r = 1.0 / a
    q0 = ((((((2.424e-4 * r + 2.4511e-4) * r - 7.388e-5) * r + 0.00144121) * r + 0.00801191) * r
           + 0.02083148) * r + 0.04166669) * r  # fmt: skip
    if a <= 3.686:
        b = 0.463 + s + 0.178 * s2
        si = 1.235
        c = 0.195 / s - 0.079 + 0.16 * s
    elif a <= 13.022:
        b = 1.654 + 0.0076 * s2
        si = 1.68 / s + 0.275
        c = 0.062 / s + 0.024
    else:
        b = 1.77
        si = 0.75
        c = 0.1515 / s
    if x > 0.0:
        v = t / (s + s)
        qq = _q_of(s, t, v, q0, s2)
        if np.log(1.0 - u) <= qq:
            return scale * ret
    while True:
        e = exp_rand(state, q)
        u = unif_rand(state)
        u = u + u - 1.0
        t = b - si * e if u < 0.0 else b + si * e
        if t >= -0.71874483771719:
            v = t / (s + s)
            qq = _q_of(s, t, v, q0, s2)
            if qq > 0.0:
                w = np.expm1(qq)
                if c * abs(u) <= w * np.exp(e - 0.5 * t * t):
                    break
    x = s + 0.5 * t
    return scale * x * x


@njit(cache=True)
def _fill(state: np.ndarray, q: np.ndarray, df: float, sds: np.ndarray, n: int) -> np.ndarray:
    out = np.empty((sds.size, n))
    for k in range(sds.size):
        for i in range(n):
            out[k, i] = np.log(rgamma(state, q, df / 2.0, 2.0))
        if sds[k] != 0.0:  # R's rnorm returns the mean without drawing when sd is 0
            for i in range(n):
                out[k, i] += sds[k] * norm_rand(state)
    return out


def log_chisq_plus_normal(seed: int, df: float, sds: np.ndarray, n: int) -> np.ndarray:
    """``set.seed(seed)``, then per ``sd``: ``log(rchisq(n, df)) + rnorm(n, 0, sd)``, as R evaluates
    DESeq2's simulation loop. Returns dims (sd, n)."""
    return _fill(seeded_state(seed), _Q, float(df), np.asarray(sds, dtype=np.float64), int(n))


def r_draws(seed: int, df: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``set.seed(seed); rchisq(n, df); rnorm(n)`` (for tests against R)."""
    state = seeded_state(seed)
    chisq = np.array([rgamma(state, _Q, df / 2.0, 2.0) for _ in range(n)])
    norm = np.array([norm_rand(state) for _ in range(n)])
    return chisq, norm
