"""``avformer serve``: the page, the upload endpoint, its errors and limits, and (slow) a real browser using it.

The fast tests run the server in a thread of this process, on a free port, against a tiny (untrained) MMT run and
an ``avformer embed`` index of the synthetic clips: a real labeled clip gets the labels of the Python API (the
``avformer predict`` code path) for each view, the figure and the neighbours; a non-media, an empty, an oversize
or an unframed upload gets a one-line error and the server goes on; uploads never outlive their request.

The slow test starts ``avformer serve`` as a user does and drives Debian's ``chromium`` headless through the Chrome
DevTools Protocol: choose a real clip in the file input, press Predict, read the result, take a screenshot (copied
to ``/tmp/serve_screenshot.png``), then upload a text file and read the error.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import avformer
from avformer.cli import embed, serve
from avformer.cli import main as cli_main
from tests._paths import shared_path
from tests.cli._tiny_run import make_run, make_synth, write_video_only, write_wav

ROOT = Path(__file__).resolve().parents[2]
CLIP = ("media", "labeled", "grid__bbaf2n.mpg")  # GRID: MPEG-PS, video + audio, 3 s


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("serve") / "run", "mmt")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic dataset's ``manifest.csv`` (12 clips in ``clips/``)."""
    return make_synth(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def index(run: Path, synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index") / "idx"
    assert embed.main([str(run), str(synth), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def app(run: Path, index: Path, synth: Path, tmp_path_factory: pytest.TempPathFactory) -> serve.ServeApp:
    uploads = tmp_path_factory.mktemp("uploads")
    return serve.build_app(run, index=index, examples=[synth.parent / "clips"], device="cpu", upload_dir=uploads)


@pytest.fixture(scope="module")
def url(app: serve.ServeApp) -> Iterator[str]:
    server = serve.make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _post(url: str, data: bytes | None, name: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"X-Filename": name} if name is not None else {}
    req = urllib.request.Request(url, data=data if data is not None else b"", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _assert_one_line_error(body: dict[str, Any]) -> str:
    assert body["ok"] is False
    error = body["error"]
    assert error and "\n" not in error and "Traceback" not in error
    return error


def test_the_page_is_one_offline_html_page(url: str, app: serve.ServeApp) -> None:
    with urllib.request.urlopen(url + "/", timeout=30) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
        page = resp.read().decode()
    assert '<input type="file" id="file"' in page and 'id="go"' in page
    assert f"mmt_tiny, {len(app.model.classes)} classes, reads audio + video" in page
    assert page.count('class="ex"') == 12 and "000000.mp4" in page  # the --examples folder's clips
    # nothing from elsewhere: no external script, style, font or image (the machine may be offline)
    for marker in ("http://", "https://", "//cdn", "src=", "@import", "url("):
        assert marker not in page, marker
    info = json.loads(urllib.request.urlopen(url + "/api/info", timeout=30).read())
    assert info["inputs"] == "av" and info["topk"] == 5 and info["max_bytes"] == 200_000_000


def test_a_real_clip_gets_the_labels_of_the_api_per_view_with_figure_and_neighbours(
    url: str, app: serve.ServeApp, run: Path
) -> None:
    clip = shared_path(*CLIP)
    status, body = _post(url + "/api/predict", clip.read_bytes(), clip.name)
    assert status == 200, body
    assert body["ok"] is True and body["name"] == clip.name and "path" not in body  # no server path leaks
    assert body["has_audio"] and body["has_video"]
    want = avformer.load(run, device="cpu").predict(clip, topk=5)[0]  # the `avformer predict` code path
    assert list(body["views"]) == ["fused", "audio-only", "video-only"]
    assert [t["label"] for t in body["views"]["fused"]] == [n for n, _ in want.top]
    assert [t["label"] for t in body["views"]["audio-only"]] == [n for n, _ in want.views["audio"]]
    assert [t["label"] for t in body["views"]["video-only"]] == [n for n, _ in want.views["video"]]
    assert body["views"]["fused"][0]["prob"] == pytest.approx(want.top[0][1], abs=1e-5)
    head, png = body["image"].split(",", 1)
    assert head == "data:image/png;base64" and base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n")
    nb = body["neighbours"]
    assert [(n["query"], n["gallery"]) for n in nb] == [("audio", "video"), ("video", "audio")]
    for n in nb:
        assert [h["rank"] for h in n["hits"]] == [1, 2, 3, 4, 5]
        assert all(h["id"].startswith("clips/") and h["label"] for h in n["hits"])
    assert list(app.upload_dir.iterdir()) == []  # the upload and the figure are gone


def test_bad_uploads_give_one_line_errors_and_the_server_goes_on(url: str, app: serve.ServeApp) -> None:
    status, body = _post(url + "/api/predict", b"just some notes, not a video\n" * 40, "../../etc/notes.txt")
    assert status == 422
    assert body["name"] == "notes.txt"  # the client's name is shown without its folders, never used as a path
    assert "not media" in _assert_one_line_error(body)

    status, body = _post(url + "/api/predict", b"", "empty.mp4")
    assert status == 400 and _assert_one_line_error(body) == "the file is empty"

    status, body = _post(url + "/api/predict", b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000), "broken.mp4")
    assert status == 422 and _assert_one_line_error(body)

    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    conn.request("POST", "/api/predict", body=iter([b"abc", b"def"]), encode_chunked=True)  # no Content-Length
    resp = conn.getresponse()
    assert resp.status == 411 and "Content-Length" in _assert_one_line_error(json.loads(resp.read()))
    conn.close()

    status, body = _post(url + "/api/nothing", b"x")
    assert status == 404 and _assert_one_line_error(body)
    status, body = _post(url + "/api/example/99", None)
    assert status == 404 and _assert_one_line_error(body)

    status, body = _post(url + "/api/example/0", None)  # and it still predicts
    assert status == 200 and body["name"] == "000000.mp4" and body["top"]
    assert list(app.upload_dir.iterdir()) == []


def test_an_oversize_upload_is_refused_before_it_is_stored(
    url: str, app: serve.ServeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "max_bytes", 10_000)
    status, body = _post(url + "/api/predict", os.urandom(50_000), "big.mp4")
    assert status == 413
    assert "0.1 MB" in _assert_one_line_error(body) and "at most 0.01 MB" in body["error"]

    # a client that announces 1 TB and sends nothing gets its answer at once, not after a read that never ends
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 413")
    assert list(app.upload_dir.iterdir()) == []


def test_an_audio_model_names_its_one_view_audio_only(tmp_path: Path) -> None:
    audio_run = make_run(tmp_path / "audio_run", "audio")
    app = serve.build_app(audio_run, device="cpu", upload_dir=tmp_path / "up", topk=3)
    status, body = app.predict(write_wav(tmp_path / "a.wav"), "a.wav")
    assert status == 200 and list(body["views"]) == ["audio-only"] and len(body["views"]["audio-only"]) == 3
    assert "neighbours" not in body  # no --index
    status, body = app.predict(write_video_only(tmp_path / "silent.mp4"), "silent.mp4")
    assert status == 422 and _assert_one_line_error(body)  # video only: nothing this model can read


def test_command_errors_are_one_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main([str(tmp_path / "no_run")]) == 2
    assert capsys.readouterr().err.startswith("avformer serve: error: ")
    assert serve.main([str(run), "--examples", str(tmp_path / "nothing_here")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--examples: no such file or folder" in err
    assert serve.main([str(run), "--index", str(tmp_path)]) == 2  # no embeddings.pt there
    assert capsys.readouterr().err.startswith("avformer serve: error: ")
    assert cli_main.main(["serve", str(run), "--topk", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        cli_main.main(["serve", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "usage: avformer serve [-h]" in text and "--max-upload-mb" in text and "``" not in text


# ---- a person with a browser --------------------------------------------------------------------------------------


class _DevTools:
    """The few Chrome DevTools Protocol calls the test needs, over the page target's websocket."""

    def __init__(self, ws_url: str) -> None:
        websocket = pytest.importorskip("websocket", reason="websocket-client (the dev extra) drives the browser")
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait(self, expression: str, timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def upload(self, path: Path) -> str:
        """Choose ``path`` in the file input, press Predict, wait; returns the status state (done / error)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
        self.call("DOM.setFileInputFiles", files=[str(path)], nodeId=node)
        self.js("document.getElementById('go').click()")
        state = "document.getElementById('status').dataset.state"
        return self.wait(f"['done', 'error'].includes({state}) && {state}")

    def screenshot(self, out: Path) -> None:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]  # the whole page, not just the window
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)["data"]
        out.write_bytes(base64.b64decode(data))


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        raise AssertionError(f"avformer serve printed no address (exit status {proc.poll()})")
    return box[0]


@pytest.mark.slow
def test_a_person_uploads_a_clip_in_chromium(run: Path, index: Path, synth: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium); it plays the person with a browser")
    pytest.importorskip("websocket", reason="websocket-client (the dev extra) drives the browser")
    clip = shared_path(*CLIP)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    server_log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "avformer", "serve", str(run), "--index", str(index), "--port", "0", "--device", "cpu",
         "--examples", str(synth.parent / "clips" / "000000.mp4"), str(synth.parent / "clips" / "000001.mp4")],
        stdout=subprocess.PIPE, stderr=server_log, text=True, env=env,
    )  # fmt: skip
    browser = None
    try:
        line = _first_line(server, 120)
        url = line.split(" on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), line
        profile = tmp_path / "profile"
        browser = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--no-default-browser-check", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--window-size=1100,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "chromium.log").open("w"),
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and browser.poll() is None, (tmp_path / "chromium.log").read_text()
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
        page = next(t for t in targets if t["type"] == "page")
        tab = _DevTools(page["webSocketDebuggerUrl"])
        tab.call("Page.enable")
        tab.call("Page.navigate", url=url)
        tab.wait("document.readyState === 'complete' && !!document.getElementById('file')", 60)

        assert tab.upload(clip) == "done", tab.js("document.getElementById('error').textContent")
        tab.wait("document.getElementById('figure') && document.getElementById('figure').naturalWidth > 0", 30)
        text = tab.js("document.body.innerText")
        _, expected = _post(url + "api/predict", clip.read_bytes(), clip.name)  # what the server says for it
        top = expected["views"]["fused"][0]
        assert clip.name in text and f"{top['label']}\n" in text and f"{top['prob']:.3f}" in text
        for heading in ("fused", "audio-only", "video-only", "nearest clips: this file's audio"):
            assert heading in text, heading
        assert "Traceback" not in text
        shot = tmp_path / "serve_screenshot.png"
        tab.screenshot(shot)
        assert shot.read_bytes().startswith(b"\x89PNG")
        shutil.copy(shot, "/tmp/serve_screenshot.png")

        notes = tmp_path / "notes.txt"
        notes.write_text("a shopping list, not a video\n" * 20)
        assert tab.upload(notes) == "error"
        error = tab.js("document.getElementById('error').textContent")
        assert error.startswith("notes.txt: ") and "not media" in error and "\n" not in error
        assert "Traceback" not in tab.js("document.body.innerText")
        tab.screenshot(tmp_path / "serve_error.png")
        shutil.copy(tmp_path / "serve_error.png", "/tmp/serve_screenshot_error.png")

        tab.js("document.querySelector('button.ex').click()")  # an example, after the error: still served
        assert tab.wait("document.getElementById('status').dataset.state === 'done'", 120)
        assert "000000.mp4" in tab.js("document.body.innerText")
        tab.ws.close()
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=30)
        server.send_signal(signal.SIGINT)  # Ctrl+C
        try:
            out, _ = server.communicate(timeout=30)
        finally:
            server_log.close()
    assert server.returncode == 0 and "avformer serve: stopped" in out, (tmp_path / "server.log").read_text()
