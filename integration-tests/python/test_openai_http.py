"""The gateway's OpenAI-compatible HTTP API through the official `openai` package (a client
the project did not write), against the real memory, generator and gateway binaries: a PDF
written here by fpdf2 and remembered through the CLI, then asked about with and without
streaming and cited with its page; embeddings and models; an HTML page whose script and
navigation are not stored; and the errors an OpenAI client expects, with nothing stored."""

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request

import openai
import pytest
from conftest import BIN_DIR, Service
from fpdf import FPDF

KEY = "test-key-0123456789abcdef"
SLOW_KEY = "slow-key-0123456789abcdef"
MAX_BODY = 64 * 1024
PAGES = [
    "The Harbour Authority report covers shipping volumes and berth maintenance across the year.",
    "The second part describes the container cranes installed along the eastern quay.",
    "The lighthouse on Skerry Point was automated in 1987; its lamp is visible for 18 nautical miles.",
]


def write_pdf(path, pages, password=None):
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    if password:
        pdf.set_encryption(owner_password=password, user_password=password)
    pdf.output(str(path))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    memory = Service("memgpt-memory", ["--data-dir", str(tmp / "memory")])
    generator = Service("memgpt-generator", ["--threads", "1"])
    keys = json.dumps([{"key": KEY, "namespaces": ["*"]}, {"key": SLOW_KEY, "namespaces": ["*"], "rate_per_s": 0.01}])
    gateway = Service("memgpt-gateway", ["--api-keys", keys, "--memory", f"http://{memory.addr}", "--generator", f"http://{generator.addr}",
                                         "--encoder-threads", "1", "--http-listen", "127.0.0.1:0", "--http-max-body-bytes", str(MAX_BODY)])
    try:
        assert gateway.http_found.wait(60), "the gateway did not log its HTTP address"
        gateway.wait_serving()
        yield gateway, tmp
    finally:
        for s in (gateway, generator, memory):
            s.stop()


def client(gateway, key=KEY):
    return openai.OpenAI(base_url=f"http://{gateway.http_addr}/v1", api_key=key, max_retries=0, timeout=120)


