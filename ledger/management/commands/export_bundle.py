from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ledger import bundle, services
from ledger.exceptions import LedgerError


class Command(BaseCommand):
    help = (
        "Write an audit bundle (JSON Lines) for `python -m audit.verify`: whole log, a dataset, a consumer or a range."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("-o", "--output", default="-", help="file to write ('-' = standard output)")
        parser.add_argument("--dataset", type=int)
        parser.add_argument("--consumer", type=int)
        parser.add_argument("--seq-from", type=int)
        parser.add_argument("--seq-to", type=int)
        parser.add_argument("--checkpoint", action="store_true", help="sign a checkpoint first so it covers all")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["checkpoint"]:
            services.checkpoint_create()
        try:
            lines = bundle.bundle_lines(
                dataset_id=o["dataset"], consumer_id=o["consumer"], seq_from=o["seq_from"], seq_to=o["seq_to"]
            )
            out = sys.stdout if o["output"] == "-" else open(o["output"], "w", encoding="utf-8")  # noqa: SIM115
            try:
                for line in lines:
                    out.write(line)
            finally:
                if out is not sys.stdout:
                    out.close()
        except LedgerError as exc:
            raise CommandError(str(exc)) from None
        if o["output"] != "-":
            self.stderr.write(f"bundle written to {o['output']}")
