"""CJK font discovery, the no-font fallback, and the shared plot helpers."""

from __future__ import annotations

import os
import warnings

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest

from jaxsenti import plotting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    return img


def _require_cjk_font(family):
    """A CJK font is always found: a system one, or the one the noto-cjk-sans-otc dependency ships."""
    assert family is not None, "no CJK font found, not even the packaged one (pip install noto-cjk-sans-otc)"


def _render(text: str, family: str | None = None) -> np.ndarray:
    """Pixels of ``text`` drawn alone on a small figure (after setup_matplotlib)."""
    fig, ax = plotting.new_figure((1.2, 0.8))
    ax.set_axis_off()
    kw = {"family": family} if family else {}
    fig.text(0.5, 0.5, text, fontsize=28, ha="center", va="center", **kw)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


@pytest.fixture
def restore_rc():
    with matplotlib.rc_context():
        yield


@pytest.fixture
def fresh_lookup():
    """Clear the cached font lookup and once-only warning before and after a test."""
    find, warn = plotting.find_cjk_font, plotting._warn_no_cjk_font  # originals, before any monkeypatch
    find.cache_clear()
    warn.cache_clear()
    yield
    find.cache_clear()
    warn.cache_clear()
    from matplotlib import font_manager as fm

    if cached := getattr(fm.fontManager, "_findfont_cached", None):  # tests may swap ttflist
        cached.cache_clear()


