"""Headless matplotlib with a CJK-capable font, and the figure helpers the project shares.

Every helper here builds a :class:`matplotlib.figure.Figure` directly (no pyplot state), draws,
saves with :func:`save_figure` and returns the written path, so it is safe to call from scripts,
tests and worker processes alike.

Chinese labels need a font with CJK glyphs. :func:`setup_matplotlib` looks for one, in order:

1. ``$JAXSENTI_CJK_FONT``: a font *file* (``.ttf``/``.otf``/``.ttc``) or an installed family name;
2. a list of well-known CJK families (WenQuanYi, Noto Sans CJK, Source Han Sans, SimHei, YaHei,
   PingFang, AR PL …) already known to matplotlib;
3. CJK-looking font files in the system font directories that matplotlib's font cache does not
   know yet (a font installed after the cache was built, e.g. ``apt-get install
   fonts-wqy-microhei`` in CI after matplotlib was first imported), added with
   ``fontManager.addfont``;
4. the Noto Sans CJK collection shipped by the ``noto-cjk-sans-otc`` dependency (SIL OFL 1.1),
   so a fresh virtual environment on a machine without CJK fonts still renders Chinese.

If none is found (the dependency was removed) it warns once (``RuntimeWarning``) with install
instructions, silences matplotlib's per-glyph "Glyph … missing from font(s)" warnings, and figures
are still written (Chinese characters then show as empty boxes).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

FONT_ENV_VAR = "JAXSENTI_CJK_FONT"
DPI = 120
# The packaged fallback: the module of the noto-cjk-sans-otc distribution and the face we want
# from its collection (it also holds JP/KR/TC/HK faces, whose glyph shapes differ for some Hanzi).
PACKAGED_FONT_MODULE = "noto_cjk_sans_otc"
PACKAGED_FONT_FAMILY = "Noto Sans CJK SC"

# Families tried in order; the first one installed (and really carrying CJK glyphs) wins.
PREFERRED_CJK_FONTS: tuple[str, ...] = (
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "Source Han Sans",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "STHeiti",
    "Hiragino Sans GB",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "AR PL SungtiL GB",
    "Noto Serif CJK SC",
    "Arial Unicode MS",
)
# Lower-cased substrings of font file names that suggest CJK coverage (used for the rescan).
_CJK_FILE_HINTS = (
    "wqy", "wenquanyi", "cjk", "sourcehan", "source-han", "simhei", "simsun", "msyh", "yahei",
    "pingfang", "heiti", "hiragino", "droidsansfallback", "uming", "ukai", "gkai", "gbsn",
    "arialuni", "notosanssc", "notoserifsc",
)
_PROBE_CHARS = "中好"  # a font must map these to count as CJK-capable
_GLYPH_WARNING = r"Glyph \d+ .*missing from"

INSTALL_HINT = (
    "no CJK-capable font found, Chinese labels in figures will render as empty boxes. "
    "Install one (`pip install noto-cjk-sans-otc`, a jaxsenti dependency; or Debian/Ubuntu: "
    "`sudo apt-get install fonts-wqy-microhei`; Fedora: "
    "`sudo dnf install wqy-microhei-fonts`; macOS/Windows ship PingFang SC / Microsoft YaHei) "
    f"or set {FONT_ENV_VAR}=/path/to/font.ttf(.ttc/.otf)."
)


def font_has_cjk(fname: str | os.PathLike) -> bool:
    """Whether the font file (its first face, for a collection) maps the probe ideographs."""
    from matplotlib import ft2font

    try:
        cmap = ft2font.FT2Font(os.fspath(fname)).get_charmap()
    except Exception:  # unreadable or unsupported font file
        return False
    return all(ord(c) in cmap for c in _PROBE_CHARS)


def _family_with_cjk(family: str) -> str | None:
    """The family's name if matplotlib knows it and its file carries CJK glyphs."""
    from matplotlib import font_manager as fm

    for entry in fm.fontManager.ttflist:
        if entry.name == family and font_has_cjk(entry.fname):
            return family
    return None


