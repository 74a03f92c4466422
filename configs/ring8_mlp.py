"""NS-GAN on the ring of 8 Gaussians with small MLPs: a two-minute offline trial on a CPU."""

from gancmp.train.setup import base_config


def get_config():
    c = base_config()
    c.method = "NS_GAN"
    c.dataset = "ring8"
    c.arch = "mlp"
    c.z_dim = 16
    c.batch_size = 256
    c.num_d_steps = 4_000
    c.lr = 1e-3
    c.beta1 = 0.5
    c.log_every = 200
    c.checkpoint_every = 1_000
    return c
