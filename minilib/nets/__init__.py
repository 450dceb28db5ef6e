"""Image networks of the MR-GAN experiments (Appendix B), each with noise wired in as the paper says.

Every conditional generator ``G(x, z)`` has ``G.noise(n, device, generator)`` returning a tuple of
noise maps, a predictor ``P(x) -> (center, log_dispersion)`` of the same architecture without
noise, and a discriminator ``D(x, y) -> logits``. Defaults are the paper's sizes; pass smaller
widths (and, for pix2pix, ``image_size`` / ``n_down``) for CPU smoke runs.
"""
from .common import LOG_DISPERSION_RANGE, init_weights, predictor_heads
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .glcic import GLCICDiscriminator, GLCICGenerator, GLCICPredictor, hole_boxes
from .pix2pix import PatchDiscriminator, Pix2PixGenerator, Pix2PixPredictor
from .srgan import SRGANDiscriminator, SRGANGenerator, SRGANPredictor

__all__ = [
    "LOG_DISPERSION_RANGE", "init_weights", "predictor_heads",
    "Pix2PixGenerator", "Pix2PixPredictor", "PatchDiscriminator",
    "SRGANGenerator", "SRGANPredictor", "SRGANDiscriminator",
    "GLCICGenerator", "GLCICPredictor", "GLCICDiscriminator", "hole_boxes",
    "DCGANGenerator", "DCGANDiscriminator",
]
