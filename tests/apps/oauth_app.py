"""The notes server of the OAuth end-to-end tests, protected by the tests' authorization server.

Configured from the environment, because the issuer's and the server's own
URLs are only known once both listen: ``OAUTH_ISSUER``, ``OAUTH_RESOURCE``
(this server's resource identifier, the audience its tokens must carry),
``OAUTH_VERIFIER`` (``jwt``, default, or ``introspection``), ``OAUTH_LEEWAY``
(seconds of clock leeway for ``exp``), ``OAUTH_FETCH_TIMEOUT`` (the JWKS fetch
bound).
"""

from __future__ import annotations

import os

from trio_mcp_sse import AuthSettings, Context, IntrospectionVerifier, MCPServer, ProtectedResource

ISSUER = os.environ["OAUTH_ISSUER"]
RESOURCE = os.environ["OAUTH_RESOURCE"]

server = MCPServer("notes", "1.0.0")
notes: list[str] = []


@server.tool
async def whoami(ctx: Context) -> str:
    """Who the access token says is calling."""
    token = ctx.access_token
    assert token is not None
    return f"{token.subject} via {token.client_id}: {' '.join(sorted(token.scopes))}"


@server.tool
async def read_notes() -> str:
    """Every note."""
    return "\n".join(notes) or "(none)"


@server.tool(required_scopes=["notes:write"])
async def add_note(text: str, ctx: Context) -> str:
    """Add a note (needs notes:write)."""
    notes.append(f"{ctx.principal}: {text}")
    return f"{len(notes)} notes"


if os.environ.get("OAUTH_VERIFIER", "jwt") == "introspection":
    auth = AuthSettings(
        verify_token=IntrospectionVerifier(
            f"{ISSUER}/introspect", client_id="rs-client", client_secret="rs-secret", audience=RESOURCE, cache_ttl=0
        ),
        protected_resource=ProtectedResource(
            authorization_servers=[ISSUER], resource=RESOURCE, scopes_supported=["notes:read"]
        ),
        required_scopes=["notes:read"],
    )
else:
    auth = AuthSettings.oauth(
        issuer=ISSUER,
        audience=RESOURCE,
        scopes_supported=["notes:read"],
        required_scopes=["notes:read"],
        jwt={
            "leeway": float(os.environ.get("OAUTH_LEEWAY", "30")),
            "fetch_timeout": float(os.environ.get("OAUTH_FETCH_TIMEOUT", "3")),
            "refresh_interval": float(os.environ.get("OAUTH_REFRESH_INTERVAL", "30")),
        },
    )

app = server.http_app(auth=auth)
