"""C2SP signed notes and transparency-log checkpoints, signed with Ed25519.

Formats:

* note (c2sp.org/signed-note): ``text`` ending in a newline, a blank line, then
  one or more lines ``— <key name> <base64(4-byte key ID || signature)>``;
* checkpoint (c2sp.org/tlog-checkpoint): a note whose text is
  ``<origin>\\n<decimal size>\\n<base64 root hash>\\n`` plus optional extension lines;
* log signatures use signed-note type 0x01 (Ed25519 over the note text);
* witness cosignatures use type 0x04, ``cosignature/v1`` (c2sp.org/tlog-cosignature):
  an Ed25519 signature over ``"cosignature/v1\\ntime <t>\\n" || text``, carried as
  ``key ID || u64 big-endian t || signature``.

Parsing is strict: every malformed input raises :class:`CheckpointError` with a
message naming the defect.  Nothing in a note may be trusted before
:func:`verify_note` (or :func:`verify_cosignature`) has succeeded.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "MAX_SIGNATURES",
    "SIG_COSIGNATURE_V1",
    "SIG_ED25519",
    "Checkpoint",
    "CheckpointError",
    "NoteSignature",
    "SignatureError",
    "SignedNote",
    "VerifierKey",
    "add_cosignature",
    "cosignature_message",
    "encode_vkey",
    "key_id",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_note",
    "parse_vkey",
    "sign_checkpoint",
    "sign_note",
    "verify_cosignature",
    "verify_note",
]

SIG_ED25519 = 0x01  # signed-note §Signature types
SIG_COSIGNATURE_V1 = 0x04  # tlog-cosignature, timestamped Ed25519
# signed-note: verifiers MUST accept at least 16 signatures and SHOULD cap them.
MAX_SIGNATURES = 64
MAX_TREE_SIZE = 2**64 - 1  # RFC 9162 tree sizes are uint64
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature

_SIG_PREFIX = "\u2014 "  # EM DASH, SPACE
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-f]{8}\Z")
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64


class CheckpointError(ValueError):
    """A note, checkpoint, verifier key or signature is malformed or invalid."""


class SignatureError(CheckpointError):
    """A note carries no valid signature from the expected key."""


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError:
        raise CheckpointError(f"{what} is not valid base64") from None
    # Reject alternative encodings of the same bytes (non-zero padding bits),
    # so every accepted note has exactly one serialization.
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


def _check_key_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise CheckpointError(f"invalid key name {name!r}: must be non-empty, without spaces or '+'")


def _check_public_key(public_key: bytes) -> None:
    if len(public_key) != _ED25519_KEY_SIZE:
        raise CheckpointError(f"Ed25519 public key is {len(public_key)} bytes, expected 32")


def key_id(name: str, public_key: bytes, sig_type: int = SIG_ED25519) -> bytes:
    """SHA-256(name || 0x0A || sig_type || public key)[:4], per signed-note §Signatures."""
    _check_key_name(name)
    return sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A parsed vkey ``<name>+<hex key ID>+<base64(type || public key)>``."""

    name: str
    key_id: bytes
    sig_type: int
    public_key: bytes

    def encode(self) -> str:
        material = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{material}"


def encode_vkey(name: str, public_key: bytes, sig_type: int = SIG_ED25519) -> str:
    """Verifier key string for an Ed25519 key (type 0x01, or 0x04 for a cosigner)."""
    _check_public_key(public_key)
    return VerifierKey(name, key_id(name, public_key, sig_type), sig_type, public_key).encode()


