"""Django admin: every model registered; ledger, orders, rights and plans read-only."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory

pytestmark = pytest.mark.django_db

READ_ONLY = {"ledgerentry", "checkpoint", "cosignature", "order", "usageright", "priceplan", "message"}


# MerkleNode has a composite primary key (level, index), which Django's admin cannot
# register; its rows are derived from the entries and served through the proof APIs.
NOT_REGISTRABLE = {"MerkleNode"}


def test_every_model_of_the_project_is_in_the_admin() -> None:
    missing = [
        m.__name__
        for m in apps.get_models()
        if m._meta.app_label in ("marketplace", "compute", "ledger") and m not in admin.site._registry
    ]
    assert missing == sorted(NOT_REGISTRABLE)


def test_evidence_cannot_be_edited_or_deleted_in_the_admin(demo) -> None:  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.get(username="admin")
    for model, model_admin in admin.site._registry.items():
        if model._meta.model_name in READ_ONLY:
            assert not model_admin.has_change_permission(request), model
            assert not model_admin.has_delete_permission(request), model
            assert not model_admin.has_add_permission(request), model


def test_admin_pages_render_for_staff(demo, client) -> None:  # type: ignore[no-untyped-def]
    client.force_login(get_user_model().objects.get(username="admin"))
    for model in admin.site._registry:
        if model._meta.app_label in ("marketplace", "compute", "ledger"):
            url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
            assert client.get(url).status_code == 200, url
