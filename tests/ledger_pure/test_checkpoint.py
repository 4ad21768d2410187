"""C2SP signed notes and checkpoints: known answers, round trips, tampering, strict parsing."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given
from hypothesis import strategies as st

from protocol.checkpoint import (
    MAX_SIGNATURES,
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    Checkpoint,
    CheckpointError,
    NoteSignature,
    SignatureError,
    SignedNote,
    add_cosignature,
    cosignature_message,
    encode_vkey,
    key_id,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    verify_cosignature,
    verify_note,
)

EM = "\u2014"

# --- Published examples -------------------------------------------------------

# c2sp.org/signed-note, section "Verifier keys / Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    f"{EM} example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()

# golang.org/x/mod/sumdb/note package documentation: key pair and signed note.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + f"\n{EM} PeterNeumann ".encode()
    + b"x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# Other published vkeys: the Go checksum database (key material contains '+'),
# and a type 0x04 cosigner key from transparency-dev/formats note_cosigv1_test.go.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
COSIGNER_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"

# c2sp.org/tlog-cosignature, "Ed25519 signed message" example.
SPEC_COSIGNED_BODY = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_COSIGNED_MESSAGE = b"cosignature/v1\ntime 1679315147\n" + SPEC_COSIGNED_BODY


def _go_private_key() -> Ed25519PrivateKey:
    material = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert material[0] == SIG_ED25519
    return Ed25519PrivateKey.from_private_bytes(material[1:])


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"usufruct test log").digest())
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"usufruct witness").digest())
ORIGIN = "usufruct.example/ledger"
WITNESS = "witness.example/w1"
CP = Checkpoint(ORIGIN, 20852163, hashlib.sha256(b"root").digest())


def _signed(cp: Checkpoint = CP) -> bytes:
    return sign_checkpoint(cp, ORIGIN, LOG_KEY)


# --- Key IDs and verifier keys ------------------------------------------------


def test_key_id_is_the_truncated_hash_of_name_newline_type_and_key() -> None:
    public = _raw(LOG_KEY)
    by_hand = hashlib.sha256(ORIGIN.encode() + b"\x0a" + b"\x01" + public).digest()[:4]
    assert key_id(ORIGIN, public) == by_hand
    cosig = hashlib.sha256(ORIGIN.encode() + b"\x0a" + b"\x04" + public).digest()[:4]
    assert key_id(ORIGIN, public, SIG_COSIGNATURE_V1) == cosig != by_hand


@pytest.mark.parametrize(
    ("vkey", "name", "hex_id", "sig_type"),
    [
        (SPEC_VKEY, "example.com/foo", "530d903a", SIG_ED25519),
        (GO_VKEY, "PeterNeumann", "c74f20a3", SIG_ED25519),
        (SUMDB_VKEY, "sum.golang.org", "033de0ae", SIG_ED25519),
        (COSIGNER_VKEY, "remora.n621.de", "da77ade7", SIG_COSIGNATURE_V1),
    ],
)
def test_published_verifier_keys_parse_and_their_key_ids_match_the_formula(
    vkey: str, name: str, hex_id: str, sig_type: int
) -> None:
    parsed = parse_vkey(vkey)
    assert (parsed.name, parsed.key_id.hex(), parsed.sig_type) == (
        name,
        hex_id,
        sig_type,
    )
    by_hand = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + parsed.public_key)
    assert by_hand.digest()[:4].hex() == hex_id
    assert key_id(name, parsed.public_key, sig_type).hex() == hex_id
    assert parsed.encode() == vkey
    assert encode_vkey(name, parsed.public_key, sig_type) == vkey


@given(
    st.text(
        st.characters(
            blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
            blacklist_characters="+",
        ),
        min_size=1,
        max_size=40,
    ),
    st.binary(min_size=32, max_size=32),
    st.sampled_from([SIG_ED25519, SIG_COSIGNATURE_V1]),
)
def test_verifier_keys_round_trip(name: str, public: bytes, sig_type: int) -> None:
    if any(c.isspace() for c in name):
        return
    vkey = encode_vkey(name, public, sig_type)
    parsed = parse_vkey(vkey)
    assert (parsed.name, parsed.public_key, parsed.sig_type) == (name, public, sig_type)
    assert parsed.encode() == vkey


_KEY_B64 = SPEC_VKEY.split("+", 2)[2]
_ECDSA_TYPED = base64.b64encode(bytes([0x02]) + bytes(32)).decode()
_SHORT_KEY = base64.b64encode(bytes([SIG_ED25519]) + bytes(31)).decode()


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("example.com/foo+530d903a", "must have the form"),
        (f"+530d903a+{_KEY_B64}", "invalid key name"),
        (f"example com+530d903a+{_KEY_B64}", "invalid key name"),
        (f"example.com/foo+530D903A+{_KEY_B64}", "8 lowercase hex digits"),
        (f"example.com/foo+530d903+{_KEY_B64}", "8 lowercase hex digits"),
        ("example.com/foo+530d903a+not_base64!", "not valid base64"),
        ("example.com/foo+530d903a+", "material is empty"),
        (f"example.com/foo+530d903a+{_ECDSA_TYPED}", "type 0x02"),
        (f"example.com/foo+530d903a+{_SHORT_KEY}", "31 bytes"),
        (f"example.com/foo+00000000+{_KEY_B64}", "does not match"),
        (f"example.com/bar+530d903a+{_KEY_B64}", "does not match"),
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_vkey(vkey)


# --- Published notes ----------------------------------------------------------


def test_the_signed_note_spec_example_verifies_with_its_verifier_key() -> None:
    vkey = parse_vkey(SPEC_VKEY)
    note = parse_note(SPEC_NOTE)
    assert note.text == b"This is an example message.\n"
    verify_note(note, vkey.name, vkey.public_key)
    assert note.encode() == SPEC_NOTE


def test_signing_reproduces_the_go_sumdb_note_byte_for_byte() -> None:
    # Ed25519 is deterministic, so the same key and text give the published note.
    assert sign_note(GO_TEXT, "PeterNeumann", _go_private_key()) == GO_NOTE
    vkey = parse_vkey(GO_VKEY)
    verify_note(parse_note(GO_NOTE), vkey.name, vkey.public_key)


def test_a_note_text_may_contain_blank_lines_and_splits_at_the_last_one() -> None:
    text = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    note = sign_note(text.encode(), "quasimodo.example/salvatore", LOG_KEY)
    parsed = parse_note(note)
    assert parsed.text == text.encode()
    verify_note(parsed, "quasimodo.example/salvatore", _raw(LOG_KEY))


# --- Checkpoint round trips ---------------------------------------------------


def test_checkpoint_body_has_origin_size_and_base64_root_lines() -> None:
    root = base64.b64encode(CP.root).decode()
    assert CP.body() == f"{ORIGIN}\n20852163\n{root}\n".encode()
    assert Checkpoint(ORIGIN, 0, CP.root, ("ext one", "ext2")).body().endswith(b"\next one\next2\n")


def test_signed_checkpoint_round_trips_through_parse_and_verify() -> None:
    data = _signed()
    note = parse_note(data)
    assert note.text == CP.body()
    assert [(s.name, s.key_id) for s in note.signatures] == [(ORIGIN, key_id(ORIGIN, _raw(LOG_KEY)))]
    assert len(note.signatures[0].signature) == 64
    verify_note(note, ORIGIN, _raw(LOG_KEY))
    assert parse_checkpoint(note.text) == CP
    assert note.encode() == data
    assert open_checkpoint(data, ORIGIN, _raw(LOG_KEY)) == CP


def test_checkpoint_with_extension_lines_round_trips() -> None:
    cp = Checkpoint(ORIGIN, 7, CP.root, ("Timestamp: 1700000000", "x"))
    assert open_checkpoint(_signed(cp), ORIGIN, _raw(LOG_KEY)) == cp


_line = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@given(
    _line,
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(_line, max_size=3),
)
def test_any_valid_checkpoint_round_trips(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(cp.body()) == cp
    assert parse_checkpoint(cp.body().decode()) == cp


_names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="+"),
    min_size=1,
    max_size=20,
).filter(lambda n: not any(c.isspace() for c in n))


@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
        min_size=1,
    ),
    st.lists(
        st.builds(
            NoteSignature,
            _names,
            st.binary(min_size=4, max_size=4),
            st.binary(min_size=1, max_size=80),
        ),
        min_size=1,
        max_size=MAX_SIGNATURES,
    ),
)
def test_any_valid_note_round_trips(lines: list[str], signatures: list[NoteSignature]) -> None:
    note = SignedNote(("\n".join(lines) + "\n").encode(), signatures)
    assert parse_note(note.encode()) == note


# --- Cosignatures -------------------------------------------------------------


def test_cosignature_message_matches_the_tlog_cosignature_example() -> None:
    assert cosignature_message(SPEC_COSIGNED_BODY, 1679315147) == SPEC_COSIGNED_MESSAGE


def test_cosignature_line_is_key_id_timestamp_and_signature_over_the_v1_message() -> None:
    body = SPEC_COSIGNED_BODY
    note = sign_note(body, "example.com/behind-the-sofa", LOG_KEY)
    cosigned = add_cosignature(note, WITNESS, WITNESS_KEY, timestamp=1679315147)
    sig = parse_note(cosigned).signatures[-1]
    by_hand = hashlib.sha256(WITNESS.encode() + b"\n\x04" + _raw(WITNESS_KEY)).digest()[:4]
    assert (sig.name, sig.key_id) == (WITNESS, by_hand)
    assert sig.signature[:8] == (1679315147).to_bytes(8, "big")
    Ed25519PublicKey.from_public_bytes(_raw(WITNESS_KEY)).verify(sig.signature[8:], SPEC_COSIGNED_MESSAGE)


def test_cosigned_checkpoint_keeps_the_log_signature_and_verifies_both() -> None:
    now = int(time.time())
    cosigned = add_cosignature(_signed(), WITNESS, WITNESS_KEY)
    assert cosigned.startswith(_signed())
    note = parse_note(cosigned)
    verify_note(note, ORIGIN, _raw(LOG_KEY))
    assert now <= verify_cosignature(note, WITNESS, _raw(WITNESS_KEY)) <= now + 5


def test_several_witnesses_can_cosign_the_same_checkpoint() -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(32))
    note = add_cosignature(_signed(), WITNESS, WITNESS_KEY, timestamp=10)
    note = add_cosignature(note, "witness.example/w2", other, timestamp=20)
    parsed = parse_note(note)
    assert verify_cosignature(parsed, WITNESS, _raw(WITNESS_KEY)) == 10
    assert verify_cosignature(parsed, "witness.example/w2", _raw(other)) == 20
    verify_note(parsed, ORIGIN, _raw(LOG_KEY))


def test_log_signatures_and_cosignatures_are_not_interchangeable() -> None:
    note = parse_note(add_cosignature(_signed(), WITNESS, WITNESS_KEY, timestamp=1))
    with pytest.raises(SignatureError, match="no signature from key"):
        verify_note(note, WITNESS, _raw(WITNESS_KEY))
    with pytest.raises(SignatureError, match="no signature from key"):
        verify_cosignature(note, ORIGIN, _raw(LOG_KEY))


def test_tampered_cosignature_timestamp_or_extension_is_rejected() -> None:
    cp = Checkpoint(ORIGIN, 5, CP.root, ("ext",))
    note = parse_note(add_cosignature(_signed(cp), WITNESS, WITNESS_KEY, timestamp=100))
    sig = note.signatures[-1]
    later = NoteSignature(sig.name, sig.key_id, (101).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(SignedNote(note.text, [later]), WITNESS, _raw(WITNESS_KEY))
    other_ext = Checkpoint(ORIGIN, 5, CP.root, ("exu",)).body()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(SignedNote(other_ext, [sig]), WITNESS, _raw(WITNESS_KEY))
    huge = NoteSignature(sig.name, sig.key_id, (2**63).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(SignatureError, match="2\\^63"):
        verify_cosignature(SignedNote(note.text, [huge]), WITNESS, _raw(WITNESS_KEY))


def test_only_checkpoints_are_cosigned_and_timestamps_must_fit_63_bits() -> None:
    with pytest.raises(CheckpointError, match="fewer than three lines"):
        add_cosignature(GO_NOTE, WITNESS, WITNESS_KEY)
    with pytest.raises(CheckpointError, match="out of range"):
        add_cosignature(_signed(), WITNESS, WITNESS_KEY, timestamp=2**63)
    with pytest.raises(CheckpointError, match="out of range"):
        add_cosignature(_signed(), WITNESS, WITNESS_KEY, timestamp=-1)


# --- Tampering and signature checks -------------------------------------------


def _resigned_text(text: bytes) -> SignedNote:
    """The genuine signature lines attached to a different text."""
    return SignedNote(text, parse_note(_signed()).signatures)


@pytest.mark.parametrize(
    "forged",
    [
        Checkpoint("usufruct.example/other", CP.size, CP.root),
        Checkpoint(ORIGIN, CP.size + 1, CP.root),
        Checkpoint(ORIGIN, CP.size, bytes(32)),
        Checkpoint(ORIGIN, CP.size, CP.root, ("extra",)),
    ],
    ids=["origin", "size", "root", "extension"],
)
def test_signature_does_not_carry_over_to_a_changed_checkpoint(
    forged: Checkpoint,
) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        verify_note(_resigned_text(forged.body()), ORIGIN, _raw(LOG_KEY))


@pytest.mark.parametrize("bit", [0, 7, 100, 511])
def test_flipped_signature_bit_is_rejected(bit: int) -> None:
    sig = parse_note(_signed()).signatures[0]
    flipped = bytearray(sig.signature)
    flipped[bit // 8] ^= 1 << (bit % 8)
    note = SignedNote(CP.body(), [NoteSignature(sig.name, sig.key_id, bytes(flipped))])
    with pytest.raises(SignatureError, match="does not verify"):
        verify_note(note, ORIGIN, _raw(LOG_KEY))
    with pytest.raises(SignatureError):
        open_checkpoint(note.encode(), ORIGIN, _raw(LOG_KEY))


def test_signature_of_the_wrong_length_is_rejected() -> None:
    sig = parse_note(_signed()).signatures[0]
    short = SignedNote(CP.body(), [NoteSignature(sig.name, sig.key_id, sig.signature[:63])])
    with pytest.raises(SignatureError, match="64-byte"):
        verify_note(short, ORIGIN, _raw(LOG_KEY))


def test_note_without_a_signature_from_the_key_is_rejected() -> None:
    note = parse_note(_signed())
    with pytest.raises(SignatureError, match="no signature from key"):
        verify_note(note, ORIGIN, _raw(WITNESS_KEY))  # same name, other key
    with pytest.raises(SignatureError, match="no signature from key"):
        verify_note(note, "usufruct.example/other", _raw(LOG_KEY))  # same key, other name


def test_signatures_from_unknown_keys_are_ignored() -> None:
    foreign = NoteSignature("someone.example/else", b"\x01\x02\x03\x04", bytes(64))
    note = parse_note(_signed())
    verify_note(SignedNote(note.text, [foreign, *note.signatures]), ORIGIN, _raw(LOG_KEY))


def test_a_bad_second_signature_from_the_same_key_rejects_the_note() -> None:
    good = parse_note(_signed()).signatures[0]
    bad = NoteSignature(good.name, good.key_id, bytes(64))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_note(SignedNote(CP.body(), [good, bad]), ORIGIN, _raw(LOG_KEY))


def test_verifying_with_a_malformed_public_key_is_an_error() -> None:
    with pytest.raises(CheckpointError, match="31 bytes"):
        verify_note(parse_note(_signed()), ORIGIN, bytes(31))


# --- Strict parsing: one message per defect -----------------------------------

_SIG = f"{EM} {ORIGIN} " + base64.b64encode(bytes(68)).decode() + "\n"
_GOOD = CP.body().decode() + "\n" + _SIG


MALFORMED_NOTES = [
    (b"\xff\xfe\n\n" + _SIG.encode(), "note is not valid UTF-8"),
    (("a\rb\n\n" + _SIG).encode(), "control character"),
    (("a\tb\n\n" + _SIG).encode(), "control character"),
    (_GOOD.encode()[:-1], "does not end with a newline"),
    (CP.body() + _SIG.encode(), "no blank line separating"),
    (CP.body() + b"\n", "no signature lines"),
    (_GOOD.encode() + b"\n", "no signature lines"),
    ((CP.body().decode() + "\n- name AAAAAAA=\n").encode(), "em dash and a space"),
    ((CP.body().decode() + f"\n{EM}name AAAAAAA=\n").encode(), "em dash and a space"),
    (
        (CP.body().decode() + f"\n{EM}  name AAAAAAA=\n").encode(),
        "is not '— <key name>",
    ),
    ((CP.body().decode() + f"\n{EM} name\n").encode(), "is not '— <key name>"),
    (
        (CP.body().decode() + f"\n{EM} name AAAAAAA= x\n").encode(),
        "is not '— <key name>",
    ),
    ((CP.body().decode() + f"\n{EM} na+me AAAAAAA=\n").encode(), "invalid key name"),
    (
        (CP.body().decode() + f"\n{EM} name not*base64\n").encode(),
        "signature is not valid base64",
    ),
    (
        (CP.body().decode() + f"\n{EM} name AAAAAAA\n").encode(),
        "signature is not valid base64",
    ),
    ((CP.body().decode() + f"\n{EM} name AAAAAAB=\n").encode(), "not canonical base64"),
    ((CP.body().decode() + f"\n{EM} name AAAAAA==\n").encode(), "too short"),
    ((CP.body().decode() + f"\n{EM} name \n").encode(), "too short"),
    ((CP.body().decode() + "\n" + _SIG * (MAX_SIGNATURES + 1)).encode(), "more than"),
]


@pytest.mark.parametrize(
    ("data", "message"),
    MALFORMED_NOTES,
    ids=[f"{i}-{m}" for i, (_, m) in enumerate(MALFORMED_NOTES)],
)
def test_malformed_notes_are_rejected_with_a_specific_message(data: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_note(data)


def test_well_formed_note_used_by_the_malformed_cases_parses() -> None:
    assert parse_note(_GOOD.encode()).text == CP.body()
    assert len(parse_note((CP.body().decode() + "\n" + _SIG * MAX_SIGNATURES).encode()).signatures) == MAX_SIGNATURES


_ROOT = base64.b64encode(CP.root).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"o\n1\n\xff\n", "checkpoint is not valid UTF-8"),
        (f"o\n1\n{_ROOT}\r\n", "control character"),
        (f"o\n1\n{_ROOT}", "does not end with a newline"),
        ("o\n1\n", "fewer than three lines"),
        ("o\n", "fewer than three lines"),
        (f"\n1\n{_ROOT}\n", "origin is empty"),
        (f"o\n\n{_ROOT}\n", "not a decimal number"),
        (f"o\n-1\n{_ROOT}\n", "not a decimal number"),
        (f"o\n+1\n{_ROOT}\n", "not a decimal number"),
        (f"o\n 1\n{_ROOT}\n", "not a decimal number"),
        (f"o\n1 \n{_ROOT}\n", "not a decimal number"),
        (f"o\n0x10\n{_ROOT}\n", "not a decimal number"),
        (f"o\n1_000\n{_ROOT}\n", "not a decimal number"),
        (f"o\n\uff11\n{_ROOT}\n", "not a decimal number"),
        (f"o\n\u0661\n{_ROOT}\n", "not a decimal number"),
        (f"o\n01\n{_ROOT}\n", "leading zero"),
        (f"o\n00\n{_ROOT}\n", "leading zero"),
        (f"o\n18446744073709551616\n{_ROOT}\n", "does not fit in 64 bits"),
        (f"o\n{'9' * 5000}\n{_ROOT}\n", "does not fit in 64 bits"),
        ("o\n1\nnot base64!\n", "root hash is not valid base64"),
        ("o\n1\n\n", "root hash is 0 bytes"),
        (f"o\n1\n{_ROOT[:-2]}B=\n", "root hash is not canonical base64"),
        (f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "root hash is 31 bytes"),
        (f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "root hash is 33 bytes"),
        (f"o\n1\n{_ROOT}\n\next\n", "empty extension line"),
        (f"o\n1\n{_ROOT}\n\n", "empty extension line"),
    ],
)
def test_malformed_checkpoints_are_rejected_with_a_specific_message(text: bytes | str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint(text)


def test_tree_size_zero_and_the_largest_uint64_are_accepted() -> None:
    assert parse_checkpoint(f"o\n0\n{_ROOT}\n").size == 0
    assert parse_checkpoint(f"o\n18446744073709551615\n{_ROOT}\n").size == 2**64 - 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": ""}, "origin"),
        ({"origin": "a\nb"}, "origin"),
        ({"size": -1}, "uint64"),
        ({"size": 2**64}, "uint64"),
        ({"size": True}, "uint64"),
        ({"root": bytes(31)}, "32 bytes"),
        ({"extensions": ("",)}, "extension"),
        ({"extensions": ("a\nb",)}, "extension"),
    ],
)
def test_invalid_checkpoints_cannot_be_constructed(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "origin": "o",
        "size": 1,
        "root": CP.root,
        "extensions": (),
    }
    fields.update(kwargs)
    with pytest.raises(CheckpointError, match=message):
        Checkpoint(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\tb"])
def test_signing_requires_a_valid_key_name(name: str) -> None:
    with pytest.raises(CheckpointError, match="invalid key name"):
        sign_checkpoint(CP, name, LOG_KEY)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"no newline", "end with a newline"),
        (b"\xff\n", "UTF-8"),
        (b"a\x00\n", "control"),
    ],
)
def test_signing_requires_a_valid_note_text(text: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        sign_note(text, ORIGIN, LOG_KEY)
