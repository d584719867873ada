"""Developer tools, apart from the service: a LOKE sandbox, a fake CRM and the demo.

`loke-sync sandbox` and `loke-sync demo` run them; the tests and benches use the same sandbox as
their fake LOKE and the same CRM as their fake CRM, over real HTTP on 127.0.0.1.
"""