def post(gateway, path, body, key=KEY):
    """A raw POST (bytes or JSON): the status and the decoded JSON answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{gateway.http_addr}{path}", data=data, method="POST",
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def search(gateway, question, namespace):
    status, body = post(gateway, "/v1/memories/search", {"question": question, "namespaces": [namespace], "top_k": 5})
    assert status == 200, body
    return body["citations"]


def test_a_pdf_remembered_through_the_cli_is_streamed_back_with_its_page(cluster):
    gateway, tmp = cluster
    write_pdf(tmp / "report.pdf", PAGES)
    write_pdf(tmp / "locked.pdf", ["A secret that must not be read."], password="hunter2")
    write_pdf(tmp / "scanned.pdf", [""])
    cli = subprocess.run([os.path.join(BIN_DIR, "memgpt"), "remember", "--addr", f"http://{gateway.addr}", "--api-key", KEY, "-n", "reports",
                          str(tmp / "report.pdf"), str(tmp / "locked.pdf"), str(tmp / "scanned.pdf")], capture_output=True, text=True, timeout=120)
    assert "remembered 1 documents (3 chunks)" in cli.stdout, cli.stdout + cli.stderr
    assert cli.returncode != 0, "two files were not remembered: the command must fail"
    assert "locked.pdf: the PDF is encrypted" in cli.stderr, cli.stderr
    assert "scanned.pdf: the PDF has no text layer" in cli.stderr, cli.stderr

    stream = client(gateway).chat.completions.create(
        model="memgpt", messages=[{"role": "user", "content": "When was the lighthouse on Skerry Point automated?"}],
        stream=True, max_tokens=32, temperature=0, stream_options={"include_usage": True},
        extra_body={"memgpt": {"namespaces": ["reports"], "top_k": 2}})
    deltas, extension, usage, finish = [], None, None, None
    for chunk in stream:
        if chunk.choices:
            deltas.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        extension = (chunk.model_extra or {}).get("memgpt") or extension
        usage = chunk.usage or usage
    answer = "".join(deltas)
    assert len([d for d in deltas if d]) > 1, "the answer must come in several deltas"
    assert "1987" in answer, answer
    assert finish in ("stop", "length") and usage.completion_tokens > 0
    top = extension["citations"][0]
    assert top["page"] == 3 and top["metadata"]["format"] == "pdf", top
    assert top["document_id"].endswith("report.pdf") and "Skerry Point" in top["snippet"]
    assert not any("secret" in c["snippet"] for c in search(gateway, "secret", "reports"))


def test_chat_without_streaming_models_and_embeddings(cluster):
    gateway, _ = cluster
    api = client(gateway)
    status, body = post(gateway, "/v1/memories", {"namespace": "town", "documents": [
        {"id": "tower", "text": "The clock tower of Linford was built in 1888 and has 212 steps."}]})
    assert status == 200 and body["results"][0]["status"] == "stored", body
    reply = api.chat.completions.create(
        model="memgpt", messages=[{"role": "system", "content": "Reply with the number only."},
                                  {"role": "user", "content": "How many steps does the clock tower have?"}],
        max_tokens=24, temperature=0, extra_body={"memgpt": {"namespaces": ["town"], "top_k": 1}})
    assert "212" in reply.choices[0].message.content and reply.object == "chat.completion"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    cited = reply.model_extra["memgpt"]["citations"]
    assert cited[0]["document_id"] == "tower" and cited[0]["score"] > 0.3 and 0 <= cited[0]["attention"] <= 1

    # An extractive answer is a verbatim span of the cited memory, at the offsets it names;
    # with the ablation each citation also has its leave-one-out score.
    quoted = api.chat.completions.create(
        model="memgpt", messages=[{"role": "user", "content": "How many steps does the clock tower have?"}],
        max_tokens=24, temperature=0,
        extra_body={"memgpt": {"namespaces": ["town"], "top_k": 1, "answer_style": "extractive", "attribution": "ablation"}})
    extension = quoted.model_extra["memgpt"]
    quote, text = extension["quote"], quoted.choices[0].message.content
    memory = "The clock tower of Linford was built in 1888 and has 212 steps."
    assert quote["memory_id"] == "tower#0" and quote["citation"] == 0, quote
    assert text and memory[quote["start"]:quote["end"]] == text, (quote, text)
    assert isinstance(extension["citations"][0]["ablation"], float) and 0 < extension["prompt_share"] < 1

    models = [m.id for m in api.models.list()]
    assert "memgpt" in models and reply.model in models and "all-MiniLM-L6-v2" in models
    vectors = api.embeddings.create(model="all-MiniLM-L6-v2", input=["a clock tower", "the steps of a tower"])
    assert [len(d.embedding) for d in vectors.data] == [384, 384] and vectors.usage.prompt_tokens > 0
    floats = api.embeddings.create(model="all-MiniLM-L6-v2", input="a clock tower", encoding_format="float")
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1.0) < 1e-3
    assert max(abs(a - b) for a, b in zip(floats.data[0].embedding, vectors.data[0].embedding)) < 1e-5


def test_an_html_page_is_stored_without_its_script_and_navigation(cluster):
    gateway, _ = cluster
    page = b"""<!doctype html><html><head><title>Linford Museum</title><script>var tracker = "SCRIPT-TEXT";</script>
    <style>body { color: red }</style></head><body><nav><a href="/">NAV-HOME</a> <a href="/shop">NAV-SHOP</a></nav>
    <main><h1>Opening hours</h1><p>The museum opens at nine &amp; closes at five.</p><h2>Tickets</h2><p>Entry costs four pounds.</p></main>
    <footer>FOOTER-TEXT</footer></body></html>"""
    status, body = post(gateway, "/v1/memories", {"namespace": "museum", "documents": [
        {"id": "museum", "content_base64": base64.b64encode(page).decode(), "media_type": "text/html"}]})
    assert status == 200 and body["results"][0]["status"] == "stored", body
    cited = search(gateway, "museum opening hours tickets", "museum")
    text = " ".join(c["snippet"] for c in cited)
    assert "nine & closes at five" in text and "four pounds" in text, text
    for hidden in ("SCRIPT-TEXT", "NAV-HOME", "NAV-SHOP", "FOOTER-TEXT", "color: red"):
        assert hidden not in text, hidden
    assert {c["metadata"]["title"] for c in cited} == {"Linford Museum"}
    assert "Opening hours > Tickets" in {c["metadata"].get("heading") for c in cited}


def test_errors_are_what_an_openai_client_expects_and_nothing_is_stored(cluster):
    gateway, _ = cluster
    ask = {"messages": [{"role": "user", "content": "hello"}], "extra_body": {"memgpt": {"namespaces": ["errors"]}}}
    with pytest.raises(openai.AuthenticationError) as e:
        client(gateway, key="not-a-key-0123456789").chat.completions.create(model="memgpt", **ask)
    assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).chat.completions.create(model="gpt-4o", **ask)
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"

    doc = {"namespace": "errors", "documents": [{"id": "kept-out", "text": "The vault code is 4471."}]}
    status, body = post(gateway, "/v1/memories", doc, key="not-a-key-0123456789")
    assert status == 401 and body["error"]["type"] == "authentication_error", body
    status, body = post(gateway, "/v1/memories", json.dumps(doc).encode()[:-2])
    assert status == 400 and body["error"]["type"] == "invalid_request_error" and "not valid JSON" in body["error"]["message"], body
    big = dict(doc, documents=[{"id": "kept-out", "text": "The vault code is 4471. " * (MAX_BODY // 20)}])
    status, body = post(gateway, "/v1/memories", big)
    assert status == 413 and body["error"]["code"] == "request_too_large", body
    status, body = post(gateway, "/v1/chat/completions", {"model": "memgpt", "messages": "hello"})
    assert status == 400 and body["error"]["param"] == "messages", body
    status, body = post(gateway, "/v1/memories", {"namespace": "errors", "documents": [{"id": "x", "text": "t", "media_type": "image/png"}]})
    assert status == 400 and body["error"]["param"] == "documents[0].media_type", body
    status, body = post(gateway, "/v1/chat/completions", {"model": "memgpt", "messages": [{"role": "user", "content": "hello"}]})
    assert status == 400 and body["error"]["param"] == "memgpt.namespaces", body
    assert post(gateway, "/v1/memories/search", {"question": "vault", "namespaces": ["errors"]}, key=SLOW_KEY)[0] == 200
    status, body = post(gateway, "/v1/memories", doc, key=SLOW_KEY)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded", body
    assert search(gateway, "vault code", "errors") == []

    with urllib.request.urlopen(f"http://{gateway.http_addr}/openapi.json", timeout=30) as resp:
        spec = json.loads(resp.read())
    assert spec["openapi"].startswith("3.") and "/v1/chat/completions" in spec["paths"] and "/v1/memories" in spec["paths"]
