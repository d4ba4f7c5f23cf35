"""The batch's record in its output folder (``manifest.json``): the settings it was made with and
each item's state, rewritten atomically after every change so that a killed driver leaves a
readable record and a re-run knows what is already done.

Item states: ``pending`` (not yet run, or interrupted), ``running``, ``done`` (its mesh and JSON
are on disk), ``failed`` (with the error's code and text). A re-run with the same settings skips
done items and runs the rest again, failed ones included (their input may have been fixed).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import UsageError
from backend.result_files import write_json_atomic

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass
class ItemRecord:
    name: str
    task: str
    source: str
    state: str = "pending"
    attempts: int = 0
    """Runs started in the current command (a worker that died mid-item makes one more)."""
    error: dict[str, str] | None = None
    outputs: list[str] = field(default_factory=list)
    """File names (in the output folder) of the mesh and its metadata JSON."""
    seconds: float | None = None
    worker: str | None = None


class Manifest:
    def __init__(self, folder: Path, settings: dict[str, Any]):
        self.folder = folder
        self.path = folder / MANIFEST
        self.settings = settings
        self.items: dict[str, ItemRecord] = {}

    @classmethod
    def open(cls, folder: Path, settings: dict[str, Any]) -> "Manifest":
        """The folder's manifest, or a new one. Refuses a folder made with other settings: its
        results would be mixed with this run's under the same names."""
        manifest = cls(folder, settings)
        if not manifest.path.exists():
            return manifest
        try:
            saved = json.loads(manifest.path.read_text(encoding="utf-8"))
            if saved.get("format") != FORMAT:
                raise ValueError(f"format {saved.get('format')!r}")
            items = {key: ItemRecord(**record) for key, record in saved["items"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{manifest.path} is not a batch manifest this version can read ({exc}); "
                             "choose another --out folder") from None
        if saved.get("settings") != settings:
            raise UsageError(f"{folder} holds a batch made with other settings ({_differences(saved.get('settings'), settings)}); "
                             "resume it with the same options, or choose another --out folder")
        for record in items.values():
            if record.state == "running":  # the driver stopped while it ran
                record.state = "pending"
            record.attempts = 0
        manifest.items = items
        return manifest

    def add(self, key: str, name: str, task: str, source: str) -> ItemRecord:
        record = self.items.get(key)
        if record is None or record.name != name:
            record = self.items[key] = ItemRecord(name, task, source)
        return record

    def is_done(self, key: str) -> bool:
        record = self.items.get(key)
        return (record is not None and record.state == "done"
                and all((self.folder / name).exists() for name in record.outputs))

    def counts(self) -> dict[str, int]:
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for record in self.items.values():
            counts[record.state] += 1
        return counts

    def save(self) -> None:
        write_json_atomic(self.path, {"format": FORMAT, "settings": self.settings,
                                      "items": {key: asdict(record) for key, record in self.items.items()}})


def _differences(before: Any, now: dict[str, Any]) -> str:
    """``params.quality: preview, now default`` for each setting that changed."""
    def flat(value: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            return {prefix: value}
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flat(item, f"{prefix}.{key}" if prefix else key))
        return out

    old, new = flat(before or {}), flat(now)
    return "; ".join(f"{key}: {old.get(key)!r} then, {new.get(key)!r} now"
                     for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key))
