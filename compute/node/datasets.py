"""Local datasets: read CSV files, infer a schema, build the signed manifest.

The manifest describes a dataset (columns, types, roles, row count, content digest)
and is what the hub lists. No row ever leaves this module's caller.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

ROLES = {"id", "feature", "label"}


class DatasetError(ValueError):
    pass


def safe_path(data_dir: Path, local_name: str) -> Path:
    """The CSV for ``local_name``; refuses names that would escape the data directory."""
    if not local_name or not local_name.replace("_", "").replace("-", "").isalnum():
        raise DatasetError(f"invalid dataset name {local_name!r}")
    path = (data_dir / f"{local_name}.csv").resolve()
    if path.parent != data_dir.resolve() or not path.exists():
        raise DatasetError(f"no local dataset {local_name!r}")
    return path


def read_rows(data_dir: Path, local_name: str) -> list[dict[str, str]]:
    with safe_path(data_dir, local_name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def infer_type(values: list[str]) -> str:
    present = [v for v in values if v.strip() != ""]
    if not present:
        return "string"
    try:
        for v in present:
            int(v)
    except ValueError:
        pass
    else:
        return "integer"
    try:
        [float(v) for v in present]
    except ValueError:
        return "string"
    return "number"


def manifest(data_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Schema, row count and digest of one local dataset, described by ``spec``."""
    local = spec["local"]
    path = safe_path(data_dir, local)
    raw = path.read_bytes()
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    roles = spec.get("roles", {})
    for name, role in roles.items():
        if name not in header:
            raise DatasetError(f"{local}: role given for unknown column {name!r}")
        if role not in ROLES:
            raise DatasetError(f"{local}: role {role!r} is not one of {sorted(ROLES)}")
    columns = []
    for name in header:
        column_type = infer_type([r[name] for r in rows])
        role = roles.get(name, "feature")
        columns.append({"name": name, "type": column_type, "role": role})
    return {
        "local": local,
        "name": spec.get("name", local),
        "description": spec.get("description", ""),
        "tags": list(spec.get("tags", [])),
        "columns": columns,
        "row_count": len(rows),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
