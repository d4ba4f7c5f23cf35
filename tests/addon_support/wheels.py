"""Real wheel files, tiny and made on the spot, for installing with pip without any network."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel of one module ``name`` (dashes as underscores) that pip installs as is."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {requirement}\n" for requirement in requires)
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": metadata,
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: stepstone-tests\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def probe_wheelhouse(folder: Path) -> Path:
    """Two packages, one needing the other; returns a requirements file pinning both."""
    make_wheel(folder, "stepstone-probe-a", "1.0")
    make_wheel(folder, "stepstone-probe-b", "2.0", ("stepstone-probe-a==1.0",))
    requirements = folder.parent / "requirements.txt"
    requirements.write_text("# test pins\nstepstone-probe-b==2.0\nstepstone-probe-a==1.0\n")
    return requirements
