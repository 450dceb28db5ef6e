"""minilib: why conditional GANs ignore their noise, and which losses fix it.

The library behind the notebook course: losses of MR-GAN / MSGAN / PresGAN (``minilib.losses``),
objectives and one training loop (``minilib.objectives``, ``minilib.train``), toy worlds with known
truth, image networks and data, HMC, metrics, plots and widgets. See README.md for the course map.
"""
__version__ = "0.1.0"
