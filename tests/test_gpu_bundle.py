"""The GPU check's carried bundle, built from a clean clone, stays under its margin, and the wrapper unpacks it:
the first lent GPU must not be lost to "travels: 64.3 MiB" (about 30 s: the corpus is tokenized once)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from tests.conftest import DATA_DIR, REPO

sys.path.insert(0, str(REPO / "tools"))
import gpu_bundle  # noqa: E402


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: the bundle's size is that of a clone")
    if not all((DATA_DIR / n).is_file() for n in gpu_bundle.DATASETS):
        pytest.skip(f"{DATA_DIR} lacks the datasets (set JAXSENTI_DATA_DIR)")
    root = tmp_path_factory.mktemp("gpu") / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    env = dict(os.environ, JAXSENTI_CACHE=str(root.parent / "cache"))
    p = subprocess.run([sys.executable, str(root / "tools" / "gpu_bundle.py"), "--data", str(DATA_DIR),
                        "--root", str(root)], capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    return root, p.stdout


def test_what_travels_stays_under_the_margin(clone):
    root, printed = clone
    total, _ = gpu_bundle.report(root)
    assert total <= gpu_bundle.MARGIN_MIB * 2**20, printed
    mib = float(re.search(r"travels: ([\d.]+) MiB", printed).group(1))
    assert abs(mib - total / 2**20) < 0.1
    names = sorted(str(p.relative_to(root / gpu_bundle.BUNDLE)) for p in (root / gpu_bundle.BUNDLE).rglob("*") if p.is_file())
    assert names[:2] == ["data/cache/" + names[0].split("/")[-1], "data/dianping.csv.gz"] and len(names) == 9, names
    assert sorted(n.removeprefix("test-wheels/").split("-")[0] for n in names if n.startswith("test-wheels/")) == sorted(
        gpu_bundle.TEST_WHEELS)
    assert subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout == ""


def test_the_trimmed_jieba_wheel_installs_and_segments(clone, tmp_path):
    root, _ = clone
    (wheel,) = (root / gpu_bundle.BUNDLE).glob("jieba-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(tmp_path / "site"), str(wheel)], check=True)
    code = "import jieba; print(jieba.__file__); print('/'.join(jieba.lcut('这家的环境不差，但是菜不怎么好吃。')))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")))
    assert p.returncode == 0, p.stderr
    where, words = p.stdout.splitlines()
    assert where.startswith(str(tmp_path / "site")) and words == "这家/的/环境/不差/，/但是/菜/不怎么/好吃/。"
    assert not (tmp_path / "site" / "jieba" / "lac_small").exists()


def test_the_test_wheels_give_a_working_pytest_without_the_installed_one(clone, tmp_path):
    root, _ = clone
    wheels = sorted(str(w) for w in (root / gpu_bundle.BUNDLE / "test-wheels").glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(tmp_path / "site"), *wheels], check=True)
    (tmp_path / "t" / "test_one.py").parent.mkdir()
    (tmp_path / "t" / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    # -S: no site-packages, so only the wheels' pytest can be imported
    p = subprocess.run([sys.executable, "-S", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "t")],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")))
    assert p.returncode == 0 and "1 passed" in p.stdout, p.stdout + p.stderr


def test_the_wrapper_unpacks_the_bundle(clone, tmp_path):
    """gpu_check.sh up to accelerator.py (asked for its --help): jieba from the bundle, the datasets unpacked whole."""
    root, _ = clone
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable, SITE=str(tmp_path / "site"),
               GPU_DATA=str(tmp_path / "data"))
    env.pop("JAXSENTI_DATA_DIR", None)
    p = subprocess.run(["bash", "benchmarks/gpu_check.sh", "60", "--help"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "| jieba 0.42.1" in p.stdout and "accelerator.py exit 0" in p.stdout
    for name in gpu_bundle.DATASETS:
        assert (tmp_path / "data" / name).read_bytes() == (DATA_DIR / name).read_bytes()
    assert list((tmp_path / "data" / "cache").glob("mlm-tokens-*.npz"))
