"""loke-crm-sync: LOKE customers, payments and lists, kept in sync one way into a CRM.

One package per stage, in the order data flows (see docs/architecture.md):
`web` receives webhooks and serves the admin API and dashboard; `ingest` stores them in the inbox
and applies them; `backfill` and `lists` read LOKE's pages; `mirror` holds the newest state by
the ordering rules; `delivery` sends it to the CRM; `deadletters` keeps what failed for replay;
`orgs` connects organizations; `loke` talks to LOKE. `core` and `store` are what all of them
share; `factory` builds the app of every process, `cli` is the `loke-sync` command.
"""
