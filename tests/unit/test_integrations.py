"""What each integration type reads, and which refusals only mean "outside the token's scope"."""

from __future__ import annotations

import pytest

from clever.catalog import ENDPOINTS
from clever.integrations import INTEGRATIONS, integration, refused_as_out_of_scope


def test_an_sso_token_reads_the_district_and_its_users_and_a_secure_sync_one_everything():
    sso, secure_sync = INTEGRATIONS["sso"], INTEGRATIONS["secure_sync"]
    assert sso.readable == sso.default_endpoints == ("districts", "users")
    assert not sso.reads("sections") and not sso.reads("events") and sso.reads("users")
    assert secure_sync.readable == ENDPOINTS and secure_sync.reads("events")
    assert "resources" not in secure_sync.default_endpoints  # synced only when asked for
    with pytest.raises(ValueError, match="unknown integration 'sso_plus'; known: secure_sync, sso, library"):
        integration("sso_plus")


@pytest.mark.parametrize(("name", "endpoint", "status", "out_of_scope"), [
    ("sso", "sections", 403, True),   # "Resource not in token's scopes"
    ("sso", "schools", 404, True),
    ("sso", "sections", 500, False),  # an outage is retried, then fails
    ("sso", "sections", None, False),  # no answer at all (stopped, gave up)
    ("sso", "users", 403, False),     # inside the scope: a token problem
    ("sso", "districts", 404, False),
    ("secure_sync", "sections", 403, False),  # a Secure Sync district needs its rosters
    ("secure_sync", "users", 404, False),
])
def test_only_a_refusal_outside_the_scope_is_out_of_scope(name, endpoint, status, out_of_scope):
    assert refused_as_out_of_scope(name, endpoint, status) is out_of_scope
