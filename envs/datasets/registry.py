"""Known datasets: name → loader, data-directory resolution and the GroupLens downloader.

``load_dataset(name, data_dir)`` reads from ``data_dir``, else the ``RECGYM_DATA`` environment variable.
``download_dataset(name, dest)`` fetches the GroupLens archive and verifies every extracted file against the
pinned sha256 of the official release before moving it into place (nothing is left half-written).

Size caps: the archive is read in chunks and refused past ``MAX_ARCHIVE_BYTES`` (or a smaller declared
``Content-Length``), and each member is refused when its declared or actual uncompressed size passes
``MAX_MEMBER_BYTES`` (a zip bomb never reaches memory). Member names must be plain file names.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recgym.common import DataError, clean_stale_temp_files, sha256_bytes, suggest
from recgym.common.io import TEMP_SUFFIX
from recgym.envs.datasets.logs import InteractionData, load_log
from recgym.envs.datasets.movielens import load_ml_latest_small, load_movielens_100k

__all__ = [
    "KNOWN_DATASETS", "DOWNLOADS", "DatasetNotFoundError", "DownloadError", "canonical_name", "resolve_data_dir",
    "load_dataset", "download_dataset",
]

_LOADERS: dict[str, Callable[[Path], InteractionData]] = {
    "movielens-100k": load_movielens_100k,
    "ml-latest-small": load_ml_latest_small,
    "log": load_log,
}
KNOWN_DATASETS: tuple[str, ...] = tuple(_LOADERS)
_ALIASES = {"ml-100k": "movielens-100k", "movielens-latest-small": "ml-latest-small"}

# Pinned per-file sha256 of the GroupLens releases (same bytes as ../shared/data, see its README).
DOWNLOADS: dict[str, dict[str, object]] = {
    "movielens-100k": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "folder": "ml-100k",
        "files": {
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
            "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
        },
    },
    "ml-latest-small": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        "folder": "ml-latest-small",
        "files": {
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
            "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
            "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
            "README.txt": "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404",
        },
    },
}


MAX_ARCHIVE_BYTES = 64 * 2**20  # the pinned archives are ~5 MB (ml-100k) and ~1 MB (ml-latest-small)
MAX_MEMBER_BYTES = 64 * 2**20  # their largest member is ~2.5 MB uncompressed
_CHUNK = 1 << 20


class DatasetNotFoundError(DataError):
    """Unknown dataset name or missing data directory."""


class DownloadError(RuntimeError):
    """The archive could not be fetched (offline, HTTP error) or failed its checksum."""


def canonical_name(name: str) -> str:
    """Map a name or alias to its canonical form.

    Raises:
        DatasetNotFoundError: unknown name; the message lists the known names and the closest one.
    """
    if name in _LOADERS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    known = [*KNOWN_DATASETS, *_ALIASES]
    raise DatasetNotFoundError(
        f"dataset: expected one of {', '.join(KNOWN_DATASETS)} (aliases: {', '.join(_ALIASES)}), "
        f"received {name!r}{suggest(name, known)}"
    )


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir`` if given, else ``$RECGYM_DATA``.

    Raises:
        DatasetNotFoundError: neither is set, or the folder does not exist.
    """
    if data_dir is None:
        env = os.environ.get("RECGYM_DATA")
        if not env:
            raise DatasetNotFoundError(
                "data_dir: expected a folder (argument data_dir= or environment variable RECGYM_DATA), received "
                "neither; run `recgym data download NAME --dest DIR` and point RECGYM_DATA at DIR"
            )
        data_dir = env
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(f"data_dir: expected an existing folder, received {str(path)!r} (not found)")
    return path


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> InteractionData:
    """Load a known dataset into :class:`InteractionData`.

    Args:
        name: ``"movielens-100k"`` (alias ``"ml-100k"``), ``"ml-latest-small"`` or ``"log"`` (then ``data_dir``
            is the log folder itself).
        data_dir: root holding ``ml-100k/`` / ``ml-latest-small/`` (or the dataset folder itself); default
            ``$RECGYM_DATA``.
    """
    canon = canonical_name(name)
    return _LOADERS[canon](resolve_data_dir(data_dir))


