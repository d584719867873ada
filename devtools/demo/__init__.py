"""`loke-sync demo`: the sandbox, the service and a small CRM on one laptop, compared live.

`crm` receives the `http` destination's batches, `fidelity` compares them with the sandbox's
truth, `page` draws both, `runner` starts and supervises everything.
"""
