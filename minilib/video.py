"""Animations that play offline: matplotlib animations as H.264 video through the ffmpeg binary that
``imageio-ffmpeg`` ships inside its wheel, with matplotlib's JavaScript player (without its CDN icon font) as the
fallback when there is no ffmpeg.

* :func:`animation_html` -- an animation as an embedded ``<video>`` (a few hundred KB), else :func:`offline_jshtml`.
* :func:`save_video` -- the MP4 file; :func:`ffmpeg_exe` -- where the binary is (None without one).
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
import warnings
from pathlib import Path

import matplotlib as mpl
from matplotlib.animation import Animation, FFMpegWriter

__all__ = ["MAX_VIDEO_BYTES", "animation_html", "save_video", "ffmpeg_exe", "offline_jshtml"]


# --------------------------------------------------------------------------------------------- video
MAX_VIDEO_BYTES = 600_000  # one embedded animation; notebooks stay small enough to review and to load


# matplotlib's JavaScript player takes its button icons from font-awesome on a CDN; these glyphs need no network
JSHTML_ICON_CSS = """<style>
.animation .fa { font-style: normal; font-family: "DejaVu Sans", system-ui, sans-serif; font-weight: bold; }
.animation .fa-play:before { content: "\\25B6"; } .animation .fa-pause:before { content: "\\2016"; }
.animation .fa-minus:before { content: "\\2212"; } .animation .fa-plus:before { content: "+"; }
.animation .fa-fast-backward:before { content: "\\21E4"; } .animation .fa-fast-forward:before { content: "\\21E5"; }
.animation .fa-step-backward:before { content: "\\2039"; } .animation .fa-step-forward:before { content: "\\203A"; }
.animation .fa-flip-horizontal { display: inline-block; transform: scaleX(-1); }
</style>"""


def offline_jshtml(anim: Animation, fps: float | None = None) -> str:
    """``anim.to_jshtml()`` without its one remote resource (the font-awesome stylesheet): icons are plain glyphs."""
    page = anim.to_jshtml(fps=fps)
    page = re.sub(r"<link\b[^>]*href=[\"']?https?://[^>]*>", "", page, flags=re.I)
    return JSHTML_ICON_CSS + page


def ffmpeg_exe() -> str | None:
    """The ffmpeg binary shipped by ``imageio-ffmpeg`` (or the one it finds via ``IMAGEIO_FFMPEG_EXE``); None if
    the package or the binary is missing."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # RuntimeError when no binary fits this platform
        return None
    return exe if exe and os.path.isfile(exe) else None


def _fps(anim: Animation, fps: float | None) -> float:
    if fps is not None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        return float(fps)
    interval = getattr(anim, "_interval", 200) or 200
    return 1000.0 / interval


def _write_mp4(anim: Animation, path: str, exe: str, fps: float, crf: int, dpi: float | None) -> None:
    """H.264 (yuv420p, +faststart so browsers start playing before the end is loaded) at constant quality ``crf``."""
    extra = ["-preset", "medium", "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-movflags", "+faststart",
             "-tune", "animation"]
    with mpl.rc_context({"animation.ffmpeg_path": exe}):
        writer = FFMpegWriter(fps=fps, codec="h264", bitrate=-1, extra_args=extra)
        anim.save(path, writer=writer, dpi=dpi)


def save_video(anim: Animation, path: str | os.PathLike, *, fps: float | None = None, crf: int = 28,
               dpi: float | None = None, max_bytes: int | None = None) -> Path:
    """Write ``anim`` as an H.264 MP4 with the ffmpeg of ``imageio-ffmpeg``; returns the path.

    Args:
        fps: frames per second (default: from the animation's interval).
        crf: x264 constant rate factor (lower is better and larger; 23 is x264's default, 28 is plenty for plots).
        dpi: render resolution (default: the figure's).
        max_bytes: if given, raise ``crf`` in steps of 4 (up to 44) until the file is at most this large.
    Raises: RuntimeError if there is no ffmpeg (install ``imageio-ffmpeg``).
    """
    exe = ffmpeg_exe()
    if exe is None:
        raise RuntimeError("no ffmpeg: pip install imageio-ffmpeg (or use anim.to_jshtml())")
    path = Path(path)
    rate = _fps(anim, fps)
    while True:
        _write_mp4(anim, str(path), exe, rate, crf, dpi)
        if max_bytes is None or path.stat().st_size <= max_bytes or crf >= 44:
            break
        crf += 4
    if max_bytes is not None and path.stat().st_size > max_bytes:
        warnings.warn(f"{path.name}: {path.stat().st_size} bytes > max_bytes={max_bytes} even at crf {crf}", stacklevel=2)
    return path


def animation_html(anim: Animation, *, fps: float | None = None, crf: int = 28, dpi: float | None = None,
                   max_bytes: int = MAX_VIDEO_BYTES, width: int | None = None) -> str:
    """HTML that plays ``anim`` offline: an H.264 MP4 embedded as base64 in
    ``<video controls autoplay loop muted playsinline>`` (at most ``max_bytes``; the quality is lowered until it
    fits, see :func:`save_video`), or ``anim.to_jshtml()`` (PNG frames and a JavaScript player) when ffmpeg is
    missing or fails (:func:`offline_jshtml`: no font-awesome from a CDN). ``width`` (px) is the displayed width; default the rendered width, capped at 100%.
    """
    if ffmpeg_exe() is None:
        return offline_jshtml(anim, fps)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix="minilib-anim-")
    os.close(fd)
    try:
        try:
            save_video(anim, tmp, fps=fps, crf=crf, dpi=dpi, max_bytes=max_bytes)
        except (subprocess.CalledProcessError, OSError, RuntimeError) as e:
            warnings.warn(f"ffmpeg failed ({e}); embedding the animation as JavaScript frames instead", stacklevel=2)
            return offline_jshtml(anim, fps)
        data = Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)
    fig = anim._fig
    px_w = int(round(fig.get_figwidth() * (dpi or fig.dpi)))
    shown = width or px_w
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<video controls autoplay loop muted playsinline width="{shown}" style="max-width:100%;height:auto" '
            f'class="minilib-animation"><source type="video/mp4" src="data:video/mp4;base64,{b64}">'
            "Your browser does not play H.264 video.</video>")