def parse_vkey(vkey: str) -> VerifierKey:
    """Parse and check a vkey; only the Ed25519 types 0x01 and 0x04 are accepted."""
    # Split on the first two '+' only: base64 key material may contain '+'.
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("verifier key must have the form <name>+<key id>+<key>")
    name, id_hex, material_b64 = parts
    _check_key_name(name)
    if not _HEX8.match(id_hex):
        raise CheckpointError("verifier key ID must be 8 lowercase hex digits")
    material = _b64decode(material_b64, "verifier key material")
    if not material:
        raise CheckpointError("verifier key material is empty")
    sig_type, public_key = material[0], material[1:]
    if sig_type not in (SIG_ED25519, SIG_COSIGNATURE_V1):
        raise CheckpointError(f"unsupported verifier key type 0x{sig_type:02x}")
    _check_public_key(public_key)
    if key_id(name, public_key, sig_type).hex() != id_hex:
        raise CheckpointError("verifier key ID does not match its name and public key")
    return VerifierKey(name, bytes.fromhex(id_hex), sig_type, public_key)


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin, size and RFC 9162 root hash, plus opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or _CONTROL.search(self.origin):
            raise CheckpointError("checkpoint origin must be a non-empty single line")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {self.size!r} is not a uint64")
        if not isinstance(self.root, bytes) or len(self.root) != 32:
            raise CheckpointError("root hash must be 32 bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext or _CONTROL.search(ext):
                raise CheckpointError("extension lines must be non-empty single lines")

    def body(self) -> bytes:
        """The note text: origin, size and base64 root, then extensions, one per line."""
        root = base64.b64encode(self.root).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the algorithm's signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> bytes:
        blob = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_SIG_PREFIX}{self.name} {blob}\n".encode()


@dataclass(frozen=True)
class SignedNote:
    """A note's text (including its final newline) and its signature lines, in order."""

    text: bytes
    signatures: list[NoteSignature]

    def encode(self) -> bytes:
        return self.text + b"\n" + b"".join(s.line() for s in self.signatures)


def _check_text(text: bytes) -> None:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("note text is not valid UTF-8") from None
    if not decoded.endswith("\n"):
        raise CheckpointError("note text does not end with a newline")
    if _CONTROL.search(decoded):
        raise CheckpointError("note text contains a control character other than newline")


def sign_note(text: bytes, name: str, private_key: Ed25519PrivateKey) -> bytes:
    """A note of ``text`` with one signed-note Ed25519 (type 0x01) signature."""
    _check_text(text)
    public_key = private_key.public_key().public_bytes_raw()
    sig = NoteSignature(name, key_id(name, public_key), private_key.sign(text))
    return SignedNote(text, [sig]).encode()


