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
import hashlib
import http.server
import json
import os
import secrets
import sys
import threading
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

issuer, client_id, app_port, username, password = sys.argv[1:6]
screens = sys.argv[6] if len(sys.argv) > 6 else None
app = f"http://127.0.0.1:{app_port}"
redirect_uri = app + "/callback"
callbacks = []

FORGED = """<!doctype html><title>forged</title>
<form id="f" method="post" action="{issuer}/oauth2/consent">
<input type="hidden" name="decision" value="allow"><input type="hidden" name="client_id" value="{client}">
</form><script>document.getElementById('f').submit()</script>"""


class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/callback":
            callbacks.append(dict(urllib.parse.parse_qsl(url.query)))
            body = b"<!doctype html><title>callback</title><p id='done'>signed in</p>"
        else:
            body = FORGED.format(issuer=issuer, client=client_id).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(app_port)), App)
threading.Thread(target=server.serve_forever, daemon=True).start()

verifier = secrets.token_urlsafe(48)
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
state = secrets.token_urlsafe(16)
authorize = issuer + "/oauth2/authorize?" + urllib.parse.urlencode({
    "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "orders:read",
    "state": state, "code_challenge": challenge, "code_challenge_method": "S256"})

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 30)
result = {}


def shot(name):
    if screens:
        path = os.path.join(screens, name + ".png")
        driver.save_screenshot(path)
        result.setdefault("screens", []).append(path)


def sign_in(secret):
    driver.find_element(By.ID, "username").clear()
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(secret)
    driver.find_element(By.ID, "sign-in").click()


try:
    driver.get(authorize)
    result["login_title"] = driver.title
    result["labels"] = [label.text for label in driver.find_elements(By.TAG_NAME, "label")]
    shot("1-login")
    sign_in("not-the-password")
    wait.until(expected_conditions.presence_of_element_located((By.ID, "error")))
    result["bad_password_error"] = driver.find_element(By.ID, "error").text
    shot("2-bad-password")
    sign_in(password)
    wait.until(expected_conditions.presence_of_element_located((By.ID, "allow")))
    result["consent_title"] = driver.title
    result["consent_client"] = driver.find_element(By.ID, "client").text
    result["cookies"] = [{"name": c["name"], "secure": c.get("secure"), "httpOnly": c.get("httpOnly"), "sameSite": c.get("sameSite")}
                         for c in driver.get_cookies()]
    shot("3-consent")
    driver.find_element(By.ID, "allow").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "done")))
    shot("4-callback")
    answer = callbacks[-1]
    result["callback"] = {"state_matches": answer.get("state") == state, "iss": answer.get("iss"), "has_code": "code" in answer}
    body = urllib.parse.urlencode({"grant_type": "authorization_code", "code": answer.get("code", ""), "redirect_uri": redirect_uri,
                                   "client_id": client_id, "code_verifier": verifier}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(issuer + "/oauth2/token", data=body)) as response:
            tokens = json.load(response)
            result["token_status"] = response.status
            payload = tokens["access_token"].split(".")[1]
            result["sub"] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    except urllib.error.HTTPError as error:
        result["token_status"] = error.code
    # A page of the client's origin posts the consent form without the CSRF token.
    driver.get(app + "/forged")
    wait.until(expected_conditions.presence_of_element_located((By.ID, "error")))
    result["forged_title"] = driver.title
    result["forged_error"] = driver.find_element(By.ID, "error").text
    result["callbacks"] = len(callbacks)
    shot("5-csrf-refused")
finally:
    driver.quit()
    server.shutdown()
print(json.dumps(result))
