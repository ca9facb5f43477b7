"""``avformer retrieve``: the top-k clips of an embedding index for a text or a media file, with their scores.

    avformer retrieve INDEX --text "a man says two" [-k 5]
    avformer retrieve INDEX --file query.mp4 [--query audio|video] [--gallery video|audio] [-k 5]

``INDEX`` is a folder written by ``avformer embed``; the model is the run recorded there (``--run`` overrides). A text
query (VATT) is embedded by the text encoder and ranked against the clips' videos in the video-text space. A file query
is embedded by its audio (default) or video encoder and ranked in the audio-video space (VATT's, or an AV model's
contrastive projections) against the gallery's videos (default) or audios. Scores are cosine similarities. Prints
``rank, score, id, path, label`` lines (``--json`` for machine-readable output).

Exit status: 0 done; 2 a bad index, query file or argument.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from avformer.cli._help import plain
from avformer.data.manifest import Manifest, ManifestError, ManifestRow
from avformer.eval.representations import extract_embeddings
from avformer.metrics.retrieval import similarity_matrix
from avformer.models.loading import load_run
from avformer.utils.checkpoint import CheckpointError, load_checkpoint
from avformer.utils.errors import report

__all__ = ["main", "retrieve"]


def retrieve(
    index_dir: str | Path,
    *,
    text: str | None = None,
    file: str | None = None,
    query: str = "audio",
    gallery: str = "video",
    k: int = 5,
    run: str | None = None,
) -> list[dict[str, Any]]:
    """Ranked hits ``{rank, score, id, path, label}`` for a text or file query (see the module docstring)."""
    if (text is None) == (file is None):
        raise ValueError("give exactly one of --text and --file")
    data = load_checkpoint(Path(index_dir) / "embeddings.pt")  # weights_only: a pickle payload is refused
    if run is None and not isinstance(data.get("run"), str):
        raise CheckpointError(f"{Path(index_dir) / 'embeddings.pt'}: no run recorded (pass --run)")
    loaded = load_run(run or data["run"], require_classes=False)
    cfg, model = loaded.cfg, loaded.model
    with torch.no_grad():
        if text is not None:
            if not hasattr(model, "embed_text") or "video_vt" not in data:
                raise ValueError(f"model {cfg.model.name!r} does not embed text: use --file")
            q = model.embed_text([text])
            keys, valid = data["video_vt"], data["has_video"]
        else:
            assert file is not None
            for space in (query, gallery):
                if f"{space}_va" not in data:
                    raise ValueError(
                        f"the index has no {space} embeddings in an audio-video space (model {cfg.model.name!r})"
                    )
            row = ManifestRow(path=str(Path(file).resolve()), id=Path(file).name)
            emb = extract_embeddings(model, Manifest([row], source=file), cfg.data, batch_size=1)
            present = bool(emb.has_audio[0] if query == "audio" else emb.has_video[0])
            if not present:
                raise ValueError(f"{file}: has no {query} stream")
            q = emb.audio_va if query == "audio" else emb.video_va
            assert q is not None
            keys, valid = data[f"{gallery}_va"], data[f"has_{gallery}"]
    scores = similarity_matrix(q, keys)[0].masked_fill(~valid.bool(), float("-inf"))
    top = scores.topk(min(k, int(valid.sum())))
    classes, labels = data["classes"], data["labels"]
    return [
        {
            "rank": r + 1,
            "score": float(s),
            "id": data["ids"][i],
            "path": data["paths"][i],
            "label": classes[int(labels[i])] if int(labels[i]) >= 0 else "",
        }
        for r, (s, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True))
    ]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer retrieve", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("index", help="folder written by `avformer embed`")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="a text query (ranked against the clips' videos)")
    q.add_argument("--file", help="a media file query")
    p.add_argument("--query", choices=("audio", "video"), default="audio", help="stream of --file that is the query")
    p.add_argument("--gallery", choices=("video", "audio"), default="video", help="what --file is ranked against")
    p.add_argument("-k", type=int, default=5, help="number of results")
    p.add_argument("--run", help="model run (default: the one recorded in the index)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        hits = retrieve(
            args.index, text=args.text, file=args.file, query=args.query, gallery=args.gallery, k=args.k, run=args.run
        )
    except (FileNotFoundError, ManifestError, CheckpointError, TypeError, ValueError, KeyError) as e:
        return report("avformer retrieve", e)
    if args.json:
        print(json.dumps(hits, indent=2))
    else:
        print(_header(args))
        print(f"{'rank':>4}  {'score':>7}  id  path  label")
        for h in hits:
            print(f"{h['rank']:>4}  {h['score']:+.4f}  {h['id']}  {h['path']}  {h['label']}")
    return 0


def _header(args: argparse.Namespace) -> str:
    """What was matched against what, and what the score is."""
    if args.text is not None:
        what = f"text {args.text!r} against the clips' videos (video-text space)"
    else:
        what = f"the {args.query} of {args.file} against the clips' {args.gallery}s (audio-video space)"
        if args.query == "audio" and args.gallery == "video":
            what += "; --query/--gallery choose other streams"
    return (
        f"top {args.k}: {what}; score = cosine similarity of the embeddings, in [-1, 1], higher is closer "
        "(only the order is meaningful across queries)"
    )
