#!/usr/bin/env python3
"""A real browser uses the operator console (OperatorConsoleBrowserTests).

Headless Chromium (chromium-driver and Selenium) opens the console, is sent to the sign-in page,
tries a wrong token, signs in, reads the cluster page, revokes SUBJECT on the revocations page and
watches the per-node propagation the page's script fills in, reads the audit page, follows a link
from another site to the console (and is still signed in afterwards) and signs out.
Prints one JSON object with what each step saw; screenshots go to SCREEN_DIR when given.

    browser_console.py ADMIN_URL TOKEN SUBJECT HOME [SCREEN_DIR]
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

admin, token, subject = sys.argv[1:4]
screens = sys.argv[5] if len(sys.argv) > 5 else None

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 30)
result = {}


def shot(name):
    if screens:
        path = os.path.join(screens, name + ".png")
        driver.save_screenshot(path)
        result.setdefault("screens", []).append(path)


def sign_in(secret):
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(secret)
    driver.find_element(By.ID, "sign-in").click()


try:
    driver.get(admin + "/console/cluster")
    wait.until(expected_conditions.presence_of_element_located((By.ID, "token")))
    result["redirected_to"] = driver.current_url.replace(admin, "")
    result["labels"] = [label.text for label in driver.find_elements(By.TAG_NAME, "label")]
    shot("console-1-sign-in")
    sign_in("not-the-token")
    wait.until(expected_conditions.presence_of_element_located((By.ID, "error")))
    result["wrong_token_error"] = driver.find_element(By.ID, "error").text
    sign_in(token)
    wait.until(expected_conditions.presence_of_element_located((By.ID, "nodes")))
    result["cluster_title"] = driver.title
    result["nodes"] = {row.get_attribute("id")[5:]: row.find_element(By.CLASS_NAME, "state").text
                       for row in driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr[id^=node-]")}
    result["cookies"] = [{"name": c["name"], "secure": c.get("secure"), "httpOnly": c.get("httpOnly"), "sameSite": c.get("sameSite"),
                          "path": c.get("path")} for c in driver.get_cookies()]
    shot("console-2-cluster")

    driver.find_element(By.LINK_TEXT, "Revocations").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "revoke")))
    result["revoke_labels"] = [label.text for label in driver.find_elements(By.CSS_SELECTOR, "#revoke label")]
    Select(driver.find_element(By.ID, "revoke-kind")).select_by_value("subject")
    driver.find_element(By.ID, "revoke-value").send_keys(subject)
    driver.find_element(By.ID, "revoke-reason").send_keys("browser test")
    driver.find_element(By.ID, "revoke-button").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "propagation")))
    # The script sets data-state once every live gateway acknowledged (or it gave up).
    wait.until(lambda d: d.find_element(By.ID, "propagation").get_attribute("data-state") in ("complete", "timeout", "error")
               and d.find_element(By.ID, "propagation").get_attribute("data-polls") is not None)
    box = driver.find_element(By.ID, "propagation")
    result["propagation_state"] = box.get_attribute("data-state")
    result["polls"] = int(box.get_attribute("data-polls") or "0")
    result["summary"] = driver.find_element(By.ID, "propagation-summary").text
    result["acks"] = {row.get_attribute("id")[4:]: {"applied": row.find_element(By.CLASS_NAME, "applied").text,
                                                     "latency": row.find_element(By.CLASS_NAME, "latency").text}
                      for row in box.find_elements(By.CSS_SELECTOR, "tbody tr")}
    result["change_url"] = driver.current_url.replace(admin, "")
    shot("console-3-propagation")

    driver.find_element(By.LINK_TEXT, "Audit log").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "audit")))
    result["audit"] = [{"actor": row.find_element(By.CLASS_NAME, "actor").text, "action": row.find_element(By.CLASS_NAME, "action").text,
                        "target": row.find_element(By.CLASS_NAME, "target").text}
                       for row in driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    shot("console-4-audit")

    # A link from another site (an opaque data: origin) to a console page arrives without the
    # SameSite=Strict session cookie and lands on the sign-in page; the operator is still signed
    # in when they come back.
    driver.get("data:text/html,<a id=link href='" + admin + "/console/keys'>keys</a>")
    driver.find_element(By.ID, "link").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "token")))
    result["cross_site_link"] = driver.current_url.replace(admin, "")
    driver.get(admin + "/console/cluster")
    wait.until(lambda d: d.find_elements(By.ID, "nodes") or d.find_elements(By.ID, "token"))
    result["after_cross_site_link"] = "signed in" if driver.find_elements(By.ID, "nodes") else "signed out"
    if not driver.find_elements(By.ID, "nodes"):
        sign_in(token)
        wait.until(expected_conditions.presence_of_element_located((By.ID, "nodes")))

    driver.find_element(By.ID, "sign-out").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "notice")))
    result["signed_out_notice"] = driver.find_element(By.ID, "notice").text
    driver.get(admin + "/console/audit")
    wait.until(expected_conditions.presence_of_element_located((By.ID, "token")))
    result["after_sign_out"] = driver.current_url.replace(admin, "")
    # Content-Security-Policy violations show up in the console log.
    result["csp_violations"] = [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]
finally:
    driver.quit()
print(json.dumps(result))
