#!/usr/bin/env python3
"""A real OAuth 2.0 client (authlib) against Portcullis's built-in authorization server.

Run by OAuthClientLibraryTests. Discovers the token endpoint (RFC 8414), gets a token with
client_credentials (client_secret_basic, then client_secret_post), calls the API through the
gateway with it, refreshes (the refresh token must rotate), calls again with the new access
token, and prints one JSON object describing what happened. Exit status 77: authlib missing.
"""
import argparse
import json
import sys

try:
    import requests
    from authlib.integrations.requests_client import OAuth2Session
except ImportError as error:  # pragma: no cover - reported as a skip by the Swift test
    print(f"authlib/requests not installed: {error}", file=sys.stderr)
    sys.exit(77)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--gateway", required=True, help="URL of an API route behind the gateway")
    parser.add_argument("--scope", default=None)
    args = parser.parse_args()

    result = {}
    metadata = requests.get(args.issuer + "/.well-known/oauth-authorization-server", timeout=10).json()
    token_endpoint = metadata["token_endpoint"]
    result["metadata_issuer"] = metadata["issuer"]
    result["grant_types_supported"] = metadata["grant_types_supported"]

    basic = OAuth2Session(args.client_id, args.client_secret, scope=args.scope,
                          token_endpoint_auth_method="client_secret_basic")
    token = basic.fetch_token(token_endpoint, grant_type="client_credentials")
    result["basic"] = {
        "token_type": token.get("token_type"),
        "expires_in": token.get("expires_in"),
        "scope": token.get("scope"),
        "has_refresh_token": "refresh_token" in token,
    }
    result["basic"]["gateway_status"] = requests.get(
        args.gateway, headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10).status_code

    refreshed = basic.refresh_token(token_endpoint, refresh_token=token["refresh_token"])
    result["refresh"] = {
        "token_type": refreshed.get("token_type"),
        "rotated": refreshed.get("refresh_token") not in (None, token["refresh_token"]),
        "new_access_token": refreshed["access_token"] != token["access_token"],
        "gateway_status": requests.get(
            args.gateway, headers={"Authorization": f"Bearer {refreshed['access_token']}"}, timeout=10).status_code,
    }

    post = OAuth2Session(args.client_id, args.client_secret, scope=args.scope,
                         token_endpoint_auth_method="client_secret_post")
    token2 = post.fetch_token(token_endpoint, grant_type="client_credentials")
    result["post"] = {
        "token_type": token2.get("token_type"),
        "gateway_status": requests.get(
            args.gateway, headers={"Authorization": f"Bearer {token2['access_token']}"}, timeout=10).status_code,
    }

    wrong = OAuth2Session(args.client_id, "not-the-secret", token_endpoint_auth_method="client_secret_basic")
    try:
        wrong.fetch_token(token_endpoint, grant_type="client_credentials")
        result["wrong_secret"] = "accepted"
    except Exception as error:  # authlib raises OAuthError with the RFC 6749 error code
        result["wrong_secret"] = getattr(error, "error", type(error).__name__)

    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
