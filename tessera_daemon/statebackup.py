"""``tessera-daemon state export|import``: back up and restore detector state.

What is detector state depends on the deployment (``transport.kind``):

* ``memory`` (``run``): the checkpoint file ``run.ckpt`` in ``daemon.state_dir`` (it holds the event
  book too);
* ``redis`` (split): per partition the checkpoint and the committed-window mark, the partition map
  (token -> cohort) and the event log stream ``<prefix>:events`` (entry ids kept).

The archive is a gzip-compressed tar: ``manifest.json`` (format, kind, prefix, created, one record per
member with its SHA-256) and the members. Checkpoints are validated (magic, schema, checksum) on export
and again on import, and every member's digest is checked before anything is written. Import refuses to
overwrite existing state unless ``--replace``; into Redis it writes each checkpoint with its
committed mark in one MULTI/EXEC, then the partition map and the event log entries with their ids.
Frames are not state (a restored worker resumes from its checkpoint and reads what the streams still
hold), so they are not exported.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera_daemon.config import Config
from tessera_daemon.engine.checkpoint import read_body
from tessera_daemon.errors import CheckpointError, ConfigError
from tessera_daemon.localstate import FILENAME, write_atomic
from tessera_daemon.transport.keys import Keys

FORMAT = "tessera-state/1"


@dataclass(frozen=True, slots=True)
class Summary:
    kind: str
    checkpoints: int
    events: int
    path: str

    def to_obj(self) -> dict[str, Any]:
        return {"kind": self.kind, "checkpoints": self.checkpoints, "events": self.events, "path": self.path}


def _check_ckpt(name: str, blob: bytes) -> None:
    try:
        read_body(blob)
    except CheckpointError as exc:
        raise CheckpointError(f"{name}: {exc}") from exc


def _redis(cfg: Config) -> Any:
    import redis  # noqa: PLC0415 - only the split deployment needs it

    return redis.Redis.from_url(cfg.transport.redis.url, socket_timeout=cfg.transport.redis.socket_timeout_s)


def _tag(key: str, prefix: str, suffix: str) -> str | None:
    head, tail = f"{prefix}:{{", f"}}:{suffix}"
    if key.startswith(head) and key.endswith(tail):
        return key[len(head) : -len(tail)]
    return None


def _collect(cfg: Config) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The members (name -> bytes) and the manifest's kind-specific fields."""
    members: dict[str, bytes] = {}
    if cfg.transport.kind != "redis":
        if not cfg.daemon.state_dir:
            raise ConfigError("daemon.state_dir", "is empty: there is no local state to export")
        path = Path(cfg.daemon.state_dir) / FILENAME
        if path.exists():
            blob = path.read_bytes()
            _check_ckpt(str(path), blob)
            members[f"checkpoints/{FILENAME}"] = blob
        return members, {"state_dir": cfg.daemon.state_dir}
    keys = Keys(cfg.transport.redis.prefix)
    r = _redis(cfg)
    try:
        for raw in r.scan_iter(match=f"{keys.prefix}:{{*}}:checkpoint", count=1000):
            key = raw.decode()
            token = _tag(key, keys.prefix, "checkpoint")
            blob = r.get(key)
            if token is None or blob is None:
                continue
            _check_ckpt(key, blob)
            members[f"checkpoints/{token}"] = blob
            committed = r.get(keys.committed(token))
            if committed is not None:
                members[f"committed/{token}"] = committed
        parts = {k.decode(): v.decode() for k, v in r.hgetall(keys.partitions).items()}
        members["partitions.json"] = json.dumps(parts, sort_keys=True).encode()
        entries = [
            {"id": eid.decode(), "fields": {k.decode(): v.decode() for k, v in fields.items()}}
            for eid, fields in r.xrange(keys.events)
        ]
        members["events.jsonl"] = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode()
    finally:
        r.close()
    return members, {"prefix": keys.prefix}


