#!/usr/bin/env python3
"""The demo's browser story (run by cluster/demo.sh): headless Chromium, driven through
chromium-driver by Selenium, uses the demo web application (app.py) as a person would.

The browser opens the app and is sent to the authorization server's login page, signs in as the
demo user and consents; the app redeems the code with its PKCE verifier and shows what the
upstream saw through every gateway. Then an operator revokes the user in the operator console, in
a second tab (revoke_user), and the app's
next call is refused with 401 on every gateway. Each step checks what it claims and saves a
screenshot; the exit status is 1 if any check failed.

    story.py --app URL --issuer URL --user NAME --password-env VAR --gateways N --screens DIR
"""
import argparse
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

parser = argparse.ArgumentParser()
parser.add_argument("--app", required=True)
parser.add_argument("--issuer", required=True)
parser.add_argument("--user", required=True)
parser.add_argument("--password-env", required=True, help="the environment variable that holds the password")
parser.add_argument("--gateways", type=int, required=True)
parser.add_argument("--screens", required=True)
parser.add_argument("--first-step", type=int, default=1, help="number of the first step, to continue the narration")
args = parser.parse_args()
password = os.environ[args.password_env]

bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
failures = 0
step_number = args.first_step


def step(text):
    global step_number
    print(f"\n{bold}== {step_number}. {text} =={plain}", flush=True)
    step_number += 1


def check(condition, good, bad):
    global failures
    if condition:
        print(f"   ✔ {good}", flush=True)
    else:
        print(f"   ✘ {bad}", flush=True)
        failures += 1
    return condition


def say(text):
    print(f"   {text}", flush=True)


def revoke_user(driver, wait, username, shot):
    """The operator's revocation of every token the user holds, made in the operator console on
    the control plane's admin listener, in a second tab of the same browser: sign in with the
    admin token, revoke the subject, and watch each gateway's acknowledgement arrive. Returns
    whether every live gateway confirmed it."""
    admin, token = os.environ["PORTCULLIS_ADMIN_URL"], os.environ["PORTCULLIS_ADMIN_TOKEN"]
    app_tab = driver.current_window_handle
    driver.switch_to.new_window("tab")
    try:
        driver.get(admin + "/console/revocations")
        wait.until(expected_conditions.presence_of_element_located((By.ID, "token")))
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "sign-in").click()
        wait.until(lambda d: not d.find_elements(By.ID, "token"))
        driver.get(admin + "/console/revocations")
        wait.until(expected_conditions.presence_of_element_located((By.ID, "revoke")))
        Select(driver.find_element(By.ID, "revoke-kind")).select_by_value("subject")
        driver.find_element(By.ID, "revoke-value").send_keys(username)
        driver.find_element(By.ID, "revoke-reason").send_keys("demo: user revoked by the operator")
        shot("5-console-revoke")
        driver.find_element(By.ID, "revoke-button").click()
        wait.until(lambda d: d.find_elements(By.ID, "propagation")
                   and d.find_element(By.ID, "propagation").get_attribute("data-state") in ("complete", "timeout", "error"))
        state = driver.find_element(By.ID, "propagation").get_attribute("data-state")
        say("  console: " + driver.find_element(By.ID, "propagation-summary").text)
        shot("6-console-propagation")
        return state == "complete"
    except WebDriverException:
        shot("failure-console")
        raise
    finally:
        driver.close()
        driver.switch_to.window(app_tab)


def start_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,760"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main():
    os.makedirs(args.screens, exist_ok=True)
    started = time.monotonic()
    driver = start_browser()
    wait = WebDriverWait(driver, 30)

    def shot(name):
        path = os.path.join(args.screens, name + ".png")
        driver.save_screenshot(path)
        say(f"screenshot: {path}")

    def calls():
        """The app's table of calls: gateway → (status, what the app shows of the answer)."""
        rows = driver.find_elements(By.CSS_SELECTOR, "#calls tr[data-status]")
        return {row.get_attribute("id"): (row.get_attribute("data-status"), row.find_elements(By.TAG_NAME, "td")[-1].text) for row in rows}

    try:
        step("In a real browser (headless Chromium): the demo app sends a person to sign in and consent")
        driver.get(args.app + "/")
        shot("1-app")
        driver.find_element(By.ID, "sign-in").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "password")))
        check(driver.current_url.startswith(args.issuer + "/oauth2/authorize?") and driver.title == "Sign in",
              f"redirected to the authorization server's login page ({driver.current_url.split('?')[0]}, with PKCE S256 and state)",
              f"expected the login page, got {driver.title!r} at {driver.current_url}")
        check("code_challenge_method=S256" in driver.current_url and "state=" in driver.current_url,
              "the authorization request carries a code challenge (S256) and a state",
              f"no PKCE or state in {driver.current_url}")
        driver.find_element(By.ID, "username").send_keys(args.user)
        driver.find_element(By.ID, "password").send_keys(password)
        shot("2-login")
        driver.find_element(By.ID, "sign-in").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "allow")))
        client = driver.find_element(By.ID, "client").text
        check(driver.title == "Allow access?" and driver.find_element(By.ID, "user").text == args.user,
              f"signed in as {args.user}; the consent page asks for {client}'s access "
              f"({', '.join(li.text for li in driver.find_elements(By.CSS_SELECTOR, '#scopes li'))})",
              f"expected the consent page, got {driver.title!r}")
        shot("3-consent")
        driver.find_element(By.ID, "allow").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "calls")))
        shot("4-orders")
        before = calls()
        served = [gw for gw, (status, text) in before.items() if status == "200" and f'"subject": "{args.user}"' in text]
        check(len(before) == args.gateways and len(served) == args.gateways,
              f"the app redeemed the code with its PKCE verifier and called the API through all {args.gateways} gateways: "
              "200 each, and the upstream saw the user's identity",
              f"the app's calls: {before}")
        if served:
            say("the upstream saw: " + " ".join(before[served[0]][1].split()))

        step("An operator revokes the user; the app's next call gets 401 on every gateway")
        check(revoke_user(driver, wait, args.user, shot),
              f"in the operator console, every live gateway acknowledged the revocation of {args.user}'s tokens",
              "the revocation was not confirmed by every gateway")
        driver.find_element(By.ID, "again").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "calls")))
        shot("7-revoked")
        after = calls()
        refused = [gw for gw, (status, text) in after.items() if status == "401" and "revoked" in text]
        check(len(after) == args.gateways and len(refused) == args.gateways,
              f"401 on all {args.gateways} gateways: {after[refused[0]][1] if refused else ''}",
              f"the app's calls after the revocation: {after}")
    except WebDriverException as error:
        check(False, "", f"the browser step failed: {error.msg or error}")
        try:
            shot("failure")
        except WebDriverException:
            pass
    finally:
        driver.quit()
    say(f"(the browser part took {time.monotonic() - started:.1f} s)")
    return 1 if failures else 0


sys.exit(main())
