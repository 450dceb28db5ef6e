"""The MR-GAN paper's human real-or-fake protocol as an ipywidgets game (notebooks 07 and 12).

Human protocol (MR-GAN Sec. 5.2, after Zhu et al. 2017): real and generated images are shown one at
a time, for 0.5 s (Pix2Pix) or 1 s (SRGAN, GLCIC); the participant tags each as real or fake. With
F the F-measure of identifying fakes, the realism score is 2(1 − F): 1.0 when fakes cannot be told
from real images (chance, F = 0.5), 0 when every fake is caught. :func:`realism_score` also gives
the variant with F = fraction of correct answers. :class:`RealismSession` holds the logic and is
driven from Python (tests, scripted evaluators); :class:`RealismGame` wraps it in widgets.
"""
from __future__ import annotations

import base64
import io
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..metrics.diversity import to_signed_range

__all__ = ["SHOW_SECONDS", "fake_f_measure", "realism_score", "RealismResult", "RealismSession", "RealismGame"]


# --------------------------------------------------------------------------- human realism protocol
SHOW_SECONDS = {"pix2pix": 0.5, "srgan": 1.0, "glcic": 1.0}  # MR-GAN Sec. 5.2 display times


def fake_f_measure(is_fake: Sequence[bool], tagged_fake: Sequence[bool]) -> float:
    """F1 of identifying fakes: 2PR/(P+R), P = caught fakes / fake tags, R = caught fakes / fakes.

    0 when no fake is caught (including when nothing is tagged fake).
    """
    truth, tags = np.asarray(is_fake, bool), np.asarray(tagged_fake, bool)
    if truth.shape != tags.shape or truth.ndim != 1 or len(truth) == 0:
        raise ValueError(f"is_fake and tagged_fake must be equal-length non-empty 1-D, got {truth.shape}, {tags.shape}")
    if not truth.any():
        raise ValueError("is_fake must contain at least one fake trial for an F-measure of identifying fakes")
    tp = float((truth & tags).sum())
    return 0.0 if tp == 0 else float(2 * tp / (tags.sum() + truth.sum()))  # = 2PR / (P + R)


def realism_score(is_fake: Sequence[bool], tagged_fake: Sequence[bool], kind: str = "f_measure") -> float:
    """MR-GAN Table 1 realism 2(1 − F); ``kind`` "f_measure" (the paper's F) or "accuracy"
    (F = fraction of correct tags). 1.0 at chance, 0 for a perfect judge."""
    if kind == "f_measure":
        f = fake_f_measure(is_fake, tagged_fake)
    elif kind == "accuracy":
        truth, tags = np.asarray(is_fake, bool), np.asarray(tagged_fake, bool)
        if truth.shape != tags.shape or len(truth) == 0:
            raise ValueError("is_fake and tagged_fake must be equal-length and non-empty")
        f = float((truth == tags).mean())
    else:
        raise ValueError(f"kind must be 'f_measure' or 'accuracy', got {kind!r}")
    return 2 * (1 - f)


@dataclass
class RealismResult:
    """Outcome of a realism session (JSON-serialisable with ``to_dict``)."""

    num_trials: int
    accuracy: float
    f_measure: float
    realism: float
    realism_accuracy: float
    show_seconds: float
    is_fake: list[bool] = field(repr=False)
    tagged_fake: list[bool] = field(repr=False)
    response_seconds: list[float] = field(repr=False)

    def to_dict(self) -> dict:
        """Plain dict."""
        return asdict(self)


