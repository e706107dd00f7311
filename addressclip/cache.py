"""Everything we write to disk and read back, written and read one way.

- `atomic_write`: a file appears whole or not at all. It is written under a temporary name unique to the
  process and call (two torchrun ranks, or two runs, never share one), flushed to disk, then renamed over the
  target.
- `save` / `load`: a dict of tensors and plain values (``torch.save``; read back with ``weights_only=True``, so
  loading never runs pickled code) that carries the SHA-256 of its own contents, checked on every load. A
  truncated file, a foreign file or a flipped bit raises `DamagedFile`; a damaged file is never used.
- `digest`: the one content hash (SHA-256) of strings, bytes, numbers, tensors and nested lists/dicts of them;
  cache keys are built from it.
- `load_or_compute` (`load_or_compute_json` for small JSON results, which carry a checksum too): the one policy
  for derived data (feature caches, galleries, baseline results): a damaged
  file is reported with a warning, moved aside as ``<name>.damaged`` (kept for inspection, never read again),
  and the value is recomputed; a folder that cannot be written leaves the value in memory only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)
INTEGRITY_KEY = "_integrity"  # {"sha256": digest of the other keys}; files written before it existed lack it


class DamagedFile(RuntimeError):
    """A file we wrote could not be read back whole (truncated, foreign, or its checksum does not match)."""


class DamagedCacheWarning(UserWarning):
    """A cached file was damaged; it was moved aside and its contents recomputed."""


# --------------------------------------------------------------------------------------------- writing
def atomic_write(path: str | Path, write: Callable[[Path], None], durable: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary path beside `path`, flush it to disk (`durable`; bulk outputs such as
    rendered images skip the flush: a killed process still leaves whole files or none), then rename it to `path`.
    Every file this project writes for reading back goes through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # hidden, unique, and ending in the target's suffix (writers that pick a format by extension still can)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# -------------------------------------------------------------------------------------------- digests
def _feed(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"dict|{len(obj)}|".encode())
        for key in sorted(obj, key=str):
            _feed(h, str(key))
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq|{len(obj)}|".encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, bytes):
        h.update(b"bytes|%d|" % len(obj) + obj)
    else:
        text = obj if isinstance(obj, str) else repr(obj)
        data = text.encode("utf-8")
        h.update(f"{type(obj).__name__}|{len(data)}|".encode() + data)


def digest(*parts: Any, length: int = 64) -> str:
    """SHA-256 (hex, first `length` characters) of `parts`: strings, bytes, numbers, tensors (dtype, shape and
    bytes) and lists/dicts of them. Equal contents give equal digests in every process and on every machine."""
    h = hashlib.sha256()
    for part in parts:
        _feed(h, part)
    return h.hexdigest()[:length]


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (e.g. a checkpoint's identity, wherever it is copied to)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------- files read by other tools
MANIFEST = "SHA256SUMS"  # checksums of a folder's finished files, in the format `sha256sum -c` reads


def seal(folder: str | Path, names: list[str]) -> Path:
    """Record the SHA-256 of the files `names` (those that exist) in `folder`'s manifest, keeping its other
    entries: files that other tools read too (parquet, JSON), which cannot carry a checksum inside."""
    folder = Path(folder)
    entries = _manifest(folder)
    entries.update({name: file_digest(folder / name) for name in names if (folder / name).exists()})
    return write_text(folder / MANIFEST, "".join(f"{digest_}  {name}\n" for name, digest_ in sorted(entries.items())))


def unseal(folder: str | Path, names: list[str]) -> None:
    """Drop the manifest entries of files about to be rewritten (`seal` them again once written), so that a
    process killed in between leaves them unverified rather than checked against the old bytes."""
    folder = Path(folder)
    entries = _manifest(folder)
    if any(name in entries for name in names):
        kept = {name: d for name, d in entries.items() if name not in names}
        write_text(folder / MANIFEST, "".join(f"{d}  {name}\n" for name, d in sorted(kept.items())))


def verify(path: str | Path) -> Path:
    """Check a file against its folder's manifest when the manifest lists it (files written before manifests
    existed are not checked); `DamagedFile` when the bytes differ from what was written."""
    path = Path(path)
    expected = _manifest(path.parent).get(path.name)
    if expected is not None and file_digest(path) != expected:
        raise DamagedFile(f"{path} is damaged: its bytes do not match the checksum in {path.parent / MANIFEST}")
    return path


def _manifest(folder: Path) -> dict[str, str]:
    try:
        text = (folder / MANIFEST).read_text()
    except FileNotFoundError:
        return {}
    entries = {}
    for line in text.splitlines():
        digest_, _, name = line.partition("  ")
        if name:
            entries[name] = digest_
    return entries


# ------------------------------------------------------------------------------------ tensors on disk
def save(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` (tensors and plain values) atomically with the checksum `load` verifies."""
    if INTEGRITY_KEY in payload:
        raise ValueError(f"{INTEGRITY_KEY!r} is reserved")
    stored = {**payload, INTEGRITY_KEY: {"sha256": digest(payload)}}
    return atomic_write(path, lambda tmp: torch.save(stored, tmp))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a file written by `save`, verifying its checksum; `DamagedFile` if it cannot be read whole.
    Files written before checksums existed (no checksum inside) load unverified."""
    path = Path(path)
    try:
        stored = torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError, MemoryError, torch.cuda.OutOfMemoryError):
        raise  # the machine's trouble, not the file's: never a reason to set a good file aside
    except Exception as exc:  # truncated, foreign or unsafe (a pickle that weights_only refuses)
        raise DamagedFile(f"{path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(stored, dict):
        raise DamagedFile(f"{path} holds a {type(stored).__name__}, not the dict this project writes")
    integrity = stored.pop(INTEGRITY_KEY, None)
    if integrity is not None:
        found = digest(stored)
        if found != integrity.get("sha256"):
            raise DamagedFile(f"{path} is damaged: its contents do not match the checksum written with them")
    return stored


# ------------------------------------------------------------------------------------------ the policy
def set_aside(path: Path, reason: str) -> Path:
    """Move a damaged file out of the way (``<name>.damaged``) and warn; it is never read again."""
    aside = path.with_name(path.name + ".damaged")
    try:
        os.replace(path, aside)
    except OSError:
        aside = path
    warnings.warn(f"{reason}; moved aside to {aside.name} and recomputed", DamagedCacheWarning, stacklevel=3)
    return aside


def load_or_compute(path: str | Path | None, compute: Callable[[], dict[str, Any]],
                    valid: Callable[[dict[str, Any]], bool] | None = None) -> tuple[dict[str, Any], bool]:
    """(payload, read_from_disk): the cached payload at `path` if it is whole (and `valid`), else
    ``compute()``, saved there for next time. `path` None: no caching."""
    if path is None:
        return compute(), False
    path = Path(path)
    if path.exists():
        try:
            payload = load(path)
            if valid is None or valid(payload):
                return payload, True
            set_aside(path, f"cached file {path} does not hold what was asked for")
        except DamagedFile as exc:
            set_aside(path, str(exc))
    payload = compute()
    try:
        save(path, payload)
    except OSError as exc:
        log.warning("cannot write cache %s (%s); the result stays in memory only", path, exc)
    return payload, False


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def load_json_checked(path: str | Path) -> Any:
    """A JSON result written by `load_or_compute_json`, its checksum verified; `DamagedFile` if it does not parse
    or does not match. Files written before checksums existed (a bare JSON value) load unverified."""
    path = Path(path)
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedFile(f"{path} is damaged ({exc})") from exc
    if isinstance(stored, dict) and (INTEGRITY_KEY in stored or ("value" in stored and len(stored) == 2)):
        integrity, value = stored.get(INTEGRITY_KEY), stored.get("value")
        expected = integrity.get("sha256") if isinstance(integrity, dict) else None
        if set(stored) != {INTEGRITY_KEY, "value"} or expected != digest(_json_text(value)):
            raise DamagedFile(f"{path} is damaged: its contents do not match the checksum written with them")
        return value
    return stored


def load_or_compute_json(path: str | Path, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """`load_or_compute` for small JSON results (e.g. a baseline's row), stored with the checksum of the value
    (``{"value": ..., "_integrity": {"sha256": ...}}``): a file that does not parse or does not match is damaged."""
    path = Path(path)
    if path.exists():
        try:
            return load_json_checked(path), True
        except DamagedFile as exc:
            set_aside(path, str(exc))
    value = json.loads(_json_text(compute()))  # as it will read back
    text = _json_text(value)
    write_text(path, json.dumps({"value": value, INTEGRITY_KEY: {"sha256": digest(text)}}, sort_keys=True) + "\n")
    return value, False
