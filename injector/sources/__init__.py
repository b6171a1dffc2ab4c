"""Where credentials come from.  The only package that speaks HTTP.

A source has: `issue(references) -> [Credential]` (all or nothing),
`renew_session()`, `session_expires_at`, `revoke(lease_ids)` and `close()`.
"""