def _read_capped(resp: Any, cap: int, canon: str, url: str) -> bytes:
    """The response body, read in chunks and refused as soon as it passes ``cap`` bytes."""
    declared = getattr(resp, "headers", None)
    length = declared.get("Content-Length") if declared is not None else None
    if length is not None and str(length).isdigit() and int(length) > cap:
        raise DownloadError(f"download {canon}: {url} declares {int(length)} bytes, expected at most {cap}")
    chunks, total = [], 0
    while chunk := resp.read(_CHUNK):
        total += len(chunk)
        if total > cap:
            raise DownloadError(f"download {canon}: {url} sent more than {cap} bytes, the cap for this archive; "
                                "refusing it (not the pinned release)")
        chunks.append(chunk)
    return b"".join(chunks)


def download_dataset(
    name: str,
    dest: str | os.PathLike[str],
    *,
    timeout: float = 60.0,
    opener: Callable[..., object] = urllib.request.urlopen,
    max_archive_bytes: int = MAX_ARCHIVE_BYTES,
    max_member_bytes: int = MAX_MEMBER_BYTES,
) -> Path:
    """Download a MovieLens archive from GroupLens into ``dest/<folder>`` and verify every file's sha256.

    Files are extracted to a temporary folder next to ``dest``, verified, then moved into place with one
    rename, so a failed or interrupted download never leaves a partial dataset. Returns the dataset folder.

    Raises:
        DatasetNotFoundError: unknown name, or a name with nothing to download (``"log"``).
        DownloadError: no network (message says so), an HTTP error, a corrupt archive, a checksum mismatch,
            or an archive / member past its size cap (``max_archive_bytes``, ``max_member_bytes``).
    """
    canon = canonical_name(name)
    if canon not in DOWNLOADS:
        raise DatasetNotFoundError(
            f"download: expected one of {', '.join(DOWNLOADS)}, received {name!r} (a log is your own data)")
    spec = DOWNLOADS[canon]
    url, folder, files = str(spec["url"]), str(spec["folder"]), dict(spec["files"])  # type: ignore[arg-type]
    dest = Path(dest).expanduser()
    target = dest / folder
    try:
        with opener(url, timeout=timeout) as resp:  # type: ignore[operator]
            payload = _read_capped(resp, max_archive_bytes, canon, url)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DownloadError(
            f"download {canon}: expected to fetch {url}, received a network error ({exc}); this machine looks "
            f"offline — download the archive elsewhere, unzip it under a folder and set RECGYM_DATA to it"
        ) from exc
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"download {canon}: expected a zip archive from {url}, received {len(payload)} bytes "
                            "that are not one") from exc
    for info in archive.infolist():
        if info.file_size > max_member_bytes:
            raise DownloadError(f"download {canon}: archive member {info.filename!r} declares {info.file_size} bytes "
                                f"uncompressed, expected at most {max_member_bytes} (zip bomb or not the pinned release)")

    def read_member(member: str) -> bytes:
        try:
            with archive.open(member) as fh:
                data = fh.read(max_member_bytes + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise DownloadError(f"download {canon}: archive member {member!r} is corrupt ({exc})") from exc
        if len(data) > max_member_bytes:
            raise DownloadError(f"download {canon}: archive member {member!r} expands past {max_member_bytes} bytes "
                                "(zip bomb or not the pinned release)")
        return data

    dest.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(dest, min_age_s=3600, include_dirs=True)  # extraction folders of killed downloads
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", suffix=TEMP_SUFFIX, dir=dest))
    try:
        for fname, want in files.items():
            member = f"{folder}/{fname}"
            if member not in archive.namelist():
                raise DownloadError(f"download {canon}: expected {member} in the archive, received no such member")
            data = read_member(member)
            got = sha256_bytes(data)
            if got != want:
                raise DownloadError(f"download {canon}: checksum mismatch for {member}: expected sha256 {want}, "
                                    f"received {got}; the archive is corrupt or not the pinned release")
            (tmp / fname).write_bytes(data)
        for member in archive.namelist():  # the remaining (split) files, unverified but from the same archive
            rel = member[len(folder) + 1:]
            if (member.startswith(folder + "/") and rel and "/" not in rel and "\\" not in rel
                    and rel not in (".", "..") and not (tmp / rel).exists()):
                (tmp / rel).write_bytes(read_member(member))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
