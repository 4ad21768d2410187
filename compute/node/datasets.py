"""Local datasets: infer a schema and build the signed manifest, whatever the source (``sources``).

The manifest describes a dataset (columns, types, roles, row count, content digest)
and is what the hub lists. No row ever leaves this module's caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compute.node import sources
from protocol.bins import edges_problem

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


def published_quartiles(nums: list[float]) -> tuple[float, float, float]:
    """The quartiles a manifest publishes of sorted values: interpolated, and rounded to 2 decimals
    (a published statistic, not a copy of any one value). The value preview bins by these."""
    n = len(nums)

    def quantile(q: float) -> float:
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        return round(nums[lo] + (nums[hi] - nums[lo]) * (pos - lo), 2)

    return quantile(0.25), quantile(0.5), quantile(0.75)


def column_summary(values: list[str], column_type: str, role: str, min_group: int) -> dict[str, Any]:
    """Per-column statistics safe to publish: nothing that identifies a row.

    No minimum or maximum (an extreme is one person); quartiles and moments only when at
    least ``min_group`` values are present; ID columns get only their fill rate.
    """
    present = [v for v in values if v.strip() != ""]
    summary: dict[str, Any] = {"filled": round(len(present) / len(values), 4) if values else 0.0}
    if role == "id" or len(present) < min_group:
        summary["suppressed"] = role != "id"
        return summary
    if column_type in ("number", "integer"):
        nums = sorted(float(v) for v in present)
        n = len(nums)
        mean = sum(nums) / n
        std = (sum((x - mean) ** 2 for x in nums) / n) ** 0.5

        p25, p50, p75 = published_quartiles(nums)
        summary.update(mean=round(mean, 4), std=round(std, 4), p25=p25, p50=p50, p75=p75)
    else:
        counts: dict[str, int] = {}
        for v in present:
            counts[v] = counts.get(v, 0) + 1
        summary["distinct"] = len(counts)
        common = sorted(((k, c) for k, c in counts.items() if c >= min_group), key=lambda kc: -kc[1])
        summary["top"] = [[k, c] for k, c in common[:5]]
    return summary


def manifest(data_dir: Path, spec: dict[str, Any], min_group: int = 10) -> dict[str, Any]:
    """Schema, row count and digest of one local dataset, described by ``spec`` (any source)."""
    local = spec["local"]
    if not local or not str(local).replace("_", "").replace("-", "").isalnum():
        raise DatasetError(f"invalid dataset name {local!r}")
    try:
        header = sources.header(data_dir, spec)
        by_column = sources.read_columns(data_dir, spec, header)
    except sources.SourceError as exc:
        raise DatasetError(f"{local}: {exc}") from None
    n_rows = len(next(iter(by_column.values()))) if by_column else 0
    roles = spec.get("roles", {})
    for name, role in roles.items():
        if name not in header:
            raise DatasetError(f"{local}: role given for unknown column {name!r}")
        if role not in ROLES:
            raise DatasetError(f"{local}: role {role!r} is not one of {sorted(ROLES)}")
    declared = spec.get("bins", {})
    for name, edges in declared.items():
        if name not in header:
            raise DatasetError(f"{local}: bins given for unknown column {name!r}")
        problem = edges_problem(edges)
        if problem:
            raise DatasetError(f"{local}: bins of {name!r}: {problem}")
    columns = []
    for name in header:
        values = list(by_column[name])
        column_type = infer_type(values)
        role = roles.get(name, "feature")
        if name in declared and column_type not in ("number", "integer"):
            raise DatasetError(f"{local}: bins given for {name!r}, which is not numeric")
        columns.append(
            {
                "name": name,
                "type": column_type,
                "role": role,
                "summary": column_summary(values, column_type, role, min_group),
                # Histogram bins the provider declares for the column (published, so any consumer can ask for them).
                **({"bins": list(declared[name])} if name in declared else {}),
            }
        )
    return {
        "local": local,
        "name": spec.get("name", local),
        "description": spec.get("description", ""),
        "tags": list(spec.get("tags", [])),
        "columns": columns,
        "row_count": n_rows,
        "sha256": sources.digest(data_dir, spec),
    }
