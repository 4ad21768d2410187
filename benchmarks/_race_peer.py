"""One peer of the Paillier race, in whatever venv holds it; prints its rates as one JSON line.

    <venv>/bin/python benchmarks/_race_peer.py --peer ours|phe|fate|heu --bits 2048 [--workers 2]

Run by ``benchmarks/paillier_race.py``; stdlib + the peer's own package + numpy. Every peer gets
the same work: a vector of random 40-bit signed values (randomised encryption), decryption of
those ciphertexts, ciphertext + ciphertext, and ciphertext × a 16-bit plaintext scalar (the size
of a quantised feature in ``hetero_lr``'s Xᵀ·E(d)). ``--workers 2`` measures the product's own
two-core path (``ours``: the engine's forked pool, for encryption and decryption).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(fn: Callable[[], Any], count: int, seconds: float) -> float:
    """Operations per second of ``fn`` (which does ``count`` operations), repeated for ``seconds``."""
    done, start = 0, time.perf_counter()
    while True:
        fn()
        done += count
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def ours(bits: int, n: int, seconds: float, workers: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from protocol import he

    he.set_workers(workers)
    key = he.PrivateKey.generate(bits)
    pub = key.public
    rng = random.Random(1)
    values = [rng.randint(-(2**40), 2**40) for _ in range(n)]
    scalars = [rng.randint(1, 2**16) for _ in range(n)]
    t = time.perf_counter()
    pub._table()
    table = time.perf_counter() - t
    key._tables()
    cts = pub.encrypt(values)
    assert key.decrypt(cts) == values
    out = {
        "encrypt": timed(lambda: pub.encrypt(values), n, seconds),
        "decrypt": timed(lambda: key.decrypt(cts), n, seconds),
        "add": timed(lambda: pub.add(cts, cts), n, seconds),
        "scalar_mul": timed(lambda: pub.mul_plain(cts, scalars), n, seconds),
        "table_seconds": table,
        "key_holder_encrypt": timed(lambda: key.encrypt(values), n, seconds),
    }
    he.set_workers(1)
    return out


def phe_peer(bits: int, n: int, seconds: float, workers: int) -> dict[str, float]:
    from phe import paillier

    pub, priv = paillier.generate_paillier_keypair(n_length=bits)
    rng = random.Random(1)
    values = [rng.randint(-(2**40), 2**40) for _ in range(n)]
    scalars = [rng.randint(1, 2**16) for _ in range(n)]
    cts = [pub.encrypt(v) for v in values]
    assert [priv.decrypt(c) for c in cts] == values
    return {
        "encrypt": timed(lambda: [pub.encrypt(v) for v in values], n, seconds),
        "decrypt": timed(lambda: [priv.decrypt(c) for c in cts], n, seconds),
        "add": timed(lambda: [a + a for a in cts], n, seconds),
        "scalar_mul": timed(lambda: [a * k for a, k in zip(cts, scalars, strict=True)], n, seconds),
    }


def fate(bits: int, n: int, seconds: float, workers: int) -> dict[str, float]:
    import numpy as np
    from fate_utils import paillier

    sk, pk, coder = paillier.keygen(bits)
    rng = np.random.default_rng(1)
    values = rng.integers(-(2**40), 2**40, n, dtype=np.int64)
    plain = coder.encode_i64_vec(values)
    scalars = coder.encode_i64_vec(rng.integers(1, 2**16, n, dtype=np.int64))
    cts = pk.encrypt_encoded(plain, True)
    assert list(coder.decode_i64_vec(sk.decrypt_to_encoded(cts))) == values.tolist()
    return {
        "encrypt": timed(lambda: pk.encrypt_encoded(plain, True), n, seconds),  # obfuscate=True: with rⁿ
        "encrypt_unrandomised": timed(lambda: pk.encrypt_encoded(plain, False), n, seconds),
        "decrypt": timed(lambda: sk.decrypt_to_encoded(cts), n, seconds),
        "add": timed(lambda: cts.add(pk, cts), n, seconds),
        "scalar_mul": timed(lambda: cts.mul(pk, scalars), n, seconds),
    }


def heu(bits: int, n: int, seconds: float, workers: int) -> dict[str, float]:
    from heu import phe

    kit = phe.setup(phe.SchemaType.ZPaillier, bits)
    enc, dec, ev = kit.encryptor(), kit.decryptor(), kit.evaluator()
    schema = kit.get_schema()
    rng = random.Random(1)
    values = [rng.randint(-(2**40), 2**40) for _ in range(n)]
    scalars = [phe.Plaintext(schema, rng.randint(1, 2**16)) for _ in range(n)]
    cts = [enc.encrypt_raw(v) for v in values]
    assert [dec.decrypt_raw(c) for c in cts] == values
    batch = _heu_batch(bits, values, seconds)
    return {
        **batch,
        "encrypt": timed(lambda: [enc.encrypt_raw(v) for v in values], n, seconds),
        "decrypt": timed(lambda: [dec.decrypt_raw(c) for c in cts], n, seconds),
        "add": timed(lambda: [ev.add(a, a) for a in cts], n, seconds),
        "scalar_mul": timed(lambda: [ev.mul(a, k) for a, k in zip(cts, scalars, strict=True)], n, seconds),
    }


def _heu_batch(bits: int, values: list[int], seconds: float) -> dict[str, float]:
    """HEU's vector API (``heu.numpy``), which runs on its own thread pool: its fastest path."""
    import numpy as np
    from heu import numpy as hnp
    from heu import phe

    kit = hnp.setup(phe.SchemaType.ZPaillier, bits)
    encoder = phe.IntegerEncoder(kit.get_schema())
    enc, dec, ev = kit.encryptor(), kit.decryptor(), kit.evaluator()
    plain = kit.array(np.array(values, dtype=np.int64), encoder)
    scalars = kit.array(np.random.default_rng(1).integers(1, 2**16, len(values), dtype=np.int64), encoder)
    cts = enc.encrypt(plain)
    assert dec.decrypt(cts).to_numpy(encoder).tolist() == values
    n = len(values)
    return {
        "encrypt_batch": timed(lambda: enc.encrypt(plain), n, seconds),
        "decrypt_batch": timed(lambda: dec.decrypt(cts), n, seconds),
        "add_batch": timed(lambda: ev.add(cts, cts), n, seconds),
        "scalar_mul_batch": timed(lambda: ev.mul(cts, scalars), n, seconds),
    }


PEERS = {"ours": ours, "phe": phe_peer, "fate": fate, "heu": heu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", choices=sorted(PEERS), required=True)
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--values", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    print(json.dumps(PEERS[args.peer](args.bits, args.values, args.seconds, args.workers)))


if __name__ == "__main__":
    main()
