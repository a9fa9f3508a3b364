"""Webhooks: events from the outbox (``engine.store.outbox``), signed per Standard Webhooks, delivered
at least once by one replica in the background (``deliver``); the signature (``signing``); counters
(``metrics``)."""