def sign_checkpoint(cp: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> bytes:
    """The checkpoint as a note signed by the log key ``name`` (normally ``cp.origin``)."""
    return sign_note(cp.body(), name, private_key)


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 Ed25519 cosigner signs (tlog-cosignature)."""
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError(f"cosignature timestamp {timestamp!r} is out of range")
    return b"cosignature/v1\ntime %d\n" % timestamp + text


def add_cosignature(note: bytes, name: str, private_key: Ed25519PrivateKey, timestamp: int | None = None) -> bytes:
    """Append a witness's cosignature/v1 line to a checkpoint note.

    The caller (the witness) is responsible for having verified the log's
    signature and consistency with its previous view before cosigning.
    """
    parsed = parse_note(note)
    parse_checkpoint(parsed.text)
    ts = int(time.time()) if timestamp is None else timestamp
    message = cosignature_message(parsed.text, ts)
    public_key = private_key.public_key().public_bytes_raw()
    sig = NoteSignature(
        name,
        key_id(name, public_key, SIG_COSIGNATURE_V1),
        ts.to_bytes(8, "big") + private_key.sign(message),
    )
    return SignedNote(parsed.text, [*parsed.signatures, sig]).encode()


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise CheckpointError("signature line does not start with an em dash and a space")
    fields = line[len(_SIG_PREFIX) :].split(" ")
    if len(fields) != 2:
        raise CheckpointError("signature line is not '— <key name> <base64 signature>'")
    name, blob_b64 = fields
    _check_key_name(name)
    blob = _b64decode(blob_b64, "signature")
    if len(blob) <= 4:
        raise CheckpointError("signature is too short to hold a key ID and a signature")
    return NoteSignature(name, blob[:4], blob[4:])


def parse_note(data: bytes) -> SignedNote:
    """Split a signed note into text and signature lines; no signature is checked."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("note is not valid UTF-8") from None
    if _CONTROL.search(decoded):
        raise CheckpointError("note contains a control character other than newline")
    if not decoded.endswith("\n"):
        raise CheckpointError("note does not end with a newline")
    # signed-note: the text may contain blank lines; the LAST one separates it
    # from the signatures.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no blank line separating text from signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block:
        raise CheckpointError("note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"note has more than {MAX_SIGNATURES} signatures")
    return SignedNote(text.encode(), [_parse_signature_line(line) for line in lines])


def parse_checkpoint(text: bytes | str) -> Checkpoint:
    """Parse checkpoint note text (tlog-checkpoint §Note text) strictly."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("checkpoint is not valid UTF-8") from None
    if _CONTROL.search(text):
        raise CheckpointError("checkpoint contains a control character other than newline")
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint has fewer than three lines")
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise CheckpointError("checkpoint origin is empty")
    if not _DECIMAL.match(size_line):
        if re.fullmatch(r"0[0-9]+", size_line):
            raise CheckpointError("tree size has a leading zero")
        raise CheckpointError("tree size is not a decimal number")
    # Length check first: int() refuses very long digit strings with its own error.
    if len(size_line) > 20 or int(size_line) > MAX_TREE_SIZE:
        raise CheckpointError("tree size does not fit in 64 bits")
    root = _b64decode(root_line, "root hash")
    if len(root) != 32:
        raise CheckpointError(f"root hash is {len(root)} bytes, expected 32")
    if any(not ext for ext in extensions):
        raise CheckpointError("checkpoint has an empty extension line")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


def _matching(note: SignedNote, name: str, kid: bytes) -> list[NoteSignature]:
    # signed-note: only (name, key ID) identifies a key; lines from other keys
    # are ignored, not rejected, so witnesses can add theirs.
    found = [s for s in note.signatures if s.name == name and s.key_id == kid]
    if not found:
        raise SignatureError(f"note has no signature from key {name}+{kid.hex()}")
    return found


def verify_note(note: SignedNote, name: str, public_key: bytes) -> None:
    """Require a valid Ed25519 (type 0x01) signature by ``name``/``public_key``.

    Every line with the key's name and ID must verify; any bad one rejects the
    whole note (signed-note's SHOULD).
    """
    _check_public_key(public_key)
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    for sig in _matching(note, name, key_id(name, public_key)):
        if len(sig.signature) != _ED25519_SIG_SIZE:
            raise SignatureError(f"signature by {name} is not a 64-byte Ed25519 signature")
        try:
            verifier.verify(sig.signature, note.text)
        except InvalidSignature:
            raise SignatureError(f"signature by {name} does not verify") from None


def verify_cosignature(note: SignedNote, name: str, public_key: bytes) -> int:
    """Require a valid cosignature/v1 (type 0x04) by ``name``; return its timestamp.

    With several lines from the key, all must verify and the latest time wins.
    """
    _check_public_key(public_key)
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    latest = -1
    for sig in _matching(note, name, key_id(name, public_key, SIG_COSIGNATURE_V1)):
        if len(sig.signature) != 8 + _ED25519_SIG_SIZE:
            raise SignatureError(f"cosignature by {name} is not a timestamp and an Ed25519 signature")
        ts = int.from_bytes(sig.signature[:8], "big")
        if ts > MAX_TIMESTAMP:
            raise SignatureError(f"cosignature by {name} has a timestamp beyond 2^63 - 1")
        try:
            verifier.verify(sig.signature[8:], cosignature_message(note.text, ts))
        except InvalidSignature:
            raise SignatureError(f"cosignature by {name} does not verify") from None
        latest = max(latest, ts)
    return latest


def open_checkpoint(data: bytes, name: str, public_key: bytes) -> Checkpoint:
    """Parse a checkpoint note, verify the log's signature, and only then return its contents."""
    note = parse_note(data)
    verify_note(note, name, public_key)
    return parse_checkpoint(note.text)
