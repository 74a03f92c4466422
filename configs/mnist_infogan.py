"""The paper's MNIST setting: InfoGAN architecture, batch 64, 15,625 D updates (20 epochs)."""

from gancmp.train.config import base_config


def get_config():
    c = base_config()
    c.method = "NS_GAN"
    c.dataset = "mnist"
    c.arch = "infogan"
    c.z_dim = 64
    c.batch_size = 64
    c.num_d_steps = 15_625
    c.checkpoint_every = 3_125  # every 5 "epochs" of 50,000 images at batch 64
    return c
