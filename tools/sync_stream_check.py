"""Which stream does an ``av_sync`` run read? Its val clips scored with their own streams, and with the video of
another clip (the next one of the batch; the audio and its offset class stay).

A model that reads the audio-video timing falls to chance (1/K) both against the video's class and the audio's;
one that reads where the video window lies in its file keeps scoring the video's class, one that reads the audio
window alone keeps the audio's (docs/sync.md).

    python tools/sync_stream_check.py runs/sync/synth
"""

import sys

import torch

from avformer.data.dataset import AVDataset, make_loader
from avformer.data.manifest import read_manifest
from avformer.eval.sync import sync_task
from avformer.models.loading import load_run

run = load_run(sys.argv[1], require_classes=False)
task = sync_task(run)
cfg = run.cfg
ds = AVDataset(read_manifest(cfg.val_manifest), cfg.data, train=False, seed=cfg.train.seed)
loader = make_loader(ds, batch_size=64, shuffle=False)
own = vcls = acls = n = 0
with torch.no_grad():
    for b in loader:
        t = b["audio_offset_class"]
        own += int((task.scores(b).argmax(1) == t).sum())
        sw = dict(b)
        sw["video"] = b["video"].roll(1, 0)
        p = task.scores(sw).argmax(1)
        vcls += int((p == t.roll(1, 0)).sum())
        acls += int((p == t).sum())
        n += len(t)
k = len(task.options.offsets)
print(
    f"{sys.argv[1]}: own streams {own / n:.3f}; video of another clip: {vcls / n:.3f} against the video's class, "
    f"{acls / n:.3f} against the audio's (n={n}, chance {1 / k:.3f})"
)
