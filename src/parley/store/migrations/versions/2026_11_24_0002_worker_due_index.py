"""The worker's lease reads partial indexes of its own items, not one index of every pending row

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa

from parley.store.models.queue import LEASED_WHERE, WORKER_DUE_WHERE

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact_queue', schema=None) as batch_op:
        batch_op.drop_index('ix_contact_queue_due')
        batch_op.create_index('ix_contact_queue_worker_due', ['channel', 'not_before', 'id'], unique=False,
                              sqlite_where=sa.text(WORKER_DUE_WHERE),
                              postgresql_where=sa.text(WORKER_DUE_WHERE))
        batch_op.create_index('ix_contact_queue_leased', ['lease_until', 'id'], unique=False,
                              sqlite_where=sa.text(LEASED_WHERE),
                              postgresql_where=sa.text(LEASED_WHERE))


def downgrade() -> None:
    with op.batch_alter_table('contact_queue', schema=None) as batch_op:
        batch_op.drop_index('ix_contact_queue_leased', sqlite_where=sa.text(LEASED_WHERE),
                            postgresql_where=sa.text(LEASED_WHERE))
        batch_op.drop_index('ix_contact_queue_worker_due', sqlite_where=sa.text(WORKER_DUE_WHERE),
                            postgresql_where=sa.text(WORKER_DUE_WHERE))
        batch_op.create_index('ix_contact_queue_due', ['status', 'not_before'], unique=False)
