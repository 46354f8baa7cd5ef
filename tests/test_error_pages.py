"""Every error on a web UI path is an HTML page inside the app's layout with a way back (a link to the dashboard and
Back), never JSON nor a traceback; the same errors on API paths keep answering problem+json. Real Flask app over a
real store; the failing views are test-only routes registered on the app before its first request."""

import pytest

import webui
from modemgw.store import StoreError
from tests.support import PASSWORD, csrf_token

SECRET = "secret detail of the failure"


def crash():
    raise RuntimeError(SECRET)


def disk_full():
    raise StoreError("database test.db: database or disk is full", "full")


@pytest.fixture
def pages(app):
    """The app with failing routes: inside the UI blueprint (endpoint `ui.*`, so its handlers and its session
    apply), outside it on a UI-looking path, and on API paths."""
    app.add_url_rule("/ui/test-crash", endpoint="ui.test_crash", view_func=crash, methods=["GET", "POST"])
    app.add_url_rule("/ui/test-full", endpoint="ui.test_full", view_func=disk_full)
    app.add_url_rule("/elsewhere/test-crash", endpoint="test_crash_elsewhere", view_func=crash)
    app.add_url_rule("/api/v1/test-crash", endpoint="test_crash_api", view_func=crash)
    daemon = app.extensions["modemgw"]
    webui.add_user(daemon.store, "erin", PASSWORD, "operator")
    return app


def logged_in(app):
    client = app.test_client()
    token = csrf_token(client.get("/ui/login").get_data(as_text=True))
    answer = client.post("/ui/login", data={"username": "erin", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def assert_page(response, status, words, menu=True):
    """An HTML page of the app: its layout (stylesheet, menu when logged in), what happened, links back."""
    page = response.get_data(as_text=True)
    assert response.status_code == status, page
    assert response.content_type.startswith("text/html"), response.content_type
    assert '<link rel="stylesheet" href="/ui/static/app.css">' in page, "the app's layout"
    assert ('<nav aria-label="Main">' in page) is menu
    assert 'data-back>Back</a>' in page and '<a href="/">Dashboard</a>' in page, "a way back"
    assert words in page, page
    assert "Traceback" not in page and SECRET not in page and "urn:modemgw:problem" not in page


def assert_problem(response, status, kind):
    assert response.status_code == status
    assert response.content_type == "application/problem+json", response.get_data(as_text=True)
    assert response.get_json()["type"] == f"urn:modemgw:problem:{kind}"


def test_a_missing_page_is_a_page_of_the_app(pages):
    client = logged_in(pages)
    assert_page(client.get("/ui/no-such-page"), 404, "There is no page at /ui/no-such-page.")
    assert_page(client.get("/no/such/thing"), 404, "There is no page at /no/such/thing.")
    assert_page(client.get("/ui/templates/987654"), 404, "There is no template 987654")
    assert_page(client.get("/ui/static/no-such-file.css"), 404, "Not found")
    assert_page(pages.test_client().get("/ui/no-such-page"), 404, "There is no page", menu=False)


def test_a_wrong_method_is_a_page_and_keeps_allow(pages):
    client = logged_in(pages)
    response = client.delete("/ui/templates")
    assert_page(response, 405, "/ui/templates does not take DELETE requests")
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]
    assert_page(client.put("/"), 405, "does not take PUT requests")


def test_an_unexpected_error_is_a_page_and_logged(pages, caplog):
    client = logged_in(pages)
    assert_page(client.get("/ui/test-crash"), 500, "the error is in its log")
    assert SECRET in caplog.text, "the log has what the page does not show"
    token = csrf_token(client.get("/ui/templates").get_data(as_text=True))
    assert_page(client.post("/ui/test-crash", data={"csrf_token": token}), 500, "Something went wrong")
    assert_page(client.get("/elsewhere/test-crash"), 500, "the error is in its log")


def test_refusals_and_a_failing_database_are_pages(pages):
    client = logged_in(pages)
    assert_page(client.get("/ui/settings"), 403, "Only administrators can do this.")
    assert_page(client.post("/ui/templates", data={"name": "x", "body": "y"}), 400, "CSRF check")
    full = client.get("/ui/test-full")
    assert_page(full, 503, "the disk is full")
    assert full.headers["Retry-After"] == "10"


def test_the_api_keeps_answering_problem_json(pages, client):
    assert_problem(client.test_client.get("/api/v1/no-such-endpoint"), 404, "not-found")
    assert_problem(client.test_client.put("/api/v1/messages"), 405, "method-not-allowed")
    assert_problem(client.test_client.get("/api/v1/test-crash"), 500, "internal-error")
    assert_problem(client.test_client.get("/send"), 405, "method-not-allowed")
    status, headers, problem = client.call("GET", "/api/v1/templates/987654")
    assert (status, headers["Content-Type"]) == (404, "application/problem+json"), problem
    assert pages.test_client().get("/health").content_type == "application/json"
