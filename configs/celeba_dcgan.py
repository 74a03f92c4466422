"""CelebA-64 (centre crop 160, resized to 64×64) with compare_gan v1's DCGAN: batch 64,
101,250 D updates (the paper's CelebA budget), batch-norm momentum 0.9. Prepare the data once:
`gancmp prepare-data celeb_a --data_dir DIR`, then pass `--config.data_dir=DIR`."""

from gancmp.config import base_config


def get_config():
    c = base_config()
    c.method = "NS_GAN"
    c.dataset = "celeb_a"
    c.arch = "dcgan"
    c.z_dim = 64
    c.batch_size = 64
    c.num_d_steps = 101_250
    c.checkpoint_every = 10_125
    c.bn_momentum = 0.9
    return c
