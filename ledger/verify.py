"""``python -m ledger.verify invoice.json``: an issued document checked offline (see ``audit.invoice``).

Django-free: it runs where only the standard library and ``cryptography`` are installed."""

from __future__ import annotations

from audit.invoice import main

if __name__ == "__main__":
    raise SystemExit(main())
