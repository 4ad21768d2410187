"""What an auditor runs without the platform: the offline verifier and the witness.

Standard library, ``cryptography`` and :mod:`protocol` only; no Django, no hub database.
"""
