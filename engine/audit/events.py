"""The audit events the engine may emit: one place, one line each (name -> what happened).

The names are those of :data:`engine.events.AuditName` (the typed event stream). An event not
listed here is a programming error: :class:`engine.audit.processors.EventAllowlist`
refuses it, so a typo fails a test instead of producing a line nobody's alert matches.
"""

from __future__ import annotations

from engine.events import AuditName

# every name of engine.events.AuditName, described (tests/test_audit_events.py checks both agree)
EVENTS: dict[AuditName, str] = {
    # flows
    "flow.started": "an authorization flow was created for a user and provider",
    "flow.completed": "a flow's code was exchanged and a grant stored",
    "flow.failed": "a flow ended with an error (provider error, bad state, exchange failure)",
    "flow.reaped": "an expired, unfinished flow was deleted",
    # the person who finished a flow
    "user.verified": "the user who finished a flow was confirmed to be the one it was started for",
    "user.mismatch": "the user who finished a flow was not the one it was started for",
    "reauth.reconnect_sub_changed": "a reconnect for the same user came back with a different subject",
    # grants
    "grant.refreshed": "a grant's access token was refreshed",
    "grant.refresh_failed": "a refresh attempt failed (retryable or not)",
    "grant.needs_reauth": "a grant can no longer be refreshed; the user must authorize again",
    "grant.revoked": "a grant was revoked (at the provider where supported) and its tokens deleted",
    "grant.revoke_failed": "revocation at the provider failed; it will be retried",
    "grant.unreadable": "a grant's stored values did not decrypt (tampered or copied); it is unusable",
    "grant.reaped": "a long-dead grant was deleted by retention",
    "token.exposed": "an access token was returned to an API caller (token_exposure: api)",
    # tools
    "tool.executed": "a tool ran (or failed) on behalf of a user",
    "tool.denied": "a tool call was refused or held (missing grant, a hook, an approval pending or denied)",
    # approvals (tools.approval)
    "approval.requested": "a tool call was held until its user (or the app) approves it",
    "approval.approved": "a held tool call was approved (decided_by: user or app)",
    "approval.denied": "a held tool call was denied (decided_by: user or app; reason: one line, redacted)",
    "approval.used": "an approved tool call ran (each approval runs one call)",
    # people signing in (login:) and their own pages
    "login.succeeded": "a person signed in through the login provider and got a session",
    "login.failed": "a sign-in was refused (provider error, unverified email, domain, state)",
    "session.revoked": "a session ended before its expiry (sign-out, keyturn sessions revoke, a new sign-in)",
    "connection.disconnected": "a signed-in person disconnected one of their grants on /connections",
    # API edge
    "api_key.denied": "a request presented a missing or wrong API key",
    "rate_limited": "a caller or user hit a rate limit",
    # the authorization server for MCP clients (mcp.auth: oauth)
    "mcp_oauth.client_registered": "an MCP client registered itself (RFC 7591 dynamic client registration)",
    "mcp_oauth.consent_given": "a signed-in person allowed an MCP client (or it had a remembered consent)",
    "mcp_oauth.consent_denied": "a signed-in person denied an MCP client on the consent page",
    "mcp_oauth.token_issued": "an access token (and refresh token) was issued to an MCP client for a person",
    "mcp_oauth.token_refused": "a token request was refused (the OAuth error code is the reason)",
    "mcp_oauth.reuse_detected": "a used code or refresh token came back; its whole token family was revoked",
    "mcp_oauth.token_revoked": "an MCP client revoked a token (RFC 7009); a refresh token ends its family",
    # operations
    "config.loaded": "the engine started with a configuration",
    "config.reloaded": "a new configuration was applied on SIGHUP",
    "config.reload_rejected": "a configuration reload was refused; the old one stays",
    "key.rotated": "stored secrets were re-encrypted under the default root key",
    "audit.exported": "audit records were exported with keyturn audit export",
}

OUTCOMES: frozenset[str] = frozenset({"success", "failure", "denied", "error"})
