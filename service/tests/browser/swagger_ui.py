"""Drives Swagger UI at /docs/ in headless Chromium like a person would.

For each input form: open POST /classify, "Try it out", pick the request body's media type,
attach the image file (or keep the prefilled JSON example), "Execute", and read the status
and body Swagger UI shows. Prints one JSON line per form; the Rust test judges them.

With `schema:<media type>` instead of a form, it opens that media type's "Schema" tab, expands
its "One of" and prints the names shown for the alternatives, as a person reading the page sees
them. With `v2`, it lists the operations shown under the v2 tag and tries GET /v2.

usage: swagger_ui.py BASE_URL IMAGE_FILE FORM...   (FORM: a media type of the request body,
                                                    schema:<media type>, or v2)
"""

import json
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

# Chromium as packaged by Debian, with everything that would reach the network switched off.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,4000",
]
# Waits are bounded by events (an element appears), with a ceiling so a broken page fails
# instead of hanging the test run.
PATIENCE_S = 60


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def open_classify(driver, base):
    wait = WebDriverWait(driver, PATIENCE_S)
    driver.get(base + "/docs/")
    operation = wait.until(
        ready.presence_of_element_located((By.ID, "operations-classify-classify_image"))
    )
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    return wait, operation


def schema_alternatives(driver, base, media_type):
    wait, operation = open_classify(driver, base)
    body = wait.until(
        ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock-section-request-body"))
    )
    Select(body.find_element(By.CSS_SELECTOR, "select")).select_by_value(media_type)
    body.find_element(By.XPATH, ".//*[@data-name='model' or normalize-space(text())='Schema']").click()
    one_of = wait.until(
        lambda _: body.find_elements(By.CSS_SELECTOR, ".json-schema-2020-12-keyword--oneOf")
    )[0]
    one_of.find_element(By.XPATH, ".//*[normalize-space(text())='Expand all']").click()
    # The alternatives' headings read "#0 <title>", "#1 <title>", ...; properties have no "#".
    titles = wait.until(
        lambda _: [
            e.text
            for e in one_of.find_elements(By.CSS_SELECTOR, ".json-schema-2020-12__title")
            if e.text.startswith("#")
        ]
    )
    return {"form": "schema:" + media_type, "one_of": titles}


def shown_response(wait):
    """The status and body Swagger UI shows after "Execute"."""
    status = wait.until(
        ready.presence_of_element_located(
            (By.CSS_SELECTOR, ".live-responses-table .response .response-col_status")
        )
    )
    shown = wait.until(
        ready.presence_of_element_located(
            (By.CSS_SELECTOR, ".live-responses-table .response-col_description pre")
        )
    )
    return status.text.strip(), shown.text


def v2_operations(driver, base):
    wait = WebDriverWait(driver, PATIENCE_S)
    driver.get(base + "/docs/")
    server = wait.until(
        ready.presence_of_element_located((By.ID, "operations-v2-v2_server_metadata"))
    )
    shown = [
        e.get_attribute("id").removeprefix("operations-v2-")
        for e in driver.find_elements(By.CSS_SELECTOR, "[id^='operations-v2-']")
    ]
    server.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, ".try-out__btn"))).click()
    server.find_element(By.CSS_SELECTOR, "button.execute").click()
    status, body = shown_response(wait)
    return {"form": "v2", "operations": shown, "status": status, "body": body}


def try_form(driver, base, image, form):
    if form == "v2":
        return v2_operations(driver, base)
    if form.startswith("schema:"):
        return schema_alternatives(driver, base, form.removeprefix("schema:"))
    wait, operation = open_classify(driver, base)
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, ".try-out__btn"))).click()
    body = wait.until(
        ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock-section-request-body"))
    )
    Select(body.find_element(By.CSS_SELECTOR, "select")).select_by_value(form)
    if form != "application/json":
        picker = wait.until(
            ready.presence_of_element_located(
                (By.CSS_SELECTOR, ".opblock-section-request-body input[type=file]")
            )
        )
        picker.send_keys(image)
    operation.find_element(By.CSS_SELECTOR, "button.execute").click()
    status, body = shown_response(wait)
    return {"form": form, "status": status, "body": body}


def main():
    base, image, forms = sys.argv[1], sys.argv[2], sys.argv[3:]
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        try:
            for form in forms:
                print(json.dumps(try_form(driver, base, image, form)), flush=True)
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
