import hashlib
import io
import socket
import urllib.error
import urllib.request
import zipfile

import pytest

from jaxsenti.data.download import ChecksumError, RemoteDataset, download


def _spec(tmp_path, payload: bytes, sha: str | None = None, zipped: bool = False):
    src = tmp_path / "remote" / ("d.zip" if zipped else "d.csv")
    src.parent.mkdir()
    if zipped:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("inner.csv", payload)
        src.write_bytes(buf.getvalue())
    else:
        src.write_bytes(payload)
    return RemoteDataset("d.csv", src.as_uri(), sha or hashlib.sha256(payload).hexdigest(), "inner.csv" if zipped else None)


@pytest.mark.parametrize("zipped", [False, True])
def test_download_verifies_and_writes(tmp_path, monkeypatch, zipped):
    monkeypatch.delenv("JAXSENTI_DATA_DIR", raising=False)
    spec = _spec(tmp_path, b"comment,sentiment\n\xe5\xa5\xbd,1\n", zipped=zipped)
    path = download("d", tmp_path / "data", spec=spec, progress=False)
    assert path.read_bytes() == b"comment,sentiment\n\xe5\xa5\xbd,1\n"
    assert download("d", tmp_path / "data", spec=spec, progress=False) == path  # present: verified, not fetched


def test_bad_checksum_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXSENTI_DATA_DIR", raising=False)
    spec = _spec(tmp_path, b"x", sha="0" * 64)
    with pytest.raises(ChecksumError, match="expected 0000"):
        download("d", tmp_path / "data", spec=spec, progress=False)
    assert not (tmp_path / "data" / "d.csv").exists()


def test_existing_file_with_wrong_checksum_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXSENTI_DATA_DIR", raising=False)
    spec = _spec(tmp_path, b"good")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.csv").write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="move it away"):
        download("d", tmp_path / "data", spec=spec, progress=False)


def test_shared_copies_match_registered_checksums(dianping_path):
    from jaxsenti.data.download import DATASETS, sha256_of

    assert sha256_of(dianping_path) == DATASETS["dianping"].sha256


def _offline(monkeypatch, exc):
    def urlopen(*a, **k):
        raise exc

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


@pytest.mark.parametrize("exc, reason", [
    (urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")), "name resolution"),
    (TimeoutError("timed out"), "timed out"),
    (urllib.error.HTTPError("https://x", 404, "Not Found", None, None), "HTTP Error 404: Not Found"),
])
def test_offline_error_names_url_destination_and_manual_route(tmp_path, monkeypatch, exc, reason):
    from jaxsenti.data.download import DATASETS, DownloadError

    monkeypatch.delenv("JAXSENTI_DATA_DIR", raising=False)
    _offline(monkeypatch, exc)
    spec = DATASETS["dianping"]
    with pytest.raises(DownloadError) as e:
        download("dianping", tmp_path / "data", progress=False)
    msg = str(e.value)
    assert spec.url in msg and reason in msg
    assert str(tmp_path / "data" / "dianping.csv") in msg and "JAXSENTI_DATA_DIR" in msg
    assert spec.sha256 in msg and "by hand" in msg
    assert isinstance(e.value, OSError)  # the CLI reports OSErrors without a traceback
    assert not (tmp_path / "data").exists()


def test_offline_zip_route_says_which_member(tmp_path, monkeypatch):
    from jaxsenti.data.download import DATASETS, DownloadError

    monkeypatch.delenv("JAXSENTI_DATA_DIR", raising=False)
    _offline(monkeypatch, urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    with pytest.raises(DownloadError, match=r"unzip it and take online_shopping_10_cats\.csv") as e:
        download("online_shopping_10_cats", tmp_path, progress=False)
    assert DATASETS["online_shopping_10_cats"].sha256 in str(e.value)


def test_not_a_zip_is_a_clear_error(tmp_path, monkeypatch):
    from jaxsenti.data.download import DownloadError

    monkeypatch.delenv("JAXSENTI_DATA_DIR", raising=False)
    spec = _spec(tmp_path, b"x")
    spec = RemoteDataset("d.csv", spec.url, spec.sha256, member="inner.csv")  # the "archive" is plain text
    with pytest.raises(DownloadError, match=r"did not give a zip archive holding inner\.csv.*nothing was written"):
        download("d", tmp_path / "data", spec=spec, progress=False)
