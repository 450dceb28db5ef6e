"""The papers' result tables as data, and ours beside them from the JSON that
``python -m minilib evaluate`` writes (notebook 11).

Paper numbers are transcribed from the papers (MR-GAN Table 1, MSGAN Table 3).
Name map: MR-GAN's MLMM = our proxy MR (``pmr``), MCMLE = MR (``mr``); "1" = first moment only,
"1/2" = first and second (our order 2). A paper row that we did not run shows "not run"; a row
the library cannot run (BicycleGAN, real-data reference) says so. Nothing is ever filled in by hand.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

__all__ = ["PaperEntry", "PAPER_TABLES", "load_results", "format_value", "format_interval", "compare", "to_markdown",
           "to_html"]

Value = tuple[float, float | None]  # (value, ± as printed, or None)


@dataclass(frozen=True)
class PaperEntry:
    """One method's row of a paper table; ``objective`` is our preset name (None: not in minilib)."""

    task: str
    method: str
    objective: str | None
    metrics: dict[str, Value] = field(default_factory=dict)
    note: str = ""


def _mr(task: str, method: str, obj: str | None, realism: Value, diversity: float, note: str = "") -> PaperEntry:
    return PaperEntry(task, method, obj, {"realism": realism, "diversity": (diversity, None)}, note)


_P2P = "pix2pix-cityscapes"
PAPER_TABLES: dict[str, dict[str, Any]] = {
    "mrgan-table1": {
        "title": "MR-GAN (Lee et al.) Table 1: realism 2(1-F) (human) and LPIPS diversity, 20 samples x 300 inputs",
        "protocol": "mrgan",
        "metrics": ("realism", "diversity"),
        "rows": [
            _mr(_P2P, "Random real data", None, (1.00, None), 0.559, "reference: real images"),
            _mr(_P2P, "Pix2Pix+noise", "gan+l1", (0.22, 0.04), 0.004),
            _mr(_P2P, "BicycleGAN", None, (0.16, 0.03), 0.191, "not implemented in minilib"),
            _mr(_P2P, "Gaussian MLMM1", "gan+pmr1", (0.49, 0.05), 0.519),
            _mr(_P2P, "Gaussian MLMM1/2", "gan+pmr2", (0.44, 0.05), 0.388),
            _mr(_P2P, "Gaussian MCMLE1", "gan+mr1", (0.54, 0.05), 0.299),
            _mr(_P2P, "Gaussian MCMLE1/2", "gan+mr2", (0.14, 0.02), 0.453),
            _mr(_P2P, "Laplace MLMM1", "gan+pmr1-laplace", (0.19, 0.03), 0.368),
            _mr(_P2P, "Laplace MLMM1/2", "gan+pmr2-laplace", (0.17, 0.02), 0.380),
            _mr(_P2P, "Laplace MCMLE1", "gan+mr1-laplace", (0.19, 0.03), 0.393),
            _mr(_P2P, "Laplace MCMLE1/2", "gan+mr2-laplace", (0.20, 0.04), 0.384),
            _mr("srgan-celeba", "Random real data", None, (1.00, None), 0.290, "reference: real images"),
            _mr("srgan-celeba", "SRGAN+noise", "gan+l2", (0.60, 0.06), 0.005),
            _mr("srgan-celeba", "Gaussian MLMM1/2", "gan+pmr2", (0.52, 0.05), 0.050),
            _mr("glcic-celeba", "Random real data", None, (1.00, None), 0.426, "reference: real images"),
            _mr("glcic-celeba", "GLCIC+noise", "gan+l2", (0.28, 0.04), 0.004),
            _mr("glcic-celeba", "Gaussian MLMM1/2", "gan+pmr2", (0.33, 0.04), 0.060),
        ],
    },
    "msgan-table3": {
        "title": "MSGAN (Mao et al.) Table 3, maps: FID, NDB, JSD, LPIPS (50 samples per input, 50 pairs)",
        "protocol": "msgan",
        "metrics": ("fid", "ndb", "jsd", "diversity"),
        "rows": [
            PaperEntry("pix2pix-maps", "Pix2Pix", "gan+l1",
                       {"fid": (168.99, 2.58), "ndb": (49.00, 1.00), "jsd": (0.088, 0.018), "diversity": (0.0016, 0.0003)}),
            PaperEntry("pix2pix-maps", "MSGAN", "gan+l1+ms",
                       {"fid": (152.43, 2.52), "ndb": (41.60, 0.55), "jsd": (0.031, 0.003), "diversity": (0.2189, 0.0004)}),
            PaperEntry("pix2pix-maps", "BicycleGAN", None,
                       {"fid": (145.78, 3.90), "ndb": (46.60, 1.34), "jsd": (0.023, 0.002), "diversity": (0.1150, 0.0007)},
                       "not implemented in minilib"),
        ],
    },
}


