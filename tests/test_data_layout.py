"""The on-device layout of image sets: rows of H·W·C bytes, the bytes each array takes on the
devices, and the same batches as the image layout."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gancmp.data import layout
from gancmp.data.source import DataSource
from gancmp.runtime import put_replicated
from gancmp.train import step as step_lib
from tests.helpers import tiny_image_data


def test_rows_on_the_devices_take_exactly_their_bytes():
    # what `group.create_group` puts on the devices: the rows, replicated over the mesh
    images = tiny_image_data(n=600).arrays["train"]  # [600, 28, 28, 1] uint8
    mesh = step_lib.make_mesh(4)
    train = put_replicated(layout.device_layout({"train": images}),
                           NamedSharding(mesh, P()))["train"]
    assert train.shape == (600, 784) and train.dtype == jnp.uint8
    assert train.nbytes == 600 * 784  # 470,400 bytes, no padding
    shards = train.addressable_shards
    assert len(shards) == 4 and all(s.data.nbytes == 600 * 784 for s in shards)  # replicated
    assert layout.device_layout({"z": np.zeros((5, 2))})["z"].shape == (5, 2)  # 2-D: unchanged


def test_tpu_tiles_on_paper():
    # uint8 tiles of (32, 128) over the two minor dimensions
    assert layout.tpu_tiled_bytes((60_000, 28, 28, 1)) == 60_000 * 28 * 32 * 128  # 6.9 GB
    assert layout.tpu_tiled_bytes((60_000, 784)) == 60_000 * 896  # 53.8 MB
    assert layout.tpu_tiled_bytes((162_770, 64, 64, 3)) == 162_770 * 64 * 64 * 128  # 85 GB
    assert layout.tpu_tiled_bytes((162_770, 12_288)) == 162_784 * 12_288  # rows pad to 32
    assert layout.tpu_tiled_bytes((50_000, 3_072)) == 50_016 * 3_072  # CIFAR-10: rows only


def test_rows_give_the_same_batches_as_images():
    images = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    source = DataSource("x", (8, 8, 3), "array")
    rows = layout.device_layout({"train": images})
    assert rows["train"].shape == (64, 192) and np.shares_memory(rows["train"], images)
    key, positions = jax.random.key(3), jnp.arange(16)
    a = source.batch({"train": jnp.asarray(images)}, key, jnp.int32(5), 16, positions)
    b = source.batch({"train": jnp.asarray(rows["train"])}, key, jnp.int32(5), 16, positions)
    assert b.shape == (16, 8, 8, 3) and np.array_equal(np.asarray(a), np.asarray(b))
