"""Metrics: exact toy metrics (modes, conditional Wasserstein, std ratio), image diversity (LPIPS / pixel
protocols), mode coverage (NDB / JSD), Fréchet distances, and the digit classifier with StackedMNIST mode counts.

``minilib.metrics.<name>`` works for every public metric; the submodules hold the code.
"""
from .toy import *  # noqa: F401,F403
from .diversity import *  # noqa: F401,F403
from .ndb import *  # noqa: F401,F403
from .frechet import *  # noqa: F401,F403
from .digits import *  # noqa: F401,F403
from . import digits, diversity, frechet, ndb, toy  # noqa: F401

__all__ = [*toy.__all__, *diversity.__all__, *ndb.__all__, *frechet.__all__, *digits.__all__]
