"""The ledger as its readers see it: pages and API for parties and regulators.

It sits above the apps (it needs the organisation a user acts for, from marketplace, and
the ledger's reads), so the ledger itself never imports marketplace
(docs/decisions/0011-layers.md).
"""
