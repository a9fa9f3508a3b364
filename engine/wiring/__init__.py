"""engine.wiring: the composition root (``services``) and the settings SIGHUP swaps (``settings``).

Used by the server (``engine.api.app.create_app``) and by the CLI (``open_services``): one wiring,
so a CLI action is audited through the same auditor, redactor and sinks as the server's.
"""
