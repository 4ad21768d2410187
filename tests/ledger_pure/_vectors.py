"""Loader for the RFC 9162 proof vectors (transparency-dev/merkle testdata)."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Vendored in the tree with their licence (vectors/rfc9162/README.md, LICENSE).
VECTOR_DIR = Path(os.environ.get("USUFRUCT_VECTORS_DIR", Path(__file__).resolve().parent / "vectors" / "rfc9162"))

# The 8 RFC 6962 test leaves used by transparency-dev/merkle (testonly/constants.go).
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]


def b64(value: str) -> bytes:
    # Vectors hold deliberately bad hashes (wrong lengths, empty strings), never
    # bad base64, so a decoding error here is a broken vector file.
    return base64.b64decode(value, validate=True)


@dataclass(frozen=True)
class InclusionVector:
    name: str
    leaf_index: int
    tree_size: int
    root: bytes
    leaf_hash: bytes
    proof: list[bytes]
    want_err: bool


@dataclass(frozen=True)
class ConsistencyVector:
    name: str
    size1: int
    size2: int
    root1: bytes
    root2: bytes
    proof: list[bytes]
    want_err: bool


def _files(kind: str) -> list[Path]:
    return sorted((VECTOR_DIR / kind).rglob("*.json"))


def _load(path: Path) -> tuple[str, dict[str, Any]]:
    return path.relative_to(VECTOR_DIR).as_posix(), json.loads(path.read_text())


def _proof(raw: dict[str, Any]) -> list[bytes]:
    # Go serialises an empty proof slice as null; missing means the same.
    return [b64(p) for p in raw.get("proof") or []]


def inclusion_vectors() -> list[InclusionVector]:
    out = []
    for path in _files("inclusion"):
        name, raw = _load(path)
        out.append(
            InclusionVector(
                name,
                int(raw["leafIdx"]),
                int(raw["treeSize"]),
                b64(raw.get("root") or ""),
                b64(raw.get("leafHash") or ""),
                _proof(raw),
                bool(raw["wantErr"]),
            )
        )
    return out


def consistency_vectors() -> list[ConsistencyVector]:
    out = []
    for path in _files("consistency"):
        name, raw = _load(path)
        out.append(
            ConsistencyVector(
                name,
                int(raw["size1"]),
                int(raw["size2"]),
                b64(raw.get("root1") or ""),
                b64(raw.get("root2") or ""),
                _proof(raw),
                bool(raw["wantErr"]),
            )
        )
    return out