class RealismSession:
    """A shuffled sequence of real / fake trials (half of each, rounded) and the answers given.

    ``real [N, C, H, W]``, ``fake [M, C, H, W]`` in [−1, 1]; ``current()`` is the image to show;
    ``answer("real" | "fake")`` records a tag and moves on; ``result()`` scores finished trials.
    """

    def __init__(self, real: torch.Tensor, fake: torch.Tensor, num_trials: int = 20, seed: int = 0,
                 show_seconds: float = 1.0) -> None:
        for name, t in (("real", real), ("fake", fake)):
            to_signed_range(t, "[-1,1]", name)
            if t.dim() != 4 or t.shape[1] not in (1, 3) or len(t) == 0:
                raise ValueError(f"{name} must be [N, 1 or 3, H, W] with N >= 1, got {tuple(t.shape)}")
        if num_trials < 2:
            raise ValueError(f"num_trials must be >= 2 (at least one real and one fake), got {num_trials}")
        if not 0.1 <= show_seconds <= 5:
            raise ValueError(f"show_seconds must be in [0.1, 5] (the paper uses 0.5 or 1), got {show_seconds}")
        rng = np.random.default_rng(seed)
        n_fake = num_trials // 2
        kinds = rng.permutation([True] * n_fake + [False] * (num_trials - n_fake))
        self.real, self.fake, self.show_seconds = real, fake, show_seconds
        self.trials = [(bool(f), int(rng.integers(len(fake) if f else len(real)))) for f in kinds]
        self.tags: list[bool] = []
        self.times: list[float] = []
        self._shown_at = time.monotonic()

    @property
    def done(self) -> bool:
        """True once every trial is answered."""
        return len(self.tags) == len(self.trials)

    def current(self) -> torch.Tensor:
        """Image ``[C, H, W]`` of the current trial (starts its response timer)."""
        if self.done:
            raise IndexError("the session is finished; call result()")
        is_fake, i = self.trials[len(self.tags)]
        self._shown_at = time.monotonic()
        return (self.fake if is_fake else self.real)[i]

    def answer(self, tag: str) -> bool:
        """Record ``tag`` ("real" or "fake") for the current trial; returns whether it was right."""
        if tag not in ("real", "fake"):
            raise ValueError(f"tag must be 'real' or 'fake', got {tag!r}")
        if self.done:
            raise IndexError("the session is finished; call result()")
        self.tags.append(tag == "fake")
        self.times.append(time.monotonic() - self._shown_at)
        return self.tags[-1] == self.trials[len(self.tags) - 1][0]

    def result(self) -> RealismResult:
        """Scores over the answered trials (needs at least one fake answered)."""
        truth = [f for f, _ in self.trials[: len(self.tags)]]
        if not any(truth):
            raise ValueError("no fake trial answered yet")
        acc = float(np.mean(np.asarray(truth) == np.asarray(self.tags)))
        f = fake_f_measure(truth, self.tags)
        return RealismResult(len(self.tags), acc, f, 2 * (1 - f), 2 * (1 - acc), self.show_seconds,
                             truth, list(self.tags), list(self.times))


def _png_html(img: torch.Tensor, show_seconds: float, size: int = 192) -> str:
    """``<img>`` of ``img [C, H, W]`` in [−1, 1], upscaled (nearest) to ``size`` px, hidden after
    ``show_seconds`` by a CSS animation (so the display time does not depend on the kernel)."""
    from PIL import Image

    arr = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    pil = pil.resize((size, round(size * pil.height / pil.width)), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    return ("<style>@keyframes minilib-hide{to{visibility:hidden}}</style>"
            f"<img src='data:image/png;base64,{data}' style='animation:minilib-hide 0s linear {show_seconds}s forwards'/>")


class RealismGame:
    """ipywidgets front end of a :class:`RealismSession`: Start, then each image flashes for
    ``show_seconds`` and the Real / Fake buttons record the tag; the score appears at the end.

    Drivable from Python: ``game.start()``, ``game.click("fake")``; ``game.widget`` is the box to display.
    """

    def __init__(self, real: torch.Tensor, fake: torch.Tensor, num_trials: int = 20, seed: int = 0,
                 show_seconds: float = 1.0) -> None:
        import ipywidgets as w

        self.session = RealismSession(real, fake, num_trials, seed, show_seconds)
        self.image = w.HTML(value="<i>Press Start; each image is shown for "
                                  f"{show_seconds:g} s, then tag it real or fake.</i>")
        self.start_button = w.Button(description="Start", button_style="primary")
        self.real_button = w.Button(description="Real", disabled=True)
        self.fake_button = w.Button(description="Fake", disabled=True)
        self.status = w.Label(value=f"0 / {num_trials}")
        self.start_button.on_click(lambda _: self.start())
        self.real_button.on_click(lambda _: self.click("real"))
        self.fake_button.on_click(lambda _: self.click("fake"))
        self.widget = w.VBox([self.image, w.HBox([self.start_button, self.real_button, self.fake_button]), self.status])

    def _show(self) -> None:
        n = len(self.session.trials)
        if self.session.done:
            r = self.session.result()
            self.image.value = (f"<b>Realism 2(1−F) = {r.realism:.2f}</b> (F-measure of spotting fakes {r.f_measure:.2f}; "
                                f"accuracy {r.accuracy:.2f}, 2(1−accuracy) = {r.realism_accuracy:.2f})")
            self.real_button.disabled = self.fake_button.disabled = True
            self.status.value = f"{n} / {n} done"
            return
        self.image.value = _png_html(self.session.current(), self.session.show_seconds)
        self.status.value = f"{len(self.session.tags) + 1} / {n}"

    def start(self) -> None:
        """Begin (or continue) the session: enable the answer buttons and flash the first image."""
        self.start_button.disabled = True
        self.real_button.disabled = self.fake_button.disabled = False
        self._show()

    def click(self, tag: str) -> None:
        """Tag the current image ("real" / "fake") and show the next one (or the score)."""
        if self.real_button.disabled:
            raise RuntimeError("press Start first (game.start())")
        self.session.answer(tag)
        self._show()

    def result(self) -> RealismResult:
        """The session's :class:`RealismResult`."""
        return self.session.result()
