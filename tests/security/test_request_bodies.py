"""Request bodies before Django: over the limit → 413 before they are spooled (declared or
streamed); a stranger's body is never read at all. Through the ASGI application itself (to see
what is read) and through the real server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from dashboard.asgi import application
from ocr_app.models import ApiToken, Job
from tests.security.hostile import png
from tests.security.test_hostile_files import browser_multipart

pytestmark = pytest.mark.django_db(transaction=True)


class Exchange:
    """One HTTP request sent to the ASGI application, with a body given in chunks; records how
    many chunks the application asked for and what it answered."""

    def __init__(self, method: str, path: str, headers: dict[str, str], chunks: list[bytes]):
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        self.chunks = list(chunks)
        self.read = 0
        self.status = None
        self.headers: dict[str, str] = {}
        self.body = b""

    async def receive(self):
        if self.read < len(self.chunks):
            self.read += 1
            more = self.read < len(self.chunks)
            return {"type": "http.request", "body": self.chunks[self.read - 1], "more_body": more}
        await asyncio.Event().wait()  # the client stays connected until the answer is sent

    async def send(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def run(self) -> Exchange:
        async_to_sync(application)(self.scope, self.receive, self.send)
        return self

    def json(self) -> dict:
        return json.loads(self.body)


def multipart(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    body, content_type = browser_multipart(name, data)
    return body, {"content-type": content_type, "accept": "application/json"}


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_a_stranger_s_upload_is_answered_without_reading_a_byte_of_it(sent_tasks):
    body, headers = multipart("scan.png", png())
    for path, status in (("/upload/", 401), ("/api/v1/jobs", 401), ("/jobs/1/cancel", 303)):
        wants_json = dict(headers) if path != "/jobs/1/cancel" else {"content-type": headers["content-type"]}
        sent = Exchange("POST", path, {**wants_json, "content-length": str(len(body))}, [body]).run()
        assert (sent.status, sent.read) == (status, 0), path
    assert sent.headers["location"] == "/login/?next=/jobs/1/cancel"
    assert not Job.objects.exists()


def test_a_forged_session_cookie_is_a_stranger_too(sent_tasks):
    body, headers = multipart("scan.png", png())
    headers.update({"content-length": str(len(body)), "cookie": "sessionid=made-up"})
    sent = Exchange("POST", "/upload/", headers, [body]).run()
    assert (sent.status, sent.read) == (401, 0)


def test_only_a_valid_token_lets_a_body_in_and_a_wrong_one_counts_towards_the_lock_out(alice, settings, sent_tasks):
    settings.LOGIN_FAILURE_LIMIT = settings.AXES_FAILURE_LIMIT = 3
    body, headers = multipart("scan.png", png())
    headers["content-length"] = str(len(body))
    revoked, revoked_key = ApiToken.create_for(alice, "old")
    revoked.revoked_at = revoked.created_at
    revoked.save()
    sent = Exchange("POST", "/api/v1/jobs", {**headers, "authorization": f"Bearer {revoked_key}"}, [body]).run()
    assert (sent.status, sent.read) == (401, 0) and "revoked" in sent.json()["error"]
    for _ in range(3):
        sent = Exchange("POST", "/api/v1/jobs", {**headers, "authorization": "Bearer made-up"}, [body]).run()
        assert (sent.status, sent.read) == (401, 0) and "not known" in sent.json()["error"]
    # The third wrong try locked the made-up key out: the answer says so, still without reading the body.
    sent = Exchange("POST", "/api/v1/jobs", {**headers, "authorization": "Bearer made-up"}, [body]).run()
    assert (sent.status, sent.read, sent.json()["code"]) == (429, 0, "locked_out")
    assert sent.headers["retry-after"] == "900"
    # Four wrong tries from this address do not lock out a colleague's valid token behind the same address.
    good = ApiToken.create_for(alice, "script")[1]
    sent = Exchange("POST", "/api/v1/jobs", {**headers, "authorization": f"Bearer {good}"}, [body]).run()
    assert sent.status == 202 and sent.read == 1, sent.body[:300]
    assert list(Job.objects.values_list("original_name", flat=True)) == ["scan.png"]


def test_the_login_form_is_read_from_anyone_but_only_a_small_body(make_user):
    make_user("alice")
    csrf = "k" * 32
    form = f"csrfmiddlewaretoken={csrf}&username=alice&password=secret-pass-123".encode()
    headers = {"content-type": "application/x-www-form-urlencoded", "content-length": str(len(form)),
               "cookie": f"csrftoken={csrf}"}  # fmt: skip
    assert Exchange("POST", "/login/", headers, [form]).run().status == 302

    huge = b"username=alice&password=" + b"x" * 100_000
    sent = Exchange("POST", "/login/", {**headers, "content-length": str(len(huge))}, [huge]).run()
    assert (sent.status, sent.read) == (413, 0)


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(alice, settings, sent_tasks):
    settings.MAX_REQUEST_BYTES = 200_000
    body, headers = multipart("big.png", png(size=(800, 800)) + b"\0" * 250_000)
    headers.update({"content-length": str(len(body)), "cookie": session_cookie(alice)})

    sent = Exchange("POST", "/upload/", headers, [body]).run()

    assert (sent.status, sent.read) == (413, 0)
    assert sent.headers["content-type"] == "application/json"
    # The same security headers as every answer Django makes.
    assert sent.headers["x-content-type-options"] == "nosniff" and "sandbox" in sent.headers["content-security-policy"]
    assert sent.headers["referrer-policy"] == "same-origin" and sent.headers["x-frame-options"] == "DENY"
    assert sent.headers["cross-origin-opener-policy"] == "same-origin"
    error = sent.json()["error"]
    assert "over the limit of 195.3 KB" in error and "nothing was stored" in error
    assert sent.json()["refused"][0]["error"] == error  # the upload page lists it like any refusal
    assert not Job.objects.exists()


def test_a_streamed_body_is_cut_off_when_it_passes_the_limit(alice, settings, sent_tasks):
    settings.MAX_REQUEST_BYTES = 200_000
    key = ApiToken.create_for(alice, "script")[1]
    chunks = [b"x" * 64_000] * 10  # 640 KB, no Content-Length (chunked)
    headers = {"content-type": "multipart/form-data; boundary=zzz", "transfer-encoding": "chunked",
               "authorization": f"Bearer {key}"}  # fmt: skip

    sent = Exchange("POST", "/api/v1/jobs", headers, chunks).run()

    assert sent.status == 413
    assert sent.read == 4, "it stops reading at the chunk that passes the limit"
    assert "more than 195.3 KB so far" in sent.json()["error"]


def test_the_openai_compatible_endpoint_takes_a_third_more_for_base64(alice, settings):
    settings.MAX_REQUEST_BYTES = 300_000
    key = ApiToken.create_for(alice, "script")[1]
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    within = Exchange("POST", "/v1/chat/completions", {**headers, "content-length": "390000"}, [b"{" * 390_000]).run()
    assert within.status != 413 and within.read == 1  # read, then refused by the endpoint as bad JSON
    over = Exchange("POST", "/v1/chat/completions", {**headers, "content-length": "410000"}, [b"{" * 410_000]).run()
    assert (over.status, over.read) == (413, 0)
    assert over.json()["error"]["type"] == "invalid_request_error"


def test_every_other_address_takes_a_form_sized_body_only(alice, sent_tasks):
    body = json.dumps({"page": 1, "bbox": [0, 0, 10, 10], "padding": "x" * 3_000_000}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), "cookie": session_cookie(alice)}
    sent = Exchange("POST", "/jobs/1/region", headers, [body]).run()
    assert (sent.status, sent.read) == (413, 0)


def test_a_body_within_the_limit_reaches_the_upload(alice, sent_tasks):
    body, headers = multipart("scan.png", png())
    csrf = "k" * 32
    headers.update({"content-length": str(len(body)), "cookie": f"{session_cookie(alice)}; csrftoken={csrf}",
                    "x-csrftoken": csrf})  # fmt: skip
    sent = Exchange("POST", "/upload/", headers, [body]).run()
    assert sent.status == 200, sent.body[:300]
    assert Job.objects.get().original_name == "scan.png"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def post_raw(url: str, path: str, headers: dict[str, str], body: Iterator[bytes]) -> tuple[int, dict, float, int]:
    """POST to the real server over a socket, sending `body` from another thread for as long as the server
    reads it, and reading the answer meanwhile. (status, JSON answer, seconds to the answer, bytes sent)."""
    address = urlsplit(url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n")
    sent = 0

    def pour():
        nonlocal sent
        try:
            for chunk in body:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed the connection

    started = time.monotonic()
    writer = threading.Thread(target=pour, daemon=True)
    writer.start()
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    took = time.monotonic() - started
    sock.close()
    writer.join(10)
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload), took, sent


def _length(answer: bytes) -> int:
    m = re.search(rb"content-length: *(\d+)", answer.partition(b"\r\n\r\n")[0], re.I)
    return int(m.group(1)) if m else 1 << 40


def zeros(total: int, chunk: int = 1 << 20, chunked: bool = False) -> Iterator[bytes]:
    block = b"\0" * chunk
    for _ in range(total // chunk):
        yield (b"%x\r\n" % chunk + block + b"\r\n") if chunked else block


@pytest.mark.integration
def test_the_real_server_refuses_huge_bodies_at_once_without_holding_them(asgi_server, alice):
    """An anonymous 3 GB upload, one with a made-up token, a signed-in one declared at 3 GB, and a chunked
    one that never ends: each is answered at once, and the server's memory does not grow with the body."""
    key = ApiToken.create_for(alice, "script")[1]
    declared = {"Content-Type": "multipart/form-data; boundary=zzz", "Content-Length": str(3 * 1024**3)}
    chunked = {"Content-Type": "multipart/form-data; boundary=zzz", "Transfer-Encoding": "chunked"}
    before = rss_bytes(asgi_server.pid)

    status, error, took, sent = post_raw(asgi_server.url, "/api/v1/jobs", declared, zeros(300 << 20))
    assert (status, error["code"]) == (401, "not_authenticated") and took < 5
    assert sent < 20 << 20, f"the server read {sent} bytes of a stranger's body"

    forged = {**declared, "Authorization": "Bearer ocrd_made-up-key"}
    status, error, took, sent = post_raw(asgi_server.url, "/api/v1/jobs", forged, zeros(300 << 20))
    assert status == 401 and "not known" in error["error"] and sent < 20 << 20

    signed = {**declared, "Authorization": f"Bearer {key}"}
    status, error, took, sent = post_raw(asgi_server.url, "/api/v1/jobs", signed, zeros(300 << 20))
    assert status == 413 and "over the limit of 51.0 MB" in error["error"] and took < 5
    assert sent < 20 << 20

    status, error, took, sent = post_raw(
        asgi_server.url, "/api/v1/jobs", {**chunked, "Authorization": f"Bearer {key}"}, zeros(300 << 20, chunked=True)
    )
    assert status == 413 and "more than 51.0 MB so far" in error["error"] and took < 20
    assert sent < 120 << 20, "it stops reading soon after the limit"

    grown = rss_bytes(asgi_server.pid) - before
    assert grown < 40 << 20, f"the server grew by {grown >> 20} MB"
    assert not Job.objects.exists()


def test_the_openai_compatible_endpoint_gets_the_answers_in_openai_s_shape():
    body = json.dumps({"model": "dots.ocr", "messages": []}).encode()
    sent = Exchange("POST", "/v1/chat/completions", {"content-type": "application/json",
                                                      "content-length": str(len(body))}, [body]).run()  # fmt: skip
    assert (sent.status, sent.read) == (401, 0)
    error = sent.json()["error"]
    assert error["type"] == "authentication_error" and error["code"] == "not_authenticated" and error["message"]
