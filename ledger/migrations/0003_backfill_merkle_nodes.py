"""Store the perfect subtree hashes of entries appended before the Merkle table existed."""

from django.db import migrations


def backfill(apps, schema_editor):
    from protocol.merkle import MemoryTree

    LedgerEntry = apps.get_model("ledger", "LedgerEntry")
    MerkleNode = apps.get_model("ledger", "MerkleNode")
    if MerkleNode.objects.exists():
        return
    tree = MemoryTree()
    rows = []
    for leaf in LedgerEntry.objects.order_by("seq").values_list("leaf_hash", flat=True).iterator():
        rows.extend(MerkleNode(level=lv, index=ix, hash=h) for lv, ix, h in tree.append(bytes.fromhex(leaf)))
        if len(rows) >= 5000:
            MerkleNode.objects.bulk_create(rows)
            rows = []
    MerkleNode.objects.bulk_create(rows)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_merkle_checkpoints")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
