"""Where the model comes from: a hub id (revision pinned), a local folder, or an `s3://` mirror.

An `s3://` mirror (made by `granite-batch mirror-model`) holds the model files plus
`granite-batch-manifest.json` with each file's size and sha256. It is downloaded once per node
into `model.cache_dir`, every file checked before anything loads it; a mirror without a manifest,
or with a file that does not match, is refused. The manifest is uploaded last, so a half-copied
mirror is refused too.

Whatever the source, `loadable_dir` fixes the hub config's integer `embedding_multiplier` (and the
other Granite multipliers), which transformers 5 rejects, in a view folder: symlinks to the
files and a patched `config.json`. The source folder is never modified. `trust_remote_code`
is never used: the architecture is in transformers and vLLM.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import ModelSourceError
from ..storage.s3 import retrying, s3_client, split_s3_uri

MANIFEST = "granite-batch-manifest.json"
_MULTIPLIERS = ("embedding_multiplier", "logits_scaling", "residual_multiplier", "attention_multiplier")


def resolve_model(cfg: ModelConfig, fallback_endpoint: str | None = None) -> Path:
    """A local folder that transformers and vLLM can load, fetching and verifying as needed."""
    return resolve_model_revision(cfg, fallback_endpoint)[0]


def resolve_model_revision(cfg: ModelConfig, fallback_endpoint: str | None = None) -> tuple[Path, str]:
    """The loadable folder and what exactly it holds, for the output's `model_revision`: the hub
    commit, `manifest:<sha256 of the mirror's manifest>`, or `local:<hash of file names and sizes>`."""
    cache = Path(cfg.cache_dir).expanduser()
    if cfg.id.startswith("s3://"):
        folder = fetch_mirror(cfg.id, cache, cfg.endpoint_url or fallback_endpoint)
        revision = f"manifest:{folder.name}"
    elif Path(cfg.id).expanduser().is_dir():
        folder = Path(cfg.id).expanduser().resolve()
        listing = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
        revision = "local:" + hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]
    else:
        folder = _from_hub(cfg)
        revision = folder.name if folder.parent.name == "snapshots" else (cfg.revision or "unknown")
    return loadable_dir(folder, cache), revision


def _from_hub(cfg: ModelConfig) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(cfg.id, revision=cfg.revision))
    except Exception as err:  # offline, unknown id, auth: one clear message
        raise ModelSourceError(
            f"cannot fetch {cfg.id} from the hub ({type(err).__name__}: {err}); "
            "air-gapped sites use a local folder or an s3:// mirror (granite-batch mirror-model)"
        ) from None


def patch_multipliers(config: dict[str, Any]) -> dict[str, Any]:
    """The config with Granite's integer multipliers as floats (transformers 5 wants floats)."""
    fixed = copy.deepcopy(config)
    for section in (fixed, fixed.get("text_config") or {}):
        for key in _MULTIPLIERS:
            value = section.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                section[key] = float(value)
    return fixed


def loadable_dir(folder: Path, cache: Path) -> Path:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"{folder} is not a model folder: config.json unreadable ({err})") from None
    fixed = patch_multipliers(config)
    if json.dumps(fixed, sort_keys=True) == json.dumps(config, sort_keys=True):  # 12 == 12.0, but not as JSON
        return folder
    # Keyed by the folder's file list too: a changed folder gets a fresh view, not dangling links.
    listing = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.name != "config.json")
    digest = hashlib.sha256(f"{folder}\n{listing}\n{json.dumps(fixed, sort_keys=True)}".encode()).hexdigest()[:16]
    view = cache / "views" / digest
    if not (view / "config.json").exists():
        tmp = view.with_name(f".{view.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for entry in folder.iterdir():
            if entry.name != "config.json":
                (tmp / entry.name).symlink_to(entry.resolve())
        (tmp / "config.json").write_text(json.dumps(fixed, indent=2))
        try:
            tmp.rename(view)
        except OSError:  # another process on this node made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return view


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> dict[str, Any]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {
        "files": {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    }


def push_mirror(folder: Path, uri: str, endpoint_url: str | None = None) -> int:
    """Upload a model folder as an s3:// mirror; the manifest goes last. Returns files uploaded."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    s3 = s3_client(endpoint_url)
    manifest = write_manifest(folder)
    try:
        # A re-push first withdraws the old manifest: workers refuse the mirror until it is complete.
        s3.delete_object(Bucket=bucket, Key=prefix + MANIFEST)
        for rel in manifest["files"]:
            s3.upload_file(str(folder / rel), bucket, prefix + rel)
        s3.put_object(Bucket=bucket, Key=prefix + MANIFEST, Body=json.dumps(manifest, indent=2).encode())
    except Exception as err:  # credentials, a missing bucket, the network: a clear error, not a traceback
        raise ModelSourceError(f"cannot write the mirror {uri}: {type(err).__name__}: {err}") from None
    return len(manifest["files"])


@contextmanager
def _node_lock(path: Path) -> Iterator[None]:
    # Several workers on one node start together: one downloads, the others wait and reuse.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fetch_mirror(uri: str, cache: Path, endpoint_url: str | None) -> Path:
    """Download and verify a mirror into a folder named by its manifest's sha256. A verified
    folder is never changed or deleted (a worker may be loading from it): a re-pushed mirror gets
    a new folder, built under a temporary name and renamed into place when every file matches."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    s3 = s3_client(endpoint_url)
    try:
        raw = retrying(
            lambda: s3.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read(), f"reading {MANIFEST}"
        )
        files: dict[str, Any] = json.loads(raw)["files"]
    except Exception as err:
        raise ModelSourceError(
            f"model mirror {uri}: cannot read {MANIFEST} ({type(err).__name__}: {err}); "
            "make mirrors with `granite-batch mirror-model`"
        ) from None
    for rel in files:
        if not rel or rel == "." or ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ModelSourceError(f"model mirror {uri}: manifest path {rel!r} is not a file inside the model folder")
    dest = cache / "s3" / hashlib.sha256(raw).hexdigest()[:24]
    with _node_lock(cache / "s3" / ".lock"):
        if (dest / ".verified").exists() and _sizes_match(dest, files):
            return dest  # verified by sha256 when downloaded; sizes catch truncation since
        tmp = dest.with_name(f".{dest.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for rel, meta in files.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, prefix + rel, str(target))
                size, sha = target.stat().st_size, _sha256(target)
                if size != meta["size"] or sha != meta["sha256"]:
                    raise ModelSourceError(
                        f"model mirror {uri}: {rel} does not match the manifest (size {size} vs {meta['size']}, "
                        f"sha256 {sha[:12]}… vs {meta['sha256'][:12]}…); refusing to load"
                    )
            (tmp / ".verified").write_text(uri)
        except ModelSourceError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except Exception as err:  # a file missing from the mirror, a dropped connection
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelSourceError(f"model mirror {uri}: download failed ({type(err).__name__}: {err})") from None
        shutil.rmtree(dest, ignore_errors=True)  # an unverified leftover only: verified ones returned above
        tmp.rename(dest)
    return dest


def _sizes_match(dest: Path, files: dict[str, Any]) -> bool:
    return all((dest / rel).is_file() and (dest / rel).stat().st_size == m["size"] for rel, m in files.items())
