"""engine.yaml: reading and checking (:mod:`.loader`), the typed model (:mod:`.model`).

The whole file as the engine runs it, providers resolved: :func:`engine.providers.load.load_config`.
"""
