"""The interactive loss comparison of notebook 04: the batched engine (:mod:`minilib.app.engine`), the view
(:mod:`minilib.app.view`) and the widgets (:mod:`minilib.app.widgets`; ``from minilib.app import LossComparisonApp``)."""


def __getattr__(name: str):  # the widgets import ipywidgets: load them only when asked for
    if name == "LossComparisonApp":
        from .widgets import LossComparisonApp

        return LossComparisonApp
    raise AttributeError(name)