def _add_font_file(path: str) -> list[str]:
    """Register a font file with matplotlib; return its family names (all faces of a collection)."""
    from matplotlib import font_manager as fm

    real = os.path.realpath(path)
    if known := [e.name for e in fm.fontManager.ttflist if os.path.realpath(e.fname) == real]:
        return known  # already registered (e.g. after the cached lookup was cleared)
    before = len(fm.fontManager.ttflist)
    try:
        fm.fontManager.addfont(path)
    except Exception:
        return []
    return [e.name for e in fm.fontManager.ttflist[before:]]


def _pick_face(names: list[str]) -> str | None:
    """From the faces of one file (a collection has several), the Simplified Chinese one if any."""
    for n in names:
        if any(tag in n.split() for tag in ("SC", "CN", "GB")):
            return n
    return names[0] if names else None


def _from_env() -> str | None:
    value = os.environ.get(FONT_ENV_VAR, "").strip()
    if not value:
        return None
    if Path(value).is_file():
        if not font_has_cjk(value):
            warnings.warn(f"{FONT_ENV_VAR}={value!r} has no CJK glyphs (or cannot be read); ignoring it",
                          RuntimeWarning, stacklevel=4)
            return None
        if name := _pick_face(_add_font_file(value)):
            return name
        warnings.warn(f"{FONT_ENV_VAR}={value!r}: matplotlib could not load this font file; ignoring it",
                      RuntimeWarning, stacklevel=4)
        return None
    if fam := _family_with_cjk(value):
        return fam
    warnings.warn(f"{FONT_ENV_VAR}={value!r} is neither a font file nor an installed CJK font family; ignoring it",
                  RuntimeWarning, stacklevel=4)
    return None


def _from_known() -> str | None:
    from matplotlib import font_manager as fm

    names = {e.name for e in fm.fontManager.ttflist}
    for fam in PREFERRED_CJK_FONTS:
        if fam in names and _family_with_cjk(fam):
            return fam
    return None


def _rescan_system_fonts() -> str | None:
    """Add CJK-looking system font files missing from matplotlib's (possibly stale) cache."""
    from matplotlib import font_manager as fm

    known_files = {os.path.realpath(e.fname) for e in fm.fontManager.ttflist}
    added: list[str] = []
    for path in sorted(fm.findSystemFonts()):
        base = os.path.basename(path).lower().replace("_", "").replace(" ", "")
        if os.path.realpath(path) in known_files or not any(h in base for h in _CJK_FILE_HINTS):
            continue
        if font_has_cjk(path):
            added += _add_font_file(path)
    if fam := _from_known():
        return fam
    # An unlisted family (e.g. some vendor font): take the first added one with CJK glyphs.
    return added[0] if added else None


def packaged_font_file() -> Path | None:
    """The CJK font file shipped by the ``noto-cjk-sans-otc`` dependency, or None if it is not installed."""
    try:
        mod = importlib.import_module(PACKAGED_FONT_MODULE)
    except ImportError:
        return None
    path = Path(os.fspath(getattr(mod, "FONT_PATH", "")))
    if path.is_file():
        return path
    # Its documented FONT_PATH moved or vanished: take the font file that sits in the package.
    for folder in getattr(mod, "__path__", []):
        for p in sorted(Path(folder).iterdir()):
            if p.suffix.lower() in (".ttc", ".otf", ".ttf"):
                return p
    return None


def _from_package() -> str | None:
    path = packaged_font_file()
    if path is None or not font_has_cjk(path):
        return None
    names = _add_font_file(str(path))
    # matplotlib >= 3.10 registers every face of a collection; older ones only the first (JP).
    return PACKAGED_FONT_FAMILY if PACKAGED_FONT_FAMILY in names else _pick_face(names)


@functools.cache
def find_cjk_font() -> str | None:
    """Name of a CJK-capable font family usable by matplotlib, or None (cached per process)."""
    return _from_env() or _from_known() or _rescan_system_fonts() or _from_package()


@functools.cache
def _warn_no_cjk_font() -> None:
    # functools.cache on a no-argument function: the warning is issued once per process.
    warnings.warn(INSTALL_HINT, RuntimeWarning, stacklevel=4)


