"""NS-GAN on the ring of 8 Gaussians with small MLPs: an offline trial of about a minute on a
2-core CPU that covers most of the ring."""

from gancmp.config import base_config


def get_config():
    c = base_config()
    c.method = "NS_GAN"
    c.dataset = "ring8"
    c.arch = "mlp"
    c.z_dim = 16
    c.batch_size = 256
    c.num_d_steps = 4_000
    c.lr = 3e-3
    c.beta1 = 0.5
    # Batch norm in D normalises the real and the fake batch separately, which hides where the
    # points are: on 2-D data a D with batch norm lets G's ring drift off the data's centre.
    c.d_batch_norm = False
    c.log_every = 200
    c.checkpoint_every = 1_000
    return c