def test_setup_finds_font_that_renders_cjk(restore_rc, tmp_path):
    from matplotlib import font_manager as fm
    from matplotlib import ft2font

    family = plotting.setup_matplotlib()
    _require_cjk_font(family)
    assert matplotlib.rcParams["font.sans-serif"][0] == family
    assert matplotlib.rcParams["axes.unicode_minus"] is False
    fname = fm.findfont(fm.FontProperties(family=family), fallback_to_default=False)
    cmap = ft2font.FT2Font(fname).get_charmap()
    assert all(ord(c) in cmap for c in "中文好评差")
    # Drawing Chinese text must not trigger a single "Glyph … missing" warning.
    fig, ax = plotting.new_figure()
    ax.set_title("中文标题 好评 差评 −1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plotting.save_figure(fig, tmp_path / "cjk.png")
    _assert_png(tmp_path / "cjk.png")


def test_lookup_sees_font_missing_from_matplotlib_cache(monkeypatch, fresh_lookup, tmp_path):
    """A font installed after matplotlib built its cache is found by rescanning the system dirs.

    Self-contained: the "system font" is a link to the packaged Noto Sans CJK collection, and
    matplotlib's cache is made to forget every CJK font.
    """
    from matplotlib import font_manager as fm

    system_font = tmp_path / "fonts" / "NotoSansCJK-Regular.ttc"
    system_font.parent.mkdir()
    system_font.symlink_to(plotting.packaged_font_file())
    monkeypatch.setattr(fm.fontManager, "ttflist", [e for e in fm.fontManager.ttflist if not plotting.font_has_cjk(e.fname)])
    monkeypatch.setattr(fm, "findSystemFonts", lambda *a, **k: [str(system_font)])
    monkeypatch.setattr(plotting, "_from_package", lambda: None)  # only the rescan may find it
    monkeypatch.delenv(plotting.FONT_ENV_VAR, raising=False)
    assert plotting._from_known() is None
    assert plotting.find_cjk_font() == "Noto Sans CJK SC"
    assert any(e.fname == str(system_font) for e in fm.fontManager.ttflist)


def test_env_var_font_file(monkeypatch, fresh_lookup):
    monkeypatch.setenv(plotting.FONT_ENV_VAR, str(plotting.packaged_font_file()))
    monkeypatch.setattr(plotting, "_from_known", lambda: pytest.fail("the env var must be tried first"))
    assert plotting._from_env() == "Noto Sans CJK SC"  # the collection's Simplified Chinese face
    assert plotting.find_cjk_font() == "Noto Sans CJK SC"


def test_packaged_font_is_the_fallback(monkeypatch, fresh_lookup, restore_rc):
    """With no env var and no system CJK font, the font of the noto-cjk-sans-otc dependency is used."""
    from matplotlib import font_manager as fm

    monkeypatch.delenv(plotting.FONT_ENV_VAR, raising=False)
    monkeypatch.setattr(plotting, "_from_known", lambda: None)
    monkeypatch.setattr(plotting, "_rescan_system_fonts", lambda: None)
    path = plotting.packaged_font_file()
    assert path is not None and path.is_file() and plotting.font_has_cjk(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no CJK font" warning
        family = plotting.setup_matplotlib()
    assert family == plotting.PACKAGED_FONT_FAMILY
    fname = fm.findfont(fm.FontProperties(family=family), fallback_to_default=False)
    assert os.path.realpath(fname) == os.path.realpath(path)


def test_system_font_wins_over_packaged(monkeypatch, fresh_lookup):
    monkeypatch.delenv(plotting.FONT_ENV_VAR, raising=False)
    monkeypatch.setattr(plotting, "_from_known", lambda: "Some System CJK Font")
    monkeypatch.setattr(plotting, "_from_package", lambda: pytest.fail("the packaged font is only the fallback"))
    assert plotting.find_cjk_font() == "Some System CJK Font"


def test_without_the_font_package_it_warns(monkeypatch, fresh_lookup, restore_rc):
    import importlib

    real = importlib.import_module

    def no_font_pkg(name, *a, **k):
        if name == plotting.PACKAGED_FONT_MODULE:
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.delenv(plotting.FONT_ENV_VAR, raising=False)
    monkeypatch.setattr(importlib, "import_module", no_font_pkg)
    monkeypatch.setattr(plotting, "_from_known", lambda: None)
    monkeypatch.setattr(plotting, "_rescan_system_fonts", lambda: None)
    assert plotting.packaged_font_file() is None
    with pytest.warns(RuntimeWarning, match="pip install noto-cjk-sans-otc"):
        assert plotting.setup_matplotlib() is None


def test_rendered_chinese_uses_a_cjk_font(restore_rc, tmp_path):
    """Drawn Chinese text comes from a font file with CJK glyphs, not from empty boxes.

    Missing glyphs all render as the same box, so two different ideographs rendering to the same
    pixels means no CJK font was used.
    """
    from matplotlib import font_manager as fm

    family = plotting.setup_matplotlib()
    _require_cjk_font(family)
    fig, ax = plotting.new_figure()
    title = ax.set_title("好评")
    fname = fm.findfont(title.get_fontproperties(), fallback_to_default=False)
    assert plotting.font_has_cjk(fname), fname
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not a single "Glyph … missing from font(s)"
        zhong, hao = _render("中"), _render("好")
    assert not np.array_equal(zhong, hao)
    assert not np.array_equal(zhong, _render("一"))
    with warnings.catch_warnings():  # the premise: without CJK glyphs both are the same box
        warnings.simplefilter("ignore")
        assert np.array_equal(_render("中", "DejaVu Sans"), _render("好", "DejaVu Sans"))


def test_env_var_bad_value_warns(monkeypatch, fresh_lookup):
    monkeypatch.setenv(plotting.FONT_ENV_VAR, "/nonexistent/Font That Is Not There")
    with pytest.warns(RuntimeWarning, match=plotting.FONT_ENV_VAR):
        assert plotting._from_env() is None


def test_fallback_warns_once_and_still_writes(monkeypatch, fresh_lookup, restore_rc, tmp_path):
    monkeypatch.setattr(plotting, "find_cjk_font", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert plotting.setup_matplotlib() is None
        assert plotting.setup_matplotlib() is None
        # Force a font without CJK glyphs so the glyph warnings would fire if not silenced.
        matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans"]
        out = plotting.plot_bar_words(["好吃", "难吃"], [3, 1], tmp_path / "w.png", "中文")
    hints = [w for w in caught if issubclass(w.category, RuntimeWarning) and "fonts-wqy-microhei" in str(w.message)]
    assert len(hints) == 1, [str(w.message) for w in caught]
    assert not [w for w in caught if "missing from" in str(w.message)]
    _assert_png(out)


def test_fallback_installs_glyph_filter(monkeypatch, fresh_lookup, restore_rc):
    monkeypatch.setattr(plotting, "find_cjk_font", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plotting.setup_matplotlib()
        assert any(f[0] == "ignore" and f[1] is not None and f[1].match("Glyph 20013 (X) missing from font(s) DejaVu Sans.")
                   for f in warnings.filters)


def test_save_figure_creates_dirs_and_closes(tmp_path):
    fig, ax = plotting.new_figure()
    ax.plot([0, 1], [1, 0])
    out = plotting.save_figure(fig, tmp_path / "a" / "b" / "fig.png")
    assert out == tmp_path / "a" / "b" / "fig.png"
    _assert_png(out)


def test_save_figure_closes_pyplot_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    n = len(plt.get_fignums())
    plotting.save_figure(fig, tmp_path / "p.png")
    assert len(plt.get_fignums()) == n - 1


def test_confusion_matrix(tmp_path):
    out = plotting.plot_confusion_matrix(np.array([[40, 10], [5, 45]]), ["负面", "正面"], tmp_path / "cm.png", "混淆矩阵")
    _assert_png(out)
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b"], tmp_path / "bad.png")


def test_training_curves(tmp_path):
    hist = {"train_loss": [0.7, 0.5, 0.4], "val_loss": [0.69, 0.55, float("nan")],
            "train_acc": [0.5, 0.7, 0.8], "val_acc": [0.5, 0.65, 0.7]}
    _assert_png(plotting.plot_training_curves(hist, tmp_path / "c.png", "LSTM"))
    _assert_png(plotting.plot_training_curves({"loss": [1.0, 0.5]}, tmp_path / "c1.png"))
    with pytest.raises(ValueError):
        plotting.plot_training_curves({}, tmp_path / "c2.png")


def test_bar_and_diverging_words(tmp_path):
    img = _assert_png(plotting.plot_bar_words(["好吃", "不错", "环境"], [10, 7, 3], tmp_path / "b.png", "top"))
    # bars are drawn: some pixels are clearly coloured (not white/grey/black)
    rgb = img[..., :3]
    assert (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.3).any()
    _assert_png(plotting.plot_bar_words([], [], tmp_path / "empty.png", "none"))
    _assert_png(plotting.plot_diverging_words(["好"], [1.5], ["差", "难吃"], [-2.0, -1.0], tmp_path / "d.png", "lr"))
    with pytest.raises(ValueError):
        plotting.plot_bar_words(["a"], [1, 2], tmp_path / "x.png")
