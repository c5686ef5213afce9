#!/usr/bin/env python3
"""A real browser (headless Chromium) at the login and account pages (AuthorizationCodeBrowserTests).
Prints one JSON object with what each step saw.

    browser_account.py throttle ISSUER CLIENT_ID APP_PORT USERNAME PASSWORD BAD_TRIES
        BAD_TRIES wrong passwords, then the right one until it is no longer refused (at most 60 s).
    browser_account.py sign-out ISSUER CLIENT_ID APP_PORT USERNAME PASSWORD
        Signs in and consents, signs out on the account page, then brings back the old cookie.
    browser_account.py revoke-consent ISSUER CLIENT_ID APP_PORT USERNAME PASSWORD GATEWAY_URL
        Signs in and consents; the client calls the gateway with its access token; the person
        revokes the client's access on the account page; the client calls again (for up to 5 s).
"""
import json
import sys
import time
import urllib.error
import urllib.request

from selenium.webdriver.common.by import By

from browser_support import Client, chromium, click_and_wait, shown, sign_in, status

mode, issuer, client_id, app_port, username, password = sys.argv[1:7]
extra = sys.argv[7:]
client = Client(issuer, client_id, app_port)
driver, wait = chromium()
result = {}


def error_text():
    found = driver.find_elements(By.ID, "error")
    return found[0].text if found else None


def sign_in_and_consent():
    """The code flow up to the client's callback; returns the code."""
    driver.get(client.authorize_url())
    sign_in(driver, wait, username, password)
    click_and_wait(driver, wait, "allow")
    shown(wait, "done")
    return client.callbacks[-1].get("code", "")


def session_cookie():
    return next((c["value"] for c in driver.get_cookies() if c["name"] == "portcullis_session"), None)


def throttle(bad_tries):
    driver.get(client.authorize_url())
    started = time.monotonic()
    result["bad"] = []
    for attempt in range(bad_tries):
        sign_in(driver, wait, username, f"wrong-password-{attempt}")
        result["bad"].append({"status": status(driver), "error": error_text()})
    sign_in(driver, wait, username, password)
    result["locked"] = {"status": status(driver), "error": error_text(), "title": driver.title}
    if not driver.find_elements(By.ID, "username"):
        return  # signed in: not throttled
    sign_in(driver, wait, username, password)
    result["still_locked"] = {"status": status(driver), "error": error_text()}
    refused = 0
    while status(driver) == 429 and time.monotonic() - started < 60:
        time.sleep(0.5)
        refused += 1
        sign_in(driver, wait, username, password)
    result["refused_while_waiting"] = refused
    result["unlocked_after"] = time.monotonic() - started
    result["after_window"] = {"status": status(driver), "title": driver.title}


def sign_out():
    sign_in_and_consent()
    driver.get(issuer + "/oauth2/account")
    result["account"] = {"status": status(driver), "title": driver.title, "user": driver.find_element(By.ID, "user").text}
    old = session_cookie()
    click_and_wait(driver, wait, "sign-out")
    result["signed_out"] = {"status": status(driver), "title": driver.title, "message": error_text(), "cookie_left": session_cookie() is not None}
    # A copy of the cookie taken before signing out (as a thief might hold) is worth nothing now.
    driver.add_cookie({"name": "portcullis_session", "value": old, "path": "/oauth2", "secure": True, "httpOnly": True, "sameSite": "Lax"})
    driver.get(issuer + "/oauth2/account")
    result["account_after"] = {"status": status(driver), "title": driver.title, "message": error_text()}
    driver.get(client.authorize_url())
    result["authorize_after"] = {"status": status(driver), "title": driver.title}


def call(gateway, token):
    request = urllib.request.Request(gateway + "/orders", headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("WWW-Authenticate", "")


def revoke_consent(gateway):
    code = sign_in_and_consent()
    token_status, tokens = client.redeem(code)
    result["token_status"] = token_status
    token = (tokens or {}).get("access_token", "")
    result["before"] = call(gateway, token)[0]
    driver.get(issuer + "/oauth2/account")
    result["consents"] = driver.find_element(By.ID, "consents").text.splitlines() if driver.find_elements(By.ID, "consents") else []
    click_and_wait(driver, wait, driver.find_element(By.XPATH, f"//li[form/input[@name='client_id' and @value='{client_id}']]//button"))
    notice = driver.find_elements(By.ID, "notice")
    result["notice"] = notice[0].text if notice else None
    revoked_at = time.monotonic()
    after, challenge = call(gateway, token)
    while after != 401 and time.monotonic() - revoked_at < 5:
        time.sleep(0.05)
        after, challenge = call(gateway, token)
    result["after"] = after
    result["challenge"] = challenge


try:
    if mode == "throttle":
        throttle(int(extra[0]))
    elif mode == "sign-out":
        sign_out()
    elif mode == "revoke-consent":
        revoke_consent(extra[0])
    else:
        raise SystemExit(f"unknown mode {mode}")
finally:
    driver.quit()
    client.close()
print(json.dumps(result))
