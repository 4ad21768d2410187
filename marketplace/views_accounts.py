"""Pages for accounts: sign-up, organisation members, API tokens, provider orders."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from rest_framework.authtoken.models import Token

from marketplace import accounts, rights
from marketplace.exceptions import ServiceError, invalid
from marketplace.forms import MemberForm, RevokeForm, SignupForm
from marketplace.forms import form_errors as _form_errors
from marketplace.models import Membership, Order
from marketplace.permissions import page_for


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            user = accounts.signup(
                username=d["username"],
                email=d["email"],
                password=d["password"],
                org_name=d["org_name"],
                is_provider=d["is_provider"],
                is_consumer=d["is_consumer"],
            )
        except ServiceError as exc:
            _form_errors(form, exc, rename={"kinds": "is_consumer"})
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Usufruct, {user.get_username()}.")
            return redirect("organization")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def organization(request: HttpRequest) -> HttpResponse:
    membership = accounts.membership_of(request.user)
    form = MemberForm(request.POST or None)
    if request.method == "POST":
        try:
            if "remove" in request.POST:
                if not request.POST["remove"].isdigit():
                    raise invalid("membership", "No such member.")
                accounts.member_remove(admin=request.user, membership_id=int(request.POST["remove"]))
                messages.success(request, "Member removed.")
                return redirect("organization")
            if form.is_valid():
                accounts.member_add(
                    admin=request.user, username=form.cleaned_data["username"], role=form.cleaned_data["role"]
                )
                messages.success(request, f"{form.cleaned_data['username']} is now a {form.cleaned_data['role']}.")
                return redirect("organization")
        except ServiceError as exc:
            _form_errors(form, exc)
    members = (
        Membership.objects.filter(organization=membership.organization).select_related("user") if membership else []
    )
    return render(request, "accounts/organization.html", {"membership": membership, "members": members, "form": form})


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    new_key = None
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            accounts.token_revoke(user=request.user)
            messages.success(request, "API token revoked.")
            return redirect("tokens")
        new_key = accounts.token_rotate(user=request.user)
    token = Token.objects.filter(user=request.user).first()
    return render(request, "accounts/tokens.html", {"token": token, "new_key": new_key})


@login_required
@page_for("provider")
def orders_received(request: HttpRequest) -> HttpResponse:
    membership = accounts.membership_of(request.user)
    org = membership.organization if membership else None
    forms: dict[int, RevokeForm] = {}
    if request.method == "POST":
        raw = request.POST.get("right", "")
        right_id = int(raw) if raw.isdigit() else 0
        form = RevokeForm(request.POST)
        if form.is_valid():
            try:
                accounts.require_admin(request.user)
                rights.right_revoke(provider=org, right_id=right_id, reason=form.cleaned_data["reason"])
            except ServiceError as exc:
                _form_errors(form, exc)
            else:
                messages.success(request, f"Right #{right_id} revoked; unused prepaid units refunded.")
                return redirect("orders-received")
        forms[right_id] = form
    orders = list(
        Order.objects.filter(offer__dataset__organization=org).select_related("consumer", "offer__dataset", "right")
    )
    rows = [{"order": o, "form": forms.get(o.right.id) or RevokeForm()} for o in orders]
    return render(request, "marketplace/orders_received.html", {"rows": rows})
