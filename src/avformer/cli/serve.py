"""``avformer serve RUN``: a web page to try a trained model on your own video or audio files.

    avformer serve RUN [--index EMBED_DIR] [--examples DIR_OR_FILE ...] [--port 7860] [--host 127.0.0.1]
                       [--device auto] [--topk 5] [--max-upload-mb 200]

Open the printed address in a browser, choose a video or audio file (any container FFmpeg reads) or click one of
the --examples, and the page shows:

- the top-k labels with their probabilities for each view the model has: fused, and for an audio-visual model
  its audio-only and video-only views (the same model with the other stream masked out);
- the frames and the log-mel spectrogram the model saw (one window), as in avformer predict --png;
- with --index (a folder written by avformer embed), the nearest clips of that index: the upload's audio against
  the clips' videos and its video against the clips' audios, as avformer retrieve --file ranks them.

The numbers are those of avformer predict (the same decoding, windows, transforms and pooling) and of
avformer retrieve. A file that cannot be used (not media, empty, too large, no stream the model reads) gives a
one-line error on the page; the server goes on serving.

Uploads are streamed into a private temporary folder under a name the server makes (the client's file name is
shown, never used as a path), refused above --max-upload-mb, and deleted as soon as they are predicted. Without
a browser: curl --data-binary @clip.mp4 -H "X-Filename: clip.mp4" http://127.0.0.1:7860/api/predict prints the
JSON result. The server listens on 127.0.0.1 by default; --host 0.0.0.0 lets anyone on the network upload files.

Why the standard library's http.server and one inline HTML page, not Gradio or FastAPI: the page needs one form,
one request and a result view, which a few lines of inline JavaScript do; nothing is loaded from a CDN, so the page
works offline; the figures are the PNGs of avformer.eval.report.plot_prediction (matplotlib, already a
dependency); and no new dependency (Gradio brings FastAPI, uvicorn, pandas and dozens more) is needed to run it.
A ThreadingHTTPServer keeps the page responsive while one prediction runs (predictions take turns on the model).

Exit status: 0 after Ctrl+C (or SIGTERM); 2 a run, index or option that cannot be used.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from avformer.api import LoadedModel, load
from avformer.cli._help import plain
from avformer.cli.retrieve import retrieve
from avformer.data.manifest import AUDIO_EXTENSIONS, ManifestError
from avformer.eval.predict import FilePrediction, FilePredictor
from avformer.eval.report import plot_prediction
from avformer.utils.checkpoint import CheckpointError, load_checkpoint
from avformer.utils.errors import UsageError, one_line, report

__all__ = ["ServeApp", "build_app", "main", "make_server"]

_MEDIA_EXTENSIONS = AUDIO_EXTENSIONS | {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".3gp", ".gif", ".ogv", ".wmv",
}  # fmt: skip
_MAX_EXAMPLES = 12  # files taken from an --examples folder
_CHUNK = 1 << 20  # bytes read from the socket at a time
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")  # the only part of a client's file name that reaches the disk


@dataclass
class ServeApp:
    """What the server serves: a loaded model, its predictor, an optional index and example files.

    Attributes:
        model: from :func:`avformer.api.load`.
        predictor: the model's :class:`FilePredictor` (with the display window and the per-modality views).
        upload_dir: private folder for uploads and figures (emptied after each request).
        max_bytes: largest upload accepted.
        index: an ``avformer embed`` folder, or None.
        examples: server-side files the page offers (the client names them by position, never by path).
        title: what the page calls the model (the run as given on the command line).
        lock: held while a file is predicted (one at a time; the page and other requests are still answered).
    """

    model: LoadedModel
    predictor: FilePredictor
    upload_dir: Path
    max_bytes: int
    index: Path | None = None
    examples: list[Path] = field(default_factory=list)
    title: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "model": self.model.config.model.name,
            "classes": len(self.model.classes),
            "inputs": self.predictor.kind,
            "topk": self.predictor.topk,
            "max_bytes": self.max_bytes,
            "index": str(self.index) if self.index else None,
            "examples": [p.name for p in self.examples],
        }

    def predict(self, path: Path, name: str) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, JSON body)`` for one file on the server's disk, shown to the user as ``name``."""
        with self.lock:  # one prediction at a time: the model and the figure code are not shared across threads
            pred = self.predictor.predict(path)
            if not pred.ok:
                return HTTPStatus.UNPROCESSABLE_ENTITY, {"ok": False, "name": name, "error": pred.error}
            body = {k: v for k, v in pred.to_dict().items() if k != "path"}  # the server's path is no business
            body["name"] = name
            body["views"] = _views(pred, self.predictor.kind)
            body["image"] = self._figure(pred, name)
            if self.index is not None:
                body["neighbours"] = self._neighbours(path, pred)
        return HTTPStatus.OK, body

    def _figure(self, pred: FilePrediction, name: str) -> str | None:
        """The ``predict --png`` figure as a data URL (written to the upload folder, read, deleted)."""
        d = pred.display
        if d is None:
            return None
        end = f"{d.window[1]:.1f}" if d.window[1] is not None else "end"
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=self.upload_dir)
        os.close(fd)
        try:
            plot_prediction(
                tmp,
                pred.top,
                frames=d.frames,
                spectrogram=d.spectrogram,
                title=f"{name}  (window {d.window[0]:.1f}–{end} s)",
            )
            return "data:image/png;base64," + base64.b64encode(Path(tmp).read_bytes()).decode("ascii")
        finally:
            os.unlink(tmp)

    def _neighbours(self, path: Path, pred: FilePrediction) -> list[dict[str, Any]]:
        """``avformer retrieve --file`` for each stream the file has: its audio against the clips' videos, its video
        against the clips' audios. A search that cannot be made is one ``error`` line, not a failed request."""
        assert self.index is not None
        out: list[dict[str, Any]] = []
        for query, gallery, present in (("audio", "video", pred.has_audio), ("video", "audio", pred.has_video)):
            if not present:
                continue
            entry: dict[str, Any] = {"query": query, "gallery": gallery}
            try:
                hits = retrieve(self.index, file=str(path), query=query, gallery=gallery, k=self.predictor.topk)
                entry["hits"] = [{k: h[k] for k in ("rank", "score", "id", "label")} for h in hits]
            except (OSError, RuntimeError, ManifestError, CheckpointError, TypeError, ValueError, KeyError) as e:
                entry["error"] = one_line(e)  # e.g. the index's run moved, or this stream fails to decode
            out.append(entry)
        return out


