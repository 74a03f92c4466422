"""The paper's convex polygons (triangles, 28×28) with the InfoGAN architecture."""

from gancmp.config import base_config


def get_config():
    c = base_config()
    c.method = "NS_GAN"
    c.dataset = "triangles"
    c.arch = "infogan"
    c.z_dim = 64
    c.batch_size = 64
    c.num_d_steps = 15_625
    c.checkpoint_every = 3_125
    return c
