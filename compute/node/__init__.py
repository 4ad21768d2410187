"""A data node: a Django-free Celery worker that runs next to a provider's data.

It imports no hub model and opens no hub database connection (tests/test_boundaries.py
proves both). It receives signed steps on ``node.<slug>``, computes on local files and
answers with signed messages and signed usage receipts on the ``hub`` queue.
"""