def _views(pred: FilePrediction, kind: str) -> dict[str, list[dict[str, Any]]]:
    """``fused`` (the prediction itself) then ``audio-only`` / ``video-only`` where the model has them; a single
    encoder's one view is named after its modality, as ``avformer eval`` names it."""
    first = "fused" if kind == "av" else f"{kind}-only"
    out = {first: [{"label": n, "prob": round(p, 6)} for n, p in pred.top]}
    for name in ("audio", "video"):
        if name in pred.views:
            out[f"{name}-only"] = [{"label": n, "prob": round(p, 6)} for n, p in pred.views[name]]
    return out


def _display_name(raw: str | None) -> str:
    """A client's file name made safe to show: the last path component, printable, at most 120 characters."""
    name = urllib.parse.unquote(raw or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:120] or "upload"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "avformer-serve"
    timeout = 120  # seconds a stalled client may hold its thread

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        app = self.server.app
        route = urllib.parse.urlsplit(self.path).path
        if route == "/":
            self._send(HTTPStatus.OK, _page(app).encode("utf-8"), "text/html; charset=utf-8")
        elif route == "/api/info":
            self._json(HTTPStatus.OK, app.info())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no such page: {route}"})

    def do_POST(self) -> None:
        app = self.server.app
        route = urllib.parse.urlsplit(self.path).path
        try:
            if route == "/api/predict":
                self._upload(app)
            elif (m := re.fullmatch(r"/api/example/(\d+)", route)) is not None:
                i = int(m.group(1))
                if i >= len(app.examples):
                    self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no example {i}"})
                else:
                    self._json(*app.predict(app.examples[i], app.examples[i].name))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no such endpoint: {route}"})
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away or stalled: nobody to answer
        except Exception as e:  # a bug: one line for the page, the traceback for the server's log
            traceback.print_exc()
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": f"internal error: {one_line(e)}"})

    def _upload(self, app: ServeApp) -> None:
        name = _display_name(self.headers.get("X-Filename"))
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None or not length.isdigit():
            self._refuse(
                HTTPStatus.LENGTH_REQUIRED, name, "the upload has no Content-Length (send the file as the body)"
            )
            return
        size = int(length)
        if size == 0:
            self._json(HTTPStatus.BAD_REQUEST, {"ok": False, "name": name, "error": "the file is empty"})
            return
        if size > app.max_bytes:
            limit = app.max_bytes / 1e6
            self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                name,
                f"the file is {size / 1e6:.1f} MB; this server takes at most {limit:g} MB (--max-upload-mb)",
            )
            return
        suffix = os.path.splitext(name)[1].lower()  # FFmpeg probes some formats better with it
        suffix = suffix if _SUFFIX.fullmatch(suffix) else ""
        fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=app.upload_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                left = size
                while left:
                    chunk = self.rfile.read(min(_CHUNK, left))
                    if not chunk:
                        raise ConnectionError("the upload ended early")
                    f.write(chunk)
                    left -= len(chunk)
            self._json(*app.predict(Path(tmp), name))
        finally:
            os.unlink(tmp)

    def _refuse(self, status: int, name: str, error: str) -> None:
        """Answer before reading the body, then close: the rest of the body is read and dropped for a moment so the
        client sees the answer rather than a reset connection."""
        self._json(status, {"ok": False, "name": name, "error": error}, close=True)
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and self.connection.recv(_CHUNK):
                pass
        except OSError:
            pass
        self.close_connection = True

    def _json(self, status: int, body: dict[str, Any], *, close: bool = False) -> None:
        self._send(status, json.dumps(body).encode("utf-8"), "application/json", close=close)

    def _send(self, status: int, data: bytes, content_type: str, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: ServeApp) -> None:
        self.app = app
        super().__init__(address, _Handler)


