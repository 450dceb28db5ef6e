"""Experiments: the runs the notebooks and the command line make from the core and the parts.

* :mod:`~minilib.experiments.toys` — toy runs (``run_toy``), regimes, caching, ``reproduce toy``.
* :mod:`~minilib.experiments.image_tasks` — the image tasks (one :class:`TaskSpec` entry each) and ``build``;
  :mod:`~minilib.experiments.image_train` — ``python -m minilib train``; :mod:`~minilib.experiments.runs` — the
  run-folder format; :mod:`~minilib.experiments.evaluate` — ``python -m minilib evaluate``;
  :mod:`~minilib.experiments.results` — the papers' tables beside ours; :mod:`~minilib.experiments.distributed`.
* :mod:`~minilib.experiments.presgan_runs` — PresGAN's stacked digits, ring and log-likelihoods.
* :mod:`~minilib.experiments.bench` — ``bench toy|image|hmc``; :mod:`~minilib.experiments.parallel` — runs in processes.
"""
