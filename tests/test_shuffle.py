"""The per-index epoch shuffle: a bijection for every n, statistically a fresh random order, and
through `DataSource.batch` an epoch that visits every example exactly once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancmp.data import shuffle
from gancmp.data import source as data_source


@pytest.mark.parametrize("n", [1, 2, 3, 10, 97, 1024, 60_000])
def test_is_a_permutation_of_range_n(n):
    for seed in (0, 1):
        p = np.asarray(shuffle.permuted_index(jax.random.key(seed), jnp.arange(n), n))
        assert p.dtype == np.int32
        np.testing.assert_array_equal(np.sort(p), np.arange(n))


def test_any_index_shape_and_jit():
    key, n = jax.random.key(5), 1000
    whole = np.asarray(shuffle.permuted_index(key, jnp.arange(n), n))
    i = jnp.array([[3, 999], [0, 500]])
    got = jax.jit(shuffle.permuted_index, static_argnums=2)(key, i, n)
    np.testing.assert_array_equal(got, whole[np.asarray(i)])


def test_order_looks_random():
    n = 60_000
    p = np.asarray(shuffle.permuted_index(jax.random.key(0), jnp.arange(n), n))
    # no trace of the input order: correlation ~ N(0, 1/n), sd 0.004
    assert abs(np.corrcoef(np.arange(n), p)[0, 1]) < 0.02
    # a batch of consecutive positions is spread over the set, not a run of neighbours
    assert np.mean(np.abs(np.diff(p)) == 1) < 1e-3
    assert np.ptp(p[:64]) > n / 2
    # fixed points ~ Poisson(1)
    assert np.sum(p == np.arange(n)) < 8
    # another key, an unrelated order
    q = np.asarray(shuffle.permuted_index(jax.random.key(1), jnp.arange(n), n))
    assert abs(np.corrcoef(p, q)[0, 1]) < 0.02


def test_each_position_is_uniform_over_keys_and_pairs_are_unordered():
    n, keys = 10, 4000
    f = jax.jit(jax.vmap(lambda k: shuffle.permuted_index(k, jnp.arange(n), n)))
    p = np.asarray(f(jax.random.split(jax.random.key(0), keys)))  # [keys, n]
    for pos in (0, 7):
        counts = np.bincount(p[:, pos], minlength=n)
        chi2 = np.sum((counts - keys / n) ** 2 / (keys / n))
        assert chi2 < 33.7, (pos, counts)  # 9 d.o.f., p = 1e-4
    # Pr(π(0) < π(1)) = 1/2: sd 0.008 over 4000 keys
    assert abs(np.mean(p[:, 0] < p[:, 1]) - 0.5) < 0.04


def test_rejects_n_out_of_range():
    with pytest.raises(ValueError, match="n must be"):
        shuffle.permuted_index(jax.random.key(0), jnp.arange(1), 0)


def test_an_epoch_of_batches_visits_every_example_once():
    n, batch = 12, 4  # 3 batches per epoch
    ds = data_source.DataSource("toy", (1,), "array")
    arrays = {"train": jnp.arange(n, dtype=jnp.float32)[:, None]}
    key, pos = jax.random.key(2), jnp.arange(batch)

    def epoch(e):
        xs = [ds.batch(arrays, key, jnp.int32(3 * e + s), batch, pos) for s in range(3)]
        return np.concatenate([np.asarray(x)[:, 0] for x in xs]).astype(int)

    first, second = epoch(0), epoch(1)
    np.testing.assert_array_equal(np.sort(first), np.arange(n))
    np.testing.assert_array_equal(np.sort(second), np.arange(n))
    assert not np.array_equal(first, second)  # reshuffled every epoch
    # a device's half of the global batch is that half of the same global batch
    half = ds.batch(arrays, key, jnp.int32(1), batch, jnp.arange(2, 4))
    np.testing.assert_array_equal(np.asarray(half)[:, 0], first[6:8])
