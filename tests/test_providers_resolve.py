"""engine.providers.resolve: which auth.providers[] entry an auth_requirement names."""

from __future__ import annotations

import pytest

from engine.errors import BadRequest, NotFound
from engine.providers.model import Provider
from engine.providers.resolve import requirement_scopes, resolve_provider
from engine.providers.schema import OAuth2Spec


def entries(*pairs: tuple[str, str | None]) -> dict[str, Provider]:
    return {
        i: Provider(id=i, template_id=t, client_id=f"cid-{i}", client_secret=None, oauth2=OAuth2Spec())
        for i, t in pairs
    }


def test_explicit_id_matches_exactly() -> None:
    """An explicit id names that entry, whatever the provider_id says."""
    providers = entries(("google", "google"), ("company-google-calendar", "google"))
    wanted = {"provider_id": "google", "id": "company-google-calendar"}
    assert resolve_provider(providers, wanted).client_id == "cid-company-google-calendar"


def test_explicit_id_never_falls_back_to_the_template_entry() -> None:
    """An explicit id with no such entry is unknown_provider naming it, even when a `google` entry exists."""
    providers = entries(("google", "google"))
    with pytest.raises(NotFound) as info:
        resolve_provider(providers, {"provider_id": "google", "id": "company-google-calendar"})
    assert info.value.error == "unknown_provider" and "'company-google-calendar'" in info.value.msg


def test_bare_provider_id_resolves_by_id_then_by_template() -> None:
    """A bare provider_id names the entry with that id, else the one entry using that template."""
    assert resolve_provider(
        entries(("google", "google"), ("work", "google")), {"provider_id": "google"}
    ).id == ("google")
    assert (
        resolve_provider(entries(("work", "google"), ("gh", "github")), {"provider_id": "google"}).id
        == "work"
    )
    assert resolve_provider(entries(("work", "google")), {"provider_id": "google", "id": None}).id == "work"


def test_bare_provider_id_with_several_entries_is_ambiguous() -> None:
    """Two entries using the template and none named after it: ambiguous_provider listing both ids."""
    with pytest.raises(BadRequest) as info:
        resolve_provider(entries(("work", "google"), ("home", "google")), {"provider_id": "google"})
    assert info.value.error == "ambiguous_provider" and "home, work" in info.value.msg


def test_unknown_and_empty_requirements() -> None:
    """An unknown provider_id is unknown_provider; neither id nor provider_id is a 400."""
    with pytest.raises(NotFound) as info:
        resolve_provider(entries(("gh", "github")), {"provider_id": "google"})
    assert info.value.error == "unknown_provider"
    with pytest.raises(BadRequest) as bad:
        resolve_provider(entries(("gh", "github")), {"id": "", "oauth2": {}})
    assert bad.value.error == "invalid_request"


def test_requirement_scopes() -> None:
    """oauth2.scopes as a list or one space-separated string, stripped, first occurrence kept."""
    assert requirement_scopes({"oauth2": {"scopes": ["b", " a ", "b"]}}) == ("b", "a")
    assert requirement_scopes({"oauth2": {"scopes": "read  write read"}}) == ("read", "write")
    assert requirement_scopes({"id": "acme"}) == ()
    assert requirement_scopes({"oauth2": {"scopes": ("x",)}}) == ("x",)


def test_malformed_requirement_scopes_name_the_field() -> None:
    """A non-object oauth2 or a list with a non-string names the field (400, never a crash)."""
    for bad, field in (
        ({"oauth2": "read"}, "auth_requirement.oauth2 "),
        ({"oauth2": {"scopes": ["ok", 3]}}, "auth_requirement.oauth2.scopes"),
        ({"oauth2": {"scopes": ["", "x"]}}, "auth_requirement.oauth2.scopes"),
        ({"oauth2": {"scopes": ["s"] * 101}}, "too many"),
    ):
        with pytest.raises(BadRequest) as info:
            requirement_scopes(bad)
        assert field in info.value.msg
