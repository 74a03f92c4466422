"""The paper's MNIST setting: InfoGAN architecture, batch 64, 15,625 D updates (20 epochs)."""

from gancmp.config import base_config


def get_config():
    c = base_config()
    c.method = "NS_GAN"
    c.dataset = "mnist"
    c.arch = "infogan"
    c.z_dim = 64
    c.batch_size = 64
    c.num_d_steps = 15_625
    # every 4 "epochs" of 50,000 images at batch 64, a divisor of the budget; the paper's sweep
    # (configs/sweeps/lucic2018.py) checkpoints every 5 epochs as compare_gan v1: 3,906
    c.checkpoint_every = 3_125
    return c
