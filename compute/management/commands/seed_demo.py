"""Seed the demo: organisations, users, nodes with local data (a bank, two providers of credit
signals, three hospitals and a research institute), datasets, offers,
and the data protection authority's witness (key, API token and pinned log key under
``var/witness/``, which the Procfile's ``witness`` process reads).

Each node directory gets its own data, policy, the hub's public key and a one-time
enrolment token. The node's key pair is generated in the node's own directory (here by
the node library, as the node operator would) and only its public key reaches the hub.
Running the command again changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from compute import demo_data
from compute import services as compute_services
from compute.node.config import NodeConfig
from compute.node.runtime import announcement_messages, enrolment_message
from ledger.hubkey import hub_public_b64
from marketplace import services
from marketplace.models import Dataset, Membership, Node, Offer, Organization

PASSWORD = "usufruct-demo"
DEMO_WITNESS = "dpa.example/audit-witness"  # the Procfile's witness process signs as this
ORGS = [
    # slug, name, provider, consumer, regulator, username, node
    ("northwind", "Northwind Bank", False, True, False, "bank", "bank"),
    ("acme", "Acme Commerce", True, False, False, "acme", "acme"),
    ("taxco", "TaxCo Invoice Bureau", True, False, False, "taxco", "taxco"),
    ("stmary", "St Mary's Hospital", True, False, False, "stmary", "stmary"),
    ("lakeside", "Lakeside Clinic", True, False, False, "lakeside", "lakeside"),
    ("northgate", "Northgate Medical Centre", True, False, False, "northgate", "northgate"),
    ("oncolab", "Oncology Research Institute", False, True, False, "research", "oncolab"),
    ("dpa", "Data Protection Authority", False, False, True, "regulator", None),
]
DESCRIPTIONS = {
    "northwind": "A regional bank lending to households and small businesses.",
    "acme": "An online marketplace with 1.2 million monthly shoppers; shares behavioural signals, never rows.",
    "taxco": "The e-invoicing bureau for small and medium enterprises; publishes compute-only invoice signals.",
    "stmary": "A teaching hospital with a breast-cancer screening programme.",
    "lakeside": "A regional clinic for diagnostics and oncology.",
    "northgate": "A medical centre that runs fine-needle aspirate diagnostics for three districts.",
    "oncolab": "Researchers building diagnostic models from several hospitals' records, which never leave them.",
    "dpa": "The supervisory authority for data protection; audits the ledger and co-signs its checkpoints.",
}
# What invoices and statements name each organisation by (fictitious addresses and tax IDs).
BILLING = {
    "northwind": ("1 Harbour Street\nBristol BS1 4ST\nUnited Kingdom", "GB123456789"),
    "acme": ("Acme Commerce GmbH\nFriedrichstraße 100\n10117 Berlin\nGermany", "DE811111111"),
    "taxco": ("TaxCo Invoice Bureau S.A.\nRue de la Loi 10\n1000 Brussels\nBelgium", "BE0123456789"),
    "oncolab": ("Oncology Research Institute\nPlesmanlaan 121\n1066 CX Amsterdam\nNetherlands", "NL999999999B01"),
}
OFFERS = {
    "acme": dict(
        title="Credit-risk features, compute only",
        amount_minor=150,
        currency="EUR",
        quota_jobs=20,
        duration_days=365,
        min_group_size=25,
        epsilon="3.0",
        terms="Compute-only use for credit risk assessment. No re-identification. No resale.",
    ),
    "taxco": dict(
        title="SME invoice signals, compute only",
        amount_minor=200,
        currency="EUR",
        quota_jobs=10,
        duration_days=180,
        min_group_size=50,
        epsilon="2.0",
        terms="Compute-only use for lending decisions. Aggregates only, minimum group 50.",
    ),
    **{
        slug: dict(
            title="Diagnostic records for joint models, compute only",
            amount_minor=amount,
            currency="EUR",
            quota_jobs=10,
            duration_days=365,
            min_group_size=20,
            epsilon="2.0",
            terms="Compute-only use for diagnostic research. Only federated training and aggregates. No re-identification.",  # noqa: E501
            operations=["stats", "homo_lr"],
        )
        for slug, amount in (("stmary", 500), ("lakeside", 400), ("northgate", 450))
    },
}


# What the demo providers sell: statistics and the joint credit model (alignment, training).
DEMO_OPERATIONS = ["stats", "psi_align", "hetero_lr"]


def node_dir(slug: str) -> Path:
    return Path(settings.USUFRUCT_NODES_DIR) / slug


class Command(BaseCommand):
    help = "Create demo organisations, users, nodes, datasets and offers (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        data = {**demo_data.generate(), **demo_data.hospitals()}
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.org", PASSWORD)
        for slug, name, provider, consumer, regulator, username, node_slug in ORGS:
            with transaction.atomic():
                org, _ = Organization.objects.get_or_create(
                    slug=slug,
                    defaults=dict(
                        name=name,
                        description=DESCRIPTIONS[slug],
                        is_provider=provider,
                        is_consumer=consumer,
                        is_regulator=regulator,
                        billing_address=BILLING.get(slug, ("", ""))[0],
                        tax_id=BILLING.get(slug, ("", ""))[1],
                    ),
                )
                user = User.objects.filter(username=username).first()
                if user is None:
                    user = User.objects.create_user(username, f"{username}@example.org", PASSWORD)
                Membership.objects.get_or_create(user=user, organization=org, defaults={"role": "admin"})
            if node_slug and not Node.objects.filter(slug=node_slug).exists():
                self._make_node(org, node_slug, data.get(node_slug, []))
        for slug, offer in OFFERS.items():
            dataset = Dataset.objects.filter(node__slug=slug).first()
            if dataset and not Offer.objects.filter(dataset=dataset).exists():
                services.offer_publish(
                    organization=dataset.organization,
                    dataset=dataset,
                    **{"operations": DEMO_OPERATIONS, **offer},  # type: ignore[arg-type]
                )
        self._make_witness(Organization.objects.get(slug="dpa"), User.objects.get(username="regulator"))
        if not opts["quiet"]:
            self.stdout.write(self.style.SUCCESS(f"Demo data ready. Logins (password: {PASSWORD}):"))
            for _, name, *_rest, username, _node in ORGS:
                self.stdout.write(f"  {username:10s} {name}")
            self.stdout.write(f"  {'admin':10s} platform staff (Django admin)")

    def _make_witness(self, org: Organization, user: Any) -> None:
        """As the regulator would: make a witness key, register it, and keep what the witness needs."""
        from rest_framework.authtoken.models import Token

        from audit.witness import keygen
        from ledger import services as ledger_services
        from ledger.exceptions import LedgerError

        directory = Path(settings.VAR_DIR) / "witness"
        directory.mkdir(parents=True, exist_ok=True)
        vkey = keygen(directory / "dpa.pem", DEMO_WITNESS)
        try:
            ledger_services.witness_register(organization_id=org.id, vkey=vkey)
        except LedgerError as exc:  # e.g. var/witness/ was deleted but not the database
            self.stderr.write(f"demo witness not registered: {exc}")
            return
        token, _ = Token.objects.get_or_create(user=user)
        for name, value in (("token", token.key), ("log.vkey", ledger_services.log_vkey())):
            path = directory / name
            path.write_text(value + "\n")
            path.chmod(0o600)

    def _make_node(self, org: Organization, slug: str, rows: list[dict[str, object]]) -> None:
        directory = node_dir(slug)
        spec = demo_data.DATASET_SPECS.get(slug, [])  # a consumer's node may hold no dataset
        directory.mkdir(parents=True, exist_ok=True)
        if spec:
            demo_data.write_csv(directory / "data" / f"{spec[0]['local']}.csv", rows)
        (directory / "datasets.json").write_text(json.dumps(spec, indent=2))
        policy: dict[str, object] = {
            "operations": ["stats", "psi", "psi_align", "hetero_lr", "homo_lr", "value_preview"],
            "min_group_size": 20,
        }
        if slug == "bank":
            policy["consumer_datasets"] = ["applicants"]  # the bank's own IDs and labels, for its jobs
        elif slug in ("stmary", "lakeside", "northgate"):
            policy["operations"] = ["stats", "homo_lr"]
        elif slug == "oncolab":
            pass  # a consumer's node that holds no data of its own: it makes keys and sums updates
        else:
            policy["previews"] = True  # answer free, noised overlap previews
        (directory / "policy.json").write_text(json.dumps(policy))
        (directory / "hub.pub").write_text(hub_public_b64() + "\n")
        node, token = services.node_create(organization=org, slug=slug)
        # Act as the node operator on this one machine: the node library makes the key in
        # the node's directory and signs its enrolment and manifests; the hub verifies
        # them exactly as if they had come over the broker.
        config = NodeConfig(slug=slug, directory=directory, broker_url="memory://", broker_dir=None)
        compute_services.message_receive(wire=enrolment_message(config, token))
        for message in announcement_messages(config):
            compute_services.message_receive(wire=message)
