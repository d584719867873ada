"""Connected organizations: connecting, their LOKE subscription, webhook secrets, status."""
