"""The newest known state of LOKE's customers and payments, moved only forward by the ordering
rules; every change is marked in the outbox in the same transaction."""