def export_state(cfg: Config, out: Path) -> Summary:
    members, where = _collect(cfg)
    manifest = {
        "format": FORMAT,
        "kind": "redis" if cfg.transport.kind == "redis" else "state_dir",
        "created_ts": time.time(),
        **where,
        "members": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(members.items())},
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("manifest.json", json.dumps(manifest, indent=1).encode()), *sorted(members.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(manifest["created_ts"])
            tar.addfile(info, io.BytesIO(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buf.getvalue())
    return _summary(manifest["kind"], members, str(out))


def _summary(kind: str, members: dict[str, bytes], path: str) -> Summary:
    events = members.get("events.jsonl", b"").count(b"\n")
    return Summary(kind, sum(1 for n in members if n.startswith("checkpoints/")), events, path)


def read_archive(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Manifest and members, every digest and checkpoint validated; CheckpointError otherwise."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            files: dict[str, bytes] = {}
            for info in tar.getmembers():
                if not info.isfile() or info.name.startswith("/") or ".." in info.name.split("/"):
                    raise CheckpointError(f"{path}: unexpected member {info.name!r}")
                fh = tar.extractfile(info)
                assert fh is not None
                files[info.name] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a state archive ({exc})") from exc
    try:
        manifest = json.loads(files.pop("manifest.json"))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: no readable manifest.json") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    want = manifest.get("members", {})
    if set(want) != set(files):
        raise CheckpointError(f"{path}: members differ from the manifest: {sorted(set(want) ^ set(files))}")
    for name, data in files.items():
        if hashlib.sha256(data).hexdigest() != want[name]:
            raise CheckpointError(f"{path}: {name}: digest mismatch (corrupted)")
        if name.startswith("checkpoints/"):
            _check_ckpt(name, data)
    return manifest, files


def import_state(cfg: Config, src: Path, *, replace: bool = False) -> Summary:
    manifest, files = read_archive(src)
    kind = "redis" if cfg.transport.kind == "redis" else "state_dir"
    if manifest["kind"] != kind:
        raise ConfigError("transport.kind", f"the archive holds {manifest['kind']} state; this configuration is {kind}")
    if kind == "state_dir":
        if not cfg.daemon.state_dir:
            raise ConfigError("daemon.state_dir", "is empty: nowhere to import to")
        target = Path(cfg.daemon.state_dir) / FILENAME
        blob = files.get(f"checkpoints/{FILENAME}")
        if blob is not None:
            if target.exists() and not replace:
                raise ConfigError("daemon.state_dir", f"{target} exists (use --replace to overwrite it)")
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, blob)
        return _summary(kind, files, str(target))
    keys = Keys(cfg.transport.redis.prefix)
    tokens = [n.split("/", 1)[1] for n in files if n.startswith("checkpoints/")]
    r = _redis(cfg)
    try:
        if not replace:
            taken = [t for t in tokens if r.exists(keys.checkpoint(t))]
            if taken or r.exists(keys.events):
                raise ConfigError(
                    "transport.redis.prefix",
                    f"{keys.prefix!r} already holds state ({len(taken)} checkpoints"
                    f"{', an event log' if r.exists(keys.events) else ''}; use --replace to overwrite it)",
                )
        for t in tokens:
            pipe = r.pipeline(transaction=True)
            pipe.set(keys.checkpoint(t), files[f"checkpoints/{t}"])
            committed = files.get(f"committed/{t}")
            if committed is not None:
                pipe.set(keys.committed(t), committed)
            pipe.execute()
        parts = json.loads(files.get("partitions.json", b"{}"))
        if parts:
            r.hset(keys.partitions, mapping=parts)
        if replace:
            r.delete(keys.events)
        pipe = r.pipeline(transaction=False)
        for line in files.get("events.jsonl", b"").decode().splitlines():
            e = json.loads(line)
            pipe.xadd(keys.events, e["fields"], id=e["id"])
        pipe.execute()
    finally:
        r.close()
    return _summary(kind, files, f"{cfg.transport.redis.url.split('@')[-1]} prefix {keys.prefix}")