def setup_matplotlib() -> str | None:
    """Use the headless Agg backend and a CJK-capable font; return the font family or None.

    The backend is switched to Agg only if pyplot has not been imported yet (an interactive
    session keeps its backend; this module's helpers do not use pyplot anyway). Sets
    ``font.sans-serif`` with the CJK family first (DejaVu Sans and the previous list stay
    behind it as per-glyph fallbacks), ``font.family = sans-serif`` and
    ``axes.unicode_minus = False`` (many CJK fonts lack U+2212). When no CJK font is found it
    warns once with install instructions and silences the per-glyph "missing" warnings.
    Safe to call repeatedly; the font lookup is cached.
    """
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    family = find_cjk_font()
    rc = matplotlib.rcParams
    rc["axes.unicode_minus"] = False
    if family is None:
        _warn_no_cjk_font()
        warnings.filterwarnings("ignore", message=_GLYPH_WARNING, category=UserWarning)
        return None
    current = [f for f in rc["font.sans-serif"] if f != family]
    rc["font.sans-serif"] = [family, *current]
    rc["font.family"] = ["sans-serif"]
    return family


def new_figure(figsize: tuple[float, float] = (7.0, 4.5), **subplots_kw):
    """``(fig, axes)`` on a pyplot-free Figure, after :func:`setup_matplotlib`."""
    from matplotlib.figure import Figure

    setup_matplotlib()
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(**subplots_kw)


def check_figure_path(path: str | os.PathLike) -> Path:
    """``path`` as a figure file name matplotlib can write (checked before the work that makes the figure)."""
    from matplotlib.figure import Figure

    path = Path(path)
    formats = Figure().canvas.get_supported_filetypes()
    if path.is_dir() or path.suffix.lower().lstrip(".") not in formats:
        raise ValueError(f"{path}: not a figure file name; give one ending in an image format, e.g. "
                         f"{path / 'plot.png' if path.is_dir() else path.with_suffix('.png')} "
                         f"({', '.join(sorted(formats))})")
    return path


SIGNATURE = "written by jaxsenti"  # in the figure file's metadata: a later run may replace the file (jaxsenti.ownership)
_SIGNATURE_KEY = {"png": "Software", "pdf": "Creator", "svg": "Creator", "ps": "Creator", "eps": "Creator"}


def written_by_jaxsenti(path: str | os.PathLike) -> bool:
    """Whether the figure file ``path`` carries jaxsenti's signature (formats without metadata never do)."""
    try:
        return SIGNATURE.encode() in Path(path).read_bytes()
    except OSError:
        return False


def save_figure(fig, path: str | os.PathLike, *, dpi: int = DPI) -> Path:
    """Save ``fig`` to ``path`` atomically (parents created, tight bbox), close it, return the path."""
    from jaxsenti.atomic import atomic_path

    path = Path(path)
    key = _SIGNATURE_KEY.get(path.suffix.lower().lstrip("."))
    try:
        with atomic_path(path) as tmp:  # a crash mid-write never leaves a truncated image at path
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", **({"metadata": {key: SIGNATURE}} if key else {}))
    finally:
        if "matplotlib.pyplot" in sys.modules:  # a pyplot-managed figure must be released too
            import matplotlib.pyplot as plt

            plt.close(fig)
    return path


