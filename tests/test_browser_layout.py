"""No page is wider than the viewport, for every role, at 1280 px and at 390 px (a phone).

Each role visits every page of its navigation and the detail pages behind them (a
dataset, a job with its signed messages, a right, a ledger entry with its signed body,
checkpoints, the audit trail). A page whose content is wider than the window (a long
hash, a signed body on one line, a table with many columns) fails with the widest
element named, so the fix is obvious.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from compute.models import Job
from ledger import services as ledger_services
from ledger.models import LedgerEntry
from marketplace.models import Dataset
from tests import federation
from tests.conftest import login
from tests.ledger.conftest import buy

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WIDTHS = (1280, 390)

# Why a page is too wide: the elements that reach past the window's right edge.
OVERFLOW = """() => {
  const w = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > w + 1 && r.width > 0) {
      let inScroller = false;
      for (let p = el.parentElement; p; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (['auto', 'scroll', 'hidden'].includes(s.overflowX) && p.getBoundingClientRect().right <= w + 1) {
          inScroller = true; break;
        }
      }
      const name = el.tagName.toLowerCase() + (el.className ? '.' + el.className : '');
      if (!inScroller) out.push(name + ' ' + Math.round(r.right));
    }
  }
  return {scroll: document.documentElement.scrollWidth, width: w, culprits: out.slice(0, 5)};
}"""


@pytest.fixture
def world(tdemo):  # type: ignore[no-untyped-def]
    """A bought right, a finished stats job, a signed checkpoint: every detail page has content."""
    right = buy(consumer="bank", node="acme")
    job = federation.run(federation.submit([right.id], params={"column": "tenure_months"}))
    assert job.status == Job.Status.SUCCEEDED, job.error
    from ledger import writer

    writer.integrate_all()
    checkpoint = ledger_services.checkpoint_create()
    usage = LedgerEntry.objects.filter(kind="usage").order_by("seq").first()
    return {
        "right": right.id,
        "job": str(job.id),
        "dataset": Dataset.objects.get(node__slug="acme").id,
        "entry": usage.seq,
        "size": checkpoint.size,
    }


def _pages(username: str | None, w: dict) -> list[str]:  # type: ignore[type-arg]
    public = ["/", f"/datasets/{w['dataset']}/", "/login/", "/signup/"]
    ledger = ["/ledger/", f"/ledger/entries/{w['entry']}/", "/ledger/checkpoints/"]
    account = ["/organization/", "/account/tokens/"]
    return {
        None: public,
        "bank": [
            *public[:2], "/rights/", f"/rights/{w['right']}/", "/jobs/", "/jobs/new/", f"/jobs/{w['job']}/",
            "/models/", "/bill/", *ledger, *account,
        ],
        "acme": [
            *public[:2], "/provider/", "/provider/offers/new/", "/provider/orders/", "/revenue/", *ledger, *account,
        ],
        "regulator": [*public[:2], *ledger, f"/ledger/audit/?dataset={w['dataset']}", *account],
        "admin": [*public[:2], *ledger, f"/ledger/audit/?dataset={w['dataset']}", "/account/tokens/"],
    }[username]  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("username", [None, "bank", "acme", "regulator", "admin"])
def test_no_page_is_wider_than_the_window(world, live_server, page: Page, username: str | None, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    if username:
        login(page, live_server.url, username)
    too_wide = {}
    for path in _pages(username, world):
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        found = page.evaluate(OVERFLOW)
        if found["scroll"] > found["width"]:
            too_wide[path] = found
    assert not too_wide, f"{username or 'anonymous'} at {width} px: {too_wide}"
