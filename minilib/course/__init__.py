"""Helpers that serve one notebook each, named by what they teach (the library's top floor, beside the app).

* :mod:`~minilib.course.loss_mismatch`, :mod:`~minilib.course.bias_variance` — notebook 01.
* :mod:`~minilib.course.realism_game` — the human real-or-fake protocol (notebooks 07, 12).
* :mod:`~minilib.course.image_notebooks` — notebooks 08-10 (train / reuse runs, paper figures, scores).
* :mod:`~minilib.course.digit_completion` — notebook 12 (and its reference generator in 07).
"""