def make_server(app: ServeApp, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A bound server for ``app`` (``port=0``: a free port, see ``server.server_address``); call ``serve_forever``."""
    return _Server((host, port), app)


def build_app(
    run: str | os.PathLike[str],
    *,
    index: str | os.PathLike[str] | None = None,
    examples: Sequence[str | os.PathLike[str]] = (),
    device: str = "auto",
    topk: int = 5,
    clips: int = 3,
    max_bytes: int = 200_000_000,
    timeout_s: float | None = 60.0,
    upload_dir: str | os.PathLike[str] | None = None,
) -> ServeApp:
    """Load the run, check the index and examples, make the upload folder (a new temporary one by default).

    Raises:
        UsageError: a run without classes, an index without audio-video embeddings, an example that is missing.
        FileNotFoundError, CheckpointError: the run or index cannot be read.
    """
    if topk < 1 or clips < 1 or max_bytes < 1:
        raise UsageError("--topk, --clips and --max-upload-mb must be positive")
    model = load(run, device)
    if not model.classes:
        raise UsageError(f"{model.checkpoint}: this run has no classes (self-supervised); serve needs a classifier")
    index_dir = Path(index) if index is not None else None
    if index_dir is not None:
        data = load_checkpoint(index_dir / "embeddings.pt")
        if "audio_va" not in data and "video_va" not in data:
            raise UsageError(f"{index_dir}: the index has no audio-video embeddings, so no neighbours can be found")
    files: list[Path] = []
    for item in map(Path, examples):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in _MEDIA_EXTENSIONS)
            files += found[:_MAX_EXAMPLES]
        elif item.is_file():
            files.append(item)
        else:
            raise UsageError(f"--examples: no such file or folder: {item}")
    predictor = FilePredictor(
        model.run,
        num_clips=clips,
        topk=topk,
        device=model.device,
        keep_display=True,
        timeout_s=timeout_s,
        per_modality=True,
    )
    if upload_dir is not None:
        folder = Path(upload_dir)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="avformer-serve-"))  # mode 0700: this user's only
    title = os.fspath(run)  # as the user wrote it, e.g. runs/demo/fused
    return ServeApp(model, predictor, folder, max_bytes, index_dir, files, title)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer serve", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", metavar="RUN", help="run folder (best.pt, else last.pt) or a checkpoint file")
    p.add_argument("--index", metavar="EMBED_DIR", help="folder of `avformer embed`: show the nearest clips")
    p.add_argument(
        "--examples",
        nargs="+",
        action="extend",
        default=[],
        metavar="DIR_OR_FILE",
        help=f"media files (or folders: their first {_MAX_EXAMPLES} media files) the page offers to try",
    )
    p.add_argument("--port", type=int, default=7860, help="TCP port (default 7860; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="labels shown per view (default 5)")
    p.add_argument("--clips", type=int, default=3, metavar="N", help="windows per file, spread uniformly (default 3)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, metavar="MB", help="largest upload (default 200)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="decode-time budget per file (default 60)")
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    try:
        app = build_app(
            args.run,
            index=args.index,
            examples=args.examples,
            device=args.device,
            topk=args.topk,
            clips=args.clips,
            max_bytes=int(args.max_upload_mb * 1e6),
            timeout_s=args.timeout if args.timeout > 0 else None,
        )
    except (FileNotFoundError, CheckpointError, UsageError, ValueError, KeyError, TypeError) as e:
        return report("avformer serve", e)
    try:
        try:
            server = make_server(app, args.host, args.port)
        except OSError as e:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from e
        host, port = server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        print(
            f"avformer serve: {app.title} ({app.info()['model']}) on http://{shown}:{port}/  (Ctrl+C stops)", flush=True
        )
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"  note: listening on {args.host}: anyone who can reach this machine can upload files", flush=True)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill`, a container stop: clean up as for Ctrl+C
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("avformer serve: stopped", flush=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
            server.server_close()
    finally:
        shutil.rmtree(app.upload_dir, ignore_errors=True)
    return 0


# ---- the page ---------------------------------------------------------------------------------------------------


def _page(app: ServeApp) -> str:
    info = app.info()
    examples = "".join(
        f'<button type="button" class="ex" data-i="{i}">{html.escape(name)}</button>'
        for i, name in enumerate(info["examples"])
    )
    inputs = {"av": "audio + video", "audio": "audio", "video": "video"}[info["inputs"]]
    about = f"{html.escape(info['model'])}, {info['classes']} classes, reads {inputs}" + (
        f"; neighbours from {html.escape(Path(info['index']).name)}" if info["index"] else ""
    )
    return (
        _PAGE.replace("{{TITLE}}", html.escape(info["title"]))
        .replace("{{ABOUT}}", about)
        .replace("{{EXAMPLES}}", f"<p>or try an example: {examples}</p>" if examples else "")
        .replace("{{MAX_BYTES}}", str(info["max_bytes"]))
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>avformer: {{TITLE}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1000px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.1em; } .about { color: #666; margin-top: 0; }
form, .examples { margin: 1em 0; } button { margin: 0.2em; padding: 0.3em 0.8em; }
#status { color: #555; min-height: 1.3em; } #error { color: #b00020; font-weight: 600; min-height: 1.3em; }
.views { display: flex; flex-wrap: wrap; gap: 1.5em; }
.view { flex: 1 1 280px; } .view h3 { margin: 0.3em 0; font-size: 1em; }
.row { display: flex; align-items: center; gap: 0.5em; margin: 2px 0; }
.label { width: 11em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { background: #e8eef7; flex: 1; height: 1em; } .bar > div { background: #3b73c4; height: 100%; }
.prob { width: 3.5em; text-align: right; font-variant-numeric: tabular-nums; }
.notes { color: #8a5a00; } img { max-width: 100%; border: 1px solid #ddd; margin-top: 1em; }
table { border-collapse: collapse; margin: 0.3em 0 1em; } td, th { padding: 2px 10px; text-align: left; }
th { border-bottom: 1px solid #ccc; }
</style></head><body>
<h1>avformer: {{TITLE}}</h1>
<p class="about">{{ABOUT}}</p>
<form id="form">
  <input type="file" id="file" accept="video/*,audio/*,.mpg,.mkv,.webm,.avi,.gif,.flac">
  <button type="submit" id="go">Predict</button>
</form>
<div class="examples">{{EXAMPLES}}</div>
<p id="status" data-state="idle"></p>
<p id="error"></p>
<div id="result"></div>
<script>
"use strict";
const MAX_BYTES = {{MAX_BYTES}};
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function state(s, text) { $("status").dataset.state = s; $("status").textContent = text || ""; }
function fail(message) { $("error").textContent = message; state("error", ""); }
function bars(title, items) {
  const box = el("div", undefined, "view");
  box.appendChild(el("h3", title));
  for (const it of items) {
    const row = el("div", undefined, "row");
    row.appendChild(el("span", it.label, "label")).title = it.label;
    const bar = el("div", undefined, "bar"), fill = el("div");
    fill.style.width = (100 * it.prob).toFixed(1) + "%";
    bar.appendChild(fill); row.appendChild(bar);
    row.appendChild(el("span", it.prob.toFixed(3), "prob"));
    box.appendChild(row);
  }
  return box;
}
function show(r) {
  const out = $("result");
  const streams = [r.has_audio ? "audio" : "", r.has_video ? "video" : ""].filter(Boolean).join(" + ");
  const n = r.windows.length;
  out.appendChild(el("h2", r.name));
  const length = r.duration === null ? "length unknown" : `${r.duration.toFixed(1)} s long`;
  const summary = `${length}, ${streams}; ${n} window${n === 1 ? "" : "s"} averaged; took ${r.seconds.toFixed(1)} s`;
  out.appendChild(el("p", summary));
  for (const note of r.notes) out.appendChild(el("p", "note: " + note, "notes"));
  const views = el("div", undefined, "views");
  for (const [name, items] of Object.entries(r.views)) views.appendChild(bars(name, items));
  out.appendChild(views);
  if (r.image) {
    const img = el("img");
    img.id = "figure"; img.alt = "frames, log-mel spectrogram and top labels"; img.src = r.image;
    out.appendChild(img);
  }
  for (const nb of r.neighbours || []) {
    out.appendChild(el("h3", `nearest clips: this file's ${nb.query} against the clips' ${nb.gallery}s`));
    if (nb.error) { out.appendChild(el("p", nb.error, "notes")); continue; }
    const t = el("table"), head = el("tr");
    for (const h of ["rank", "cosine", "clip", "label"]) head.appendChild(el("th", h));
    t.appendChild(head);
    for (const h of nb.hits) {
      const tr = el("tr");
      for (const v of [h.rank, h.score.toFixed(3), h.id, h.label]) tr.appendChild(el("td", String(v)));
      t.appendChild(tr);
    }
    out.appendChild(t);
  }
}
async function send(url, body, headers, name) {
  $("error").textContent = ""; $("result").textContent = "";
  state("busy", `predicting ${name} ...`);
  let r;
  try {
    const resp = await fetch(url, { method: "POST", body: body, headers: headers });
    r = await resp.json();
  } catch (e) {
    fail(`${name}: no answer from the server (${e.message})`); return;
  }
  if (!r.ok) { fail(`${r.name || name}: ${r.error}`); return; }
  show(r); state("done", "");
}
$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = $("file").files[0];
  if (!f) { fail("choose a video or audio file first"); return; }
  if (f.size === 0) { fail(`${f.name}: the file is empty`); return; }
  if (f.size > MAX_BYTES) {
    fail(`${f.name}: the file is ${(f.size / 1e6).toFixed(1)} MB; this server takes at most ${MAX_BYTES / 1e6} MB`);
    return;
  }
  const headers = { "Content-Type": "application/octet-stream", "X-Filename": encodeURIComponent(f.name) };
  send("/api/predict", f, headers, f.name);
});
for (const b of document.querySelectorAll("button.ex"))
  b.addEventListener("click", () => send("/api/example/" + b.dataset.i, null, {}, b.textContent));
</script>
</body></html>
"""
