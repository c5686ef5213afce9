#!/usr/bin/env python3
"""A real browser signs in at the authorization server (AuthorizationCodeBrowserTests).

Plays a small public client on 127.0.0.1:APP_PORT: headless Chromium (chromium-driver and
Selenium) follows the authorization request to the login page, tries a wrong password, signs in,
consents, and lands on the client's /callback; the client redeems the code with its PKCE
verifier. Then a page of the client posts a consent form without a CSRF token. Prints one JSON
object with what each step saw; screenshots go to SCREEN_DIR when given.

    browser_sign_in.py ISSUER CLIENT_ID APP_PORT USERNAME PASSWORD [SCREEN_DIR]
"""
import base64
import json
import os
import sys

from selenium.webdriver.common.by import By

from browser_support import Client, chromium, click_and_wait, shown, sign_in

issuer, client_id, app_port, username, password = sys.argv[1:6]
screens = sys.argv[6] if len(sys.argv) > 6 else None

FORGED = """<!doctype html><title>forged</title>
<form id="f" method="post" action="{issuer}/oauth2/consent">
<input type="hidden" name="decision" value="allow"><input type="hidden" name="client_id" value="{client}">
</form><script>document.getElementById('f').submit()</script>"""

client = Client(issuer, client_id, app_port, other_page=FORGED.format(issuer=issuer, client=client_id))
callbacks = client.callbacks
driver, wait = chromium()
result = {}


def shot(name):
    if screens:
        path = os.path.join(screens, name + ".png")
        driver.save_screenshot(path)
        result.setdefault("screens", []).append(path)


try:
    driver.get(client.authorize_url())
    result["login_title"] = driver.title
    result["labels"] = [label.text for label in driver.find_elements(By.TAG_NAME, "label")]
    shot("1-login")
    sign_in(driver, wait, username, "not-the-password")
    result["bad_password_error"] = shown(wait, "error").text
    shot("2-bad-password")
    sign_in(driver, wait, username, password)
    shown(wait, "allow")
    result["consent_title"] = driver.title
    result["consent_client"] = driver.find_element(By.ID, "client").text
    result["cookies"] = [{"name": c["name"], "secure": c.get("secure"), "httpOnly": c.get("httpOnly"), "sameSite": c.get("sameSite")}
                         for c in driver.get_cookies()]
    shot("3-consent")
    click_and_wait(driver, wait, "allow")
    shown(wait, "done")
    shot("4-callback")
    answer = callbacks[-1]
    result["callback"] = {"state_matches": answer.get("state") == client.state, "iss": answer.get("iss"), "has_code": "code" in answer}
    result["token_status"], tokens = client.redeem(answer.get("code", ""))
    if tokens:
        payload = tokens["access_token"].split(".")[1]
        result["sub"] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    # A page of the client's origin posts the consent form without the CSRF token.
    driver.get(client.base + "/forged")
    result["forged_error"] = shown(wait, "error").text
    result["forged_title"] = driver.title
    result["callbacks"] = len(callbacks)
    shot("5-csrf-refused")
finally:
    driver.quit()
    client.close()
print(json.dumps(result))
