"""A keyed pseudo-random permutation of {0, …, n−1}, evaluated one index at a time.

A train step needs only its own batch's positions of the epoch's shuffled order. Drawing the
whole order (`jax.random.permutation`, a sort of n keys) in every step cost 21 ms at n = 60k and
73 ms at n = 200k on a 2-core CPU, more than a quarter-width InfoGAN step itself; evaluating the
permutation at the batch's b positions costs O(b · rounds) integer operations that fuse into one
elementwise kernel, with no loop and no sort.

The permutation is the swap-or-not shuffle (Hoang, Morris and Rogaway, "An Enciphering Scheme
Based on a Card Shuffle", CRYPTO 2012): round r pairs x with k_r − x (mod n) and swaps the pair
when a keyed bit of the pair's larger member is set. Each round is an involution, so the
composition is a bijection of Z_n for any n, with no cycle walking.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def default_rounds(n: int) -> int:
    """Rounds for n items: 3·⌈log2 n⌉ + 8, so that an index is left untouched by every round
    with probability 2^−rounds and the order looks fresh at every n we train on."""
    return 3 * max(1, int(n - 1).bit_length()) + 8


def _mix32(h: Array) -> Array:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 with full avalanche."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def permuted_index(key: Array, i: Array, n: int, rounds: int | None = None) -> Array:
    """π_key(i): the position-i entry of a pseudo-random ordering of {0, …, n−1}.

    Args:
      key: a typed PRNG key; one key, one permutation (e.g. one per epoch).
      i: int array of any shape, values in [0, n).
      n: the number of items (static, 1 ≤ n < 2^31).
      rounds: swap-or-not rounds; `default_rounds(n)` when None.

    Returns:
      int32 array of i's shape: for fixed key, i ↦ π_key(i) is a bijection of [0, n).
    """
    if not 1 <= n < 2**31:
        raise ValueError(f"n must be in [1, 2^31), got {n}")
    rounds = default_rounds(n) if rounds is None else rounds
    words = jax.random.bits(key, (rounds, 2), jnp.uint32)
    # Round keys k_r uniform on [0, n) up to a modulo bias below n / 2^32.
    k = (words[:, 0] % np.uint32(n)).astype(jnp.int32)
    x = jnp.asarray(i, jnp.int32)
    for r in range(rounds):
        partner = k[r] - x
        partner = jnp.where(partner < 0, partner + n, partner)
        larger = jnp.maximum(x, partner).astype(jnp.uint32)
        swap = (_mix32(larger ^ words[r, 1]) >> 31) == 1
        x = jnp.where(swap, partner, x)
    return x
