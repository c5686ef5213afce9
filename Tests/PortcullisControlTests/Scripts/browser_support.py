"""What the browser tests' scripts share: a tiny public client on 127.0.0.1 that records the
authorization responses it receives, the authorization request with PKCE, headless Chromium
(chromium-driver and Selenium), the login form, and the code's redemption."""
import base64
import hashlib
import http.server
import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait


class Client:
    """A public client at http://127.0.0.1:PORT: /callback records the authorization response;
    any other path answers `other_page` (an HTML string)."""

    def __init__(self, issuer, client_id, port, other_page="<!doctype html><title>app</title>"):
        self.issuer, self.client_id = issuer, client_id
        self.base = f"http://127.0.0.1:{port}"
        self.redirect_uri = self.base + "/callback"
        self.callbacks = []
        self.verifier = secrets.token_urlsafe(48)
        self.state = secrets.token_urlsafe(16)
        callbacks = self.callbacks

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                if url.path == "/callback":
                    callbacks.append(dict(urllib.parse.parse_qsl(url.query)))
                    body = b"<!doctype html><title>callback</title><p id='done'>signed in</p>"
                else:
                    body = other_page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorize_url(self, scope="orders:read"):
        """The authorization request (code, PKCE S256, state)."""
        challenge = base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()
        return self.issuer + "/oauth2/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri, "scope": scope,
            "state": self.state, "code_challenge": challenge, "code_challenge_method": "S256"})

    def redeem(self, code):
        """Redeems a code with the verifier: (HTTP status, the token response or None)."""
        body = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                                       "client_id": self.client_id, "code_verifier": self.verifier}).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(self.issuer + "/oauth2/token", data=body)) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, None

    def close(self):
        self.server.shutdown()


def chromium():
    """Headless Chromium through chromium-driver, and a 30 s wait."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    return driver, WebDriverWait(driver, 30)


def sign_in(driver, wait, username, password):
    """Fills in and posts the login form of the page the browser shows; returns once the answer
    replaced that page."""
    driver.find_element(By.ID, "username").clear()
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    click_and_wait(driver, wait, "sign-in")


def click_and_wait(driver, wait, target):
    """Clicks the element (or the element with that id) and waits until the page it was on has
    been replaced."""
    page = driver.find_element(By.TAG_NAME, "html")
    (driver.find_element(By.ID, target) if isinstance(target, str) else target).click()
    wait.until(lambda _: replaced(page))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def replaced(element):
    """Whether `element` is gone from the page the browser shows. Besides Selenium's stale
    element error, chromedriver may answer "Node with given id does not belong to the document"
    (a plain WebDriverException) for a node of a page just replaced; `staleness_of` lets that
    one escape."""
    try:
        element.is_enabled()
        return False
    except WebDriverException:
        return True


def shown(wait, element_id):
    """Waits until the page has the element, and returns it."""
    return wait.until(expected_conditions.presence_of_element_located((By.ID, element_id)))


def status(driver):
    """The HTTP status of the page the browser shows (the navigation's response, a form's POST
    included), as the browser received it."""
    return driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus")
