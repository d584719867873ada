"""Delivery to the CRM: the outbox, claiming batches, sending them, settling the answers."""
