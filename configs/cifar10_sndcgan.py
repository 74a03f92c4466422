"""CIFAR-10 with the SNGAN paper's standard CNN with spectral norm on every D layer: batch 64,
78,125 D updates (100 epochs, the paper's CIFAR budget), batch-norm momentum 0.9 as compare_gan
used for these architectures. Prepare the data once: `gancmp prepare-data cifar10 --data_dir DIR`,
then pass `--config.data_dir=DIR`."""

from gancmp.config import base_config


def get_config():
    c = base_config()
    c.method = "NS_GAN"
    c.dataset = "cifar10"
    c.arch = "sndcgan"
    c.z_dim = 128
    c.batch_size = 64
    c.num_d_steps = 78_125
    c.checkpoint_every = 3_125
    c.bn_momentum = 0.9
    return c
