"""Fetch the study's public datasets with a sha256 check. Data files are never committed."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from jaxsenti.atomic import write_bytes


@dataclasses.dataclass(frozen=True)
class RemoteDataset:
    filename: str
    url: str
    sha256: str  # of the CSV itself (after unzipping, where the source is a zip)
    member: str | None = None  # CSV inside a zip archive


DATASETS = {
    "dianping": RemoteDataset(
        "dianping.csv",
        "https://raw.githubusercontent.com/wshuyi/public_datasets/master/dianping.csv",
        "b4e7f1560b28e28321e079dab24ba78920cef3529dd01294e3e4184a82b7c386",
    ),
    "online_shopping_10_cats": RemoteDataset(
        "online_shopping_10_cats.csv",
        "https://raw.githubusercontent.com/SophonPlus/ChineseNlpCorpus/master/datasets/online_shopping_10_cats/online_shopping_10_cats.zip",
        "f6c5b724122d8547b700ac4524898eb7e28abbee63f798e95a8faa408829afdb",
        member="online_shopping_10_cats.csv",
    ),
}


class ChecksumError(ValueError):
    pass


class DownloadError(OSError):
    """The dataset could not be fetched; the message says how to put it in place by hand."""


def manual_route(spec: RemoteDataset, dest: Path) -> str:
    """How to install ``spec`` without this downloader (no network, proxy, firewall)."""
    get = f"download {spec.url} by hand (browser, or curl on a machine with access)"
    if spec.member is not None:
        get += f", unzip it and take {spec.member}"
    return (f"To install it manually: {get}; put it at {dest} (or in a folder named by "
            f"JAXSENTI_DATA_DIR); its sha256 must be {spec.sha256} (check with `sha256sum {spec.filename}`).")


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, progress: bool) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        buf = io.BytesIO()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False,
                       disable=None)
        for chunk in iter(lambda: resp.read(1 << 16), b""):
            buf.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    return buf.getvalue()


def download(name: str, dest_dir: str | os.PathLike = "data", *, progress: bool = True, spec: RemoteDataset | None = None) -> Path:
    """Return the verified local path of dataset ``name``, downloading it if needed.

    A file already in ``$JAXSENTI_DATA_DIR`` or ``dest_dir`` with the right checksum is used
    as it is; one with the wrong checksum is reported, never silently replaced.
    """
    spec = spec or DATASETS.get(name)
    if spec is None:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    dest = Path(dest_dir) / spec.filename
    for candidate in [Path(d) / spec.filename for d in filter(None, [os.environ.get("JAXSENTI_DATA_DIR")])] + [dest]:
        if candidate.exists():
            got = sha256_of(candidate)
            if got != spec.sha256:
                raise ChecksumError(f"{candidate}: sha256 {got} does not match the expected {spec.sha256}; move it away to re-download")
            return candidate
    try:
        data = _fetch(spec.url, progress)
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, truncated replies
        # URLError wraps the socket error in .reason; HTTPError's own text carries the status code.
        reason = e if isinstance(e, urllib.error.HTTPError) else (getattr(e, "reason", None) or e)
        raise DownloadError(f"could not download {spec.filename} from {spec.url}: {reason}. "
                            f"{manual_route(spec, dest)}") from e
    if spec.member is not None:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                data = z.read(spec.member)
        except (zipfile.BadZipFile, KeyError) as e:  # e.g. a proxy's HTML page instead of the archive
            raise DownloadError(f"{spec.url} did not give a zip archive holding {spec.member} ({e}); nothing was "
                                f"written. {manual_route(spec, dest)}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != spec.sha256:
        raise ChecksumError(f"{spec.url}: downloaded data has sha256 {got}, expected {spec.sha256}; nothing was written. "
                            f"{manual_route(spec, dest)}")
    return write_bytes(dest, data)  # atomic: an interrupted run never leaves half a CSV behind
