"""engine.config.webhooks: webhooks[] in engine.yaml, each problem named by its key path, the secret never."""

from __future__ import annotations

import textwrap

import pytest

from engine.errors import ConfigError
from engine.providers.load import load_text
from tests.plugins.webhook_receiver import SECRET

BASE = "api: {development: true}\n"


def load(webhooks: str, base: str = BASE) -> object:
    return load_text(base + textwrap.dedent(webhooks), source="engine.yaml", env={})


def error(webhooks: str, base: str = BASE) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(webhooks, base)
    return info.value


def test_an_endpoint_loads_with_default_retries() -> None:
    """An endpoint with id, url, secret and events loads; retry defaults to 10s doubling to 1h for 24h."""
    loaded = load(f"webhooks: [{{id: app, url: 'https://app.example/hooks', secret: '{SECRET}', "
                  "events: [connection.needs_reauth, approval.requested]}]\n")  # fmt: skip
    [hook] = loaded.config.webhooks  # type: ignore[attr-defined]
    assert hook.events == ("connection.needs_reauth", "approval.requested")
    assert (hook.retry.initial, hook.retry.max, hook.retry.give_up_after) == (10, 3600, 86400)
    assert hook.timeout == 10 and hook.enabled


@pytest.mark.parametrize(
    ("entry", "path", "words"),
    [
        ("{id: a, url: 'https://x.example/h', events: [flow.failed]}", "webhooks[0].secret", "required"),
        ("{id: a, url: 'https://x.example/h', secret: 'topsecretvalue', events: [flow.failed]}",
         "webhooks[0].secret", "whsec_"),
        ("{id: a, url: 'https://x.example/h', secret: 'whsec_c2hvcnQ=', events: [flow.failed]}",
         "webhooks[0].secret", "at least 16 bytes"),
        ("{id: a, url: 'https://x.example/h', secret: 'whsec_%%%', events: [flow.failed]}",
         "webhooks[0].secret", "base64"),
        (f"{{id: a, url: 'https://x.example/h', secret: '{SECRET}', events: []}}", "webhooks[0].events",
         "at least one event"),
        (f"{{id: a, url: 'https://x.example/h', secret: '{SECRET}', events: [grant.created]}}",
         "webhooks[0].events[0]", "unknown event"),
        (f"{{id: a, url: 'ftp://x.example/h', secret: '{SECRET}', events: [flow.failed]}}", "webhooks[0].url",
         "http(s)"),
        (f"{{id: 'a b', url: 'https://x.example/h', secret: '{SECRET}', events: [flow.failed]}}",
         "webhooks[0].id", "short word"),
        (f"{{id: a, url: 'https://x.example/h', secret: '{SECRET}', events: [flow.failed], "
         "retry: {initial: 0s}}", "webhooks[0].retry", "initial"),
    ],
)  # fmt: skip
def test_bad_entries_are_named(entry: str, path: str, words: str) -> None:
    """Each malformed entry fails with its key path and says what is wrong; no secret value is shown."""
    err = error(f"webhooks: [{entry}]\n")
    assert err.path == path and words in err.msg, err
    assert SECRET not in str(err) and "topsecretvalue" not in str(err)


def test_duplicate_ids_and_plain_http_off_loopback() -> None:
    """Two endpoints with one id are refused; http to a non-loopback host only in development."""
    one = f"{{id: a, url: 'https://x.example/h', secret: '{SECRET}', events: [flow.failed]}}"
    err = error(f"webhooks: [{one}, {one}]\n")
    assert err.path == "webhooks[1].id" and "duplicate" in err.msg
    plain = f"{{id: a, url: 'http://x.example/h', secret: '{SECRET}', events: [flow.failed]}}"
    load(f"webhooks: [{plain}]\n")  # development: allowed
    keys = "security: {root_keys: [{id: k, value: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='}]}\n"
    err = error(f"webhooks: [{plain}]\n", base="api: {public_url: 'http://127.0.0.1:9099'}\n" + keys)
    assert err.path == "webhooks[0].url" and "https" in err.msg
