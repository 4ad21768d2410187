"""Accounts and organisations: sign-up, members and roles, API tokens (services)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils.text import slugify
from rest_framework.authtoken.models import Token

from marketplace.exceptions import Forbidden, Invalid, NotFound, invalid
from marketplace.models import Membership, Organization


def signup(
    *, username: str, email: str, password: str, org_name: str, is_provider: bool, is_consumer: bool
) -> AbstractBaseUser:
    """A new user and a new organisation that the user administers.

    Regulator organisations are created by platform staff, never by sign-up.
    """
    errors: dict[str, list[str]] = {}
    if not (is_provider or is_consumer):
        errors["kinds"] = ["Choose provider, consumer or both."]
    slug = slugify(org_name)[:60]
    if not slug:
        errors["org_name"] = ["Give your organisation a name."]
    elif Organization.objects.filter(slug=slug).exists() or Organization.objects.filter(name=org_name).exists():
        errors["org_name"] = ["An organisation with this name exists; ask its admin to add you."]
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        errors["username"] = ["This username is taken."]
    if errors:
        raise Invalid("sign-up refused", fields=errors)
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, email=email, password=password)
            org = Organization.objects.create(
                name=org_name, slug=slug, is_provider=is_provider, is_consumer=is_consumer
            )
            Membership.objects.create(user=user, organization=org, role=Membership.Role.ADMIN)
    except IntegrityError:
        raise invalid("username", "This username or organisation was just taken.") from None
    return user


def membership_of(user: AbstractBaseUser) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.select_related("organization").filter(user=user).order_by("id").first()


def require_admin(user: AbstractBaseUser) -> Organization:
    m = membership_of(user)
    if m is None:
        raise Forbidden("your account belongs to no organisation")
    if m.role != Membership.Role.ADMIN:
        raise Forbidden("only an organisation admin may do this")
    return m.organization


def require_provider_admin(user: AbstractBaseUser) -> Organization:
    org = require_admin(user)
    if not org.is_provider:
        raise Forbidden("only provider organisations publish offers")
    return org


def _lock_org(org: Organization) -> None:
    """Serialise membership changes of one organisation (the last admin must stay)."""
    Organization.objects.select_for_update().filter(id=org.id).values_list("id", flat=True).first()


def member_add(*, admin: AbstractBaseUser, username: str, role: str) -> Membership:
    org = require_admin(admin)
    if role not in Membership.Role.values:
        raise invalid("role", f"Role must be one of {', '.join(Membership.Role.values)}.")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise invalid("username", f"No user {username!r}; they must sign up first.")
    if Membership.objects.filter(user=user).exclude(organization=org).exists():
        raise invalid("username", "This user already belongs to another organisation.")
    with transaction.atomic():
        _lock_org(org)
        admins = org.memberships.filter(role=Membership.Role.ADMIN)
        if role != Membership.Role.ADMIN and admins.filter(user=user).exists() and admins.count() == 1:
            raise invalid("role", "An organisation keeps at least one admin.")
        membership, _ = Membership.objects.update_or_create(user=user, organization=org, defaults={"role": role})
    return membership


def member_remove(*, admin: AbstractBaseUser, membership_id: int) -> None:
    org = require_admin(admin)
    with transaction.atomic():
        _lock_org(org)
        m = Membership.objects.select_for_update().filter(id=membership_id, organization=org).first()
        if m is None:
            raise NotFound("no such member")
        if m.role == Membership.Role.ADMIN and org.memberships.filter(role=Membership.Role.ADMIN).count() == 1:
            raise invalid("membership", "An organisation keeps at least one admin.")
        m.delete()


def token_rotate(*, user: AbstractBaseUser) -> str:
    """Replace the user's API token (the old one stops working at once)."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user).key


def token_revoke(*, user: AbstractBaseUser) -> None:
    Token.objects.filter(user=user).delete()