def plot_confusion_matrix(
    cm, labels: Sequence[str], path: str | os.PathLike, title: str = "Confusion matrix"
) -> Path:
    """Counts per (true, predicted) cell with the row share (recall per class) under each count."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(labels):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {len(labels)} labels")
    n = len(labels)
    fig, ax = new_figure((1.6 * n + 2.4, 1.4 * n + 1.6))
    im = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, shrink=0.8)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    threshold = cm.max() / 2 if cm.size and cm.max() > 0 else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]:d}\n({share[i, j]:.1%})" if np.issubdtype(cm.dtype, np.integer)
                    else f"{cm[i, j]:.3g}\n({share[i, j]:.1%})",
                    ha="center", va="center", color="white" if cm[i, j] > threshold else "black")
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_training_curves(
    history: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str = "Training curves"
) -> Path:
    """Per-epoch curves: keys containing "loss" on the left panel, all other metrics on the right.

    E.g. ``{"train_loss": [...], "val_loss": [...], "train_acc": [...], "val_acc": [...]}``;
    epochs are numbered from 1, NaN/None values are left as gaps.
    """
    loss_keys = [k for k in history if "loss" in k.lower()]
    metric_keys = [k for k in history if k not in loss_keys]
    panels = [(ks, name) for ks, name in ((loss_keys, "loss"), (metric_keys, "metric")) if ks]
    if not panels:
        raise ValueError("history is empty: nothing to plot")
    fig, axes = new_figure((5.5 * len(panels), 4.0), ncols=len(panels), squeeze=False)
    for ax, (keys, name) in zip(axes[0], panels):
        for k in keys:
            y = np.array([np.nan if v is None else float(v) for v in history[k]], dtype=float)
            x = np.arange(1, len(y) + 1)
            style = "--" if k.lower().startswith(("val", "dev", "test")) else "-"
            ax.plot(x, y, style, marker="o" if len(y) <= 30 else None, ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name if name == "loss" else ("accuracy" if all("acc" in k for k in keys) else "value"))
        ax.grid(alpha=0.3)
        ax.legend()
        if name == "loss":
            ax.set_title("loss")
        else:
            ax.set_title("accuracy" if all("acc" in k for k in keys) else "metrics")
    # integer epochs on the x axis
    from matplotlib.ticker import MaxNLocator

    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_bar_words(
    words: Sequence[str],
    values: Sequence[float],
    path: str | os.PathLike,
    title: str = "",
    color: str = "tab:blue",
    *,
    xlabel: str = "count",
    annotate: bool = True,
) -> Path:
    """Horizontal bars, first word at the top, value written at the end of each bar."""
    if len(words) != len(values):
        raise ValueError(f"{len(words)} words but {len(values)} values")
    fig, ax = new_figure((6.0, 0.28 * max(len(words), 4) + 1.2))
    y = np.arange(len(words))
    ax.barh(y, values, color=color)
    ax.set_yticks(y, list(words))
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if not words:
        ax.text(0.5, 0.5, "(no words)", ha="center", va="center", transform=ax.transAxes)
    elif annotate:
        vmax = max(abs(float(v)) for v in values) or 1.0
        for yi, v in zip(y, values):
            label = f"{v:d}" if isinstance(v, (int, np.integer)) else f"{v:.3g}"
            ax.text(float(v) + 0.01 * vmax, yi, label, va="center", fontsize=8)
        ax.set_xlim(0, vmax * 1.12 if vmax > 0 else 1)
    return save_figure(fig, path)


def plot_diverging_words(
    pos_words: Sequence[str],
    pos_values: Sequence[float],
    neg_words: Sequence[str],
    neg_values: Sequence[float],
    path: str | os.PathLike,
    title: str = "",
    *,
    xlabel: str = "value",
    pos_label: str = "positive",
    neg_label: str = "negative",
    pos_color: str = "tab:green",
    neg_color: str = "tab:red",
) -> Path:
    """Side-by-side diverging bars: most positive words at the top right, most negative at the top left.

    ``pos_values`` are expected > 0 and ``neg_values`` < 0 (e.g. log-ratios); each panel is
    sorted so the most extreme word is on top.
    """
    k = max(len(pos_words), len(neg_words), 4)
    fig, (axn, axp) = new_figure((9.0, 0.28 * k + 1.4), ncols=2, sharex=False)
    lim = max([abs(float(v)) for v in (*pos_values, *neg_values)] or [1.0]) * 1.15
    for ax, words, vals, color, label in (
        (axn, neg_words, neg_values, neg_color, neg_label),
        (axp, pos_words, pos_values, pos_color, pos_label),
    ):
        y = np.arange(len(words))
        ax.barh(y, vals, color=color)
        ax.set_ylim(k - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(label, color=color)
        ax.set_xlabel(xlabel)
        ax.axvline(0, color="black", lw=0.8)
        for yi, v in zip(y, vals):
            ax.text(float(v) + (0.02 if v >= 0 else -0.02) * lim, yi, f"{float(v):.2f}", va="center",
                    ha="left" if v >= 0 else "right", fontsize=7)
        if ax is axn:
            ax.set_xlim(-lim, 0)
            ax.yaxis.tick_left()
        else:
            ax.set_xlim(0, lim)
            ax.yaxis.tick_right()
        ax.set_yticks(y, list(words))
        if not len(words):
            ax.text(0.5, 0.5, "(no words)", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return save_figure(fig, path)

