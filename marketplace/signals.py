"""What the marketplace tells the apps above it, without importing them.

``right_revoking`` is sent inside the revocation's transaction. Each receiver may return
the ids of other rights it will need to lock (for lock ordering) when asked with
``phase="lock_scope"``, and does its part (e.g. compute cancels the right's jobs and
returns their ids) with ``phase="revoke"``. When a right's term ends it is sent with
``phase="expire"`` (compute retires the models trained under it). Receivers run
synchronously, in the caller's transaction: an error rolls the revocation back.
"""

from __future__ import annotations

from django.dispatch import Signal

right_revoking = Signal()