def load_results(root: str | Path | Iterable[str | Path] = "runs") -> list[dict[str, Any]]:
    """Every ``eval_*.json`` record under ``root`` (a folder searched recursively, or a list of files)."""
    if isinstance(root, (str, Path)):
        root = Path(root)
        files = sorted(root.rglob("eval_*.json")) if root.is_dir() else []
    else:
        files = [Path(p) for p in root]
    out = []
    for f in files:
        rec = json.loads(Path(f).read_text())
        if not {"task", "objective", "protocol", "diversity"} <= rec.keys():
            raise ValueError(f"{f} is not an evaluation record (needs task, objective, protocol, diversity)")
        rec.setdefault("file", str(f))
        out.append(rec)
    return out


def format_value(v: Value | None) -> str:
    """``(0.22, 0.04) -> "0.22 ± 0.04"``, ``(0.0016, 0.0003) -> "0.0016 ± 0.0003"``: every digit kept."""
    if v is None:
        return ""
    return f"{v[0]}" + (f" ± {v[1]}" if v[1] is not None else "")


def format_interval(d: dict[str, Any], fmt: str = ".4f") -> str:
    """``[ci_low, ci_high]`` of a diversity record, or ``(no interval)`` where they are null / NaN (one input)."""
    lo, hi = d.get("ci_low"), d.get("ci_high")
    if not all(isinstance(v, (int, float)) and v == v for v in (lo, hi)):
        return "(no interval)"
    return f"[{lo:{fmt}}, {hi:{fmt}}]"


def compare(table: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``table`` with the paper's values and ours: the latest matching record (same task,
    objective and protocol), preferring ``full``-profile runs. Unmatched rows say why they are empty."""
    if table not in PAPER_TABLES:
        raise ValueError(f"table must be one of {sorted(PAPER_TABLES)}, got {table!r}")
    spec = PAPER_TABLES[table]
    rows = []
    for e in spec["rows"]:
        match = [r for r in results if r["task"] == e.task and r["objective"] == e.objective
                 and r["protocol"] == spec["protocol"]] if e.objective else []
        match.sort(key=lambda r: (r.get("profile") == "full", r.get("created", "")))
        row: dict[str, Any] = {"task": e.task, "method": e.method, "objective": e.objective or "-"}
        for m in spec["metrics"]:
            row[f"paper {m}"] = format_value(e.metrics.get(m))
        if match:
            r = match[-1]
            d = r["diversity"]
            row["ours diversity"] = f"{d['mean']:.4f} {format_interval(d, '.4f')}"
            row["ours metric"] = d["metric"]
            for m in spec["metrics"]:
                if m != "diversity" and r.get(m) is not None:
                    row[f"ours {m}"] = f"{r[m]:.3f}" if isinstance(r[m], (int, float)) else str(r[m])
            prof = r.get("profile", "?")
            row["status"] = f"ours: {prof} profile, step {r.get('step', '?')}, {r.get('num_inputs', '?')} inputs" + (
                " (smoke: tiny nets on fixtures, not comparable)" if prof == "smoke" else "")
        else:
            row["ours diversity"] = ""
            row["status"] = e.note if e.objective is None else "not run"
        rows.append(row)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return cols


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`compare` rows (missing cells empty)."""
    cols = _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def to_html(rows: list[dict[str, Any]]) -> str:
    """An HTML table of :func:`compare` rows (for notebook display); "not run" cells in grey."""
    import html

    cols = _columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        style = " style='color:#888'" if r.get("status") in ("not run",) or r.get("objective") == "-" else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
