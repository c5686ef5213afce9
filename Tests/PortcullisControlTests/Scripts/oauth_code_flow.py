#!/usr/bin/env python3
"""authlib completes the authorization code grant with PKCE, configured from the OpenID Connect
discovery document alone (AuthorizationCodeTests "a stock client library ...").

The person's part (the login and consent forms) is played with requests, reading the forms'
hidden fields; everything OAuth is authlib's. Prints one JSON object. Exit status 77: authlib
missing.

    oauth_code_flow.py ISSUER CLIENT_ID REDIRECT_URI USERNAME PASSWORD GATEWAY_URL
"""
import html
import json
import re
import sys

try:
    import requests
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session
except ImportError as error:  # pragma: no cover - reported as a skip by the Swift test
    print(f"authlib/requests not installed: {error}", file=sys.stderr)
    sys.exit(77)

issuer, client_id, redirect_uri, username, password, gateway = sys.argv[1:7]
discovery = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
result = {"issuer": discovery.get("issuer")}

client = OAuth2Session(client_id, redirect_uri=redirect_uri, scope="orders:read", code_challenge_method="S256",
                       token_endpoint_auth_method="none")
verifier = generate_token(64)
url, state = client.create_authorization_url(discovery["authorization_endpoint"], code_verifier=verifier)


def hidden(page):
    return {name: html.unescape(value) for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)}


def keep_cookie(response):
    # The session cookie is Secure: browsers keep it over http on loopback, Python's cookie jar
    # does not, so the "browser" carries it by hand.
    cookie = response.headers.get("Set-Cookie")
    if cookie:
        browser.headers["Cookie"] = cookie.split(";")[0]


browser = requests.Session()
login = browser.get(url, timeout=30)
keep_cookie(login)
form = hidden(login.text)
form.update(username=username, password=password)
consent = browser.post(issuer + "/oauth2/authorize", data=form, timeout=30, allow_redirects=False)
keep_cookie(consent)
form = hidden(consent.text)
form["decision"] = "allow"
back = browser.post(issuer + "/oauth2/consent", data=form, timeout=30, allow_redirects=False)
location = back.headers["Location"]
result["redirected_to_client"] = location.startswith(redirect_uri + "?")

token = client.fetch_token(discovery["token_endpoint"], authorization_response=location, code_verifier=verifier, state=state)
result["token_type"] = token.get("token_type")
result["scope"] = token.get("scope")
result["has_refresh_token"] = "refresh_token" in token
result["gateway_status"] = requests.get(gateway, headers={"Authorization": "Bearer " + token["access_token"]}, timeout=10).status_code
refreshed = client.refresh_token(discovery["token_endpoint"], refresh_token=token["refresh_token"])
result["refresh_rotated"] = refreshed.get("refresh_token") not in (None, token["refresh_token"])
print(json.dumps(result))
