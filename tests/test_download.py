import hashlib
import io
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
