"""CJK font discovery, the no-font fallback, and the shared plot helpers."""

from __future__ import annotations

import functools
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


@functools.cache
def _system_has_cjk_font() -> bool:
    """Independent of the lookup under test: does any system font file carry CJK glyphs?"""
    from matplotlib import font_manager as fm

    return any(plotting._font_has_cjk(p) for p in fm.findSystemFonts())


def _require_cjk_font(family):
    """Skip when no CJK font is installed at all; fail when one is installed but was not found."""
    if family is None:
        if _system_has_cjk_font():
            pytest.fail("a CJK font is installed but setup_matplotlib/find_cjk_font did not find it")
        pytest.skip("no CJK font installed (apt-get install fonts-wqy-microhei)")


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


def test_lookup_sees_font_missing_from_matplotlib_cache(monkeypatch, fresh_lookup):
    """A font installed after matplotlib built its cache is found by rescanning the system dirs."""
    from matplotlib import font_manager as fm

    family = plotting.find_cjk_font()
    _require_cjk_font(family)
    # Pretend matplotlib's cache never heard of any CJK font: drop those entries.
    stale = [e for e in fm.fontManager.ttflist if not plotting._font_has_cjk(e.fname)]
    monkeypatch.setattr(fm.fontManager, "ttflist", stale)
    monkeypatch.delenv(plotting.FONT_ENV_VAR, raising=False)
    plotting.find_cjk_font.cache_clear()
    assert plotting._from_known() is None
    assert plotting.find_cjk_font() is not None


def test_env_var_font_file(monkeypatch, fresh_lookup):
    from matplotlib import font_manager as fm

    family = plotting.find_cjk_font()
    _require_cjk_font(family)
    fname = fm.findfont(fm.FontProperties(family=family), fallback_to_default=False)
    monkeypatch.setenv(plotting.FONT_ENV_VAR, fname)
    plotting.find_cjk_font.cache_clear()
    assert plotting._from_env() == family


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
