"""Parallel Ed25519 signing for the batched sequencer (the ledger writer's hub signatures).

The sequencer itself stays single-threaded (one writer, one chain); the signing,
which releases the GIL, runs in a thread pool. With PyNaCl installed it goes through
libsodium, which signs in ~15 µs here against ~20 µs for ``cryptography`` (OpenSSL);
without it, ``cryptography`` is used. Ed25519 signatures are deterministic, so both
produce the same bytes (a test checks it). Node receipts are verified where they are
accepted (``compute.services._check_receipt``), not here. Pure module: no Django.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

try:  # libsodium through PyNaCl: the faster Ed25519 on this machine
    from nacl.bindings import crypto_sign, crypto_sign_seed_keypair
except ImportError:  # pragma: no cover - cryptography alone is enough, only slower
    crypto_sign = crypto_sign_seed_keypair = None  # type: ignore[assignment]


def _sign_one(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    if crypto_sign is None:
        return key.sign
    _, secret = crypto_sign_seed_keypair(key.private_bytes_raw())
    return lambda message: crypto_sign(message, secret)[:64]


class ParallelSigner:
    """A ``signer`` for the batched sequencer (``ledger.services._prepare``): signatures across a thread pool.

    Called with all the bodies of a batch it returns their signatures; ``submit``
    starts signing a part while the sequencer goes on building the next bodies.
    Give it a pool of its own, so that signing never queues behind the next batch's
    receipt verification.
    """

    def __init__(self, key: Ed25519PrivateKey, pool: ThreadPoolExecutor, chunk: int = 512) -> None:
        self._sign = _sign_one(key)
        self._pool = pool
        self.chunk = chunk

    def _part(self, bodies: Sequence[bytes]) -> list[bytes]:
        sign = self._sign
        return [sign(b) for b in bodies]

    def submit(self, bodies: Sequence[bytes]) -> Future[list[bytes]]:
        return self._pool.submit(self._part, bodies)

    def __call__(self, bodies: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for part in [self.submit(bodies[i : i + self.chunk]) for i in range(0, len(bodies), self.chunk)]:
            out.extend(part.result())
        return out
