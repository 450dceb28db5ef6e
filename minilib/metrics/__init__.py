"""Metrics: exact toy metrics (modes, conditional Wasserstein, std ratio) and image metrics
(LPIPS diversity protocols, NDB/JSD, Fréchet distances).

``minilib.metrics.<name>`` works for every public metric; the two submodules hold the code.
"""
from .toy import *  # noqa: F401,F403
from .images import *  # noqa: F401,F403
from . import toy, images  # noqa: F401

__all__ = [*toy.__all__, *images.__all__]
