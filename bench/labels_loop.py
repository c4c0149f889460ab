"""The labelling loop on houses-dev, as a labelling campaign would run it (issue 24 b).

    nice -n 10 python -m bench.labels_loop [--train-share 1.0] [--wrong 0.05] [--feature-views 1]

Embedded Tansu + Redis, houses-dev served over real HTTP (house = hotel). Every photo is
uploaded and scored by the real scorer; reviewers with real tokens give the area of every photo
of the training hotels through the HTTP API (from the folder names, ``--wrong`` of them
deliberately wrong, to another area) and the held-out hotels' photos correctly; the scorer
applies the label events; then `labels export`, `labels suspects` (how many of the wrong
labels it finds) and `labels evidence` (held-out top-1 of the retrained tagger at 25 / 50 /
100 % of the training labels against today's zero-shot prior on the same photos). Prints one
table: each stage's wall and CPU seconds, the load average, the figures.

houses-dev: H. Ahmed E. and M. Moustafa, "House Price Estimation from Visual and Textual
Features", IJCCI 2016, pp. 62-68. Its photos and anything trained on them stay out of the repo:
everything is written under --work (default a temporary folder).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path

from bench.houses import AREAS, house_number, houses_dev_dir, houses_files


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


async def main(args: argparse.Namespace) -> None:
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer
    from click.testing import CliRunner

    from galleryrank.consumer.api.serve import create_app
    from galleryrank.consumer.cli.main import cli
    from galleryrank.consumer.dev.embedded import EmbeddedKafka, EmbeddedRedis
    from galleryrank.consumer.dev.samples import ImageServer
    from galleryrank.consumer.labels.evidence import run_evidence
    from galleryrank.consumer.labels.export import ExportOptions, export_labels, split_hotels
    from galleryrank.consumer.labels.reader import read_labels
    from galleryrank.consumer.labels.suspects import find_suspects, photos_from_dir
    from galleryrank.consumer.runtime import redis_client, run_scorer
    from galleryrank.consumer.settings import Settings
    from galleryrank.consumer.stream.kafka import create_topics
    from galleryrank.consumer.stream.produce import publish, upserted
    from galleryrank.models import load_scoring_model

    root = houses_dev_dir()
    if root is None:
        raise SystemExit("houses-dev not found (../shared/data/houses-dev or $GALLERYRANK_HOUSES_DEV)")
    work = Path(args.work or tempfile.mkdtemp(prefix="labels-loop-"))
    files = houses_files(root)
    photos = {(f"house{house_number(p):03d}", f"{p.parent.name}-{p.stem}"): p for p in files}
    truth = {k: p.parent.name for k, p in photos.items()}
    split = split_hotels([h for h, _ in photos], 0.2, seed=0)  # the split export will make
    train_keys = sorted(k for k in photos if split[k[0]] == "train")
    rng = random.Random(args.seed)
    labelled_train = rng.sample(train_keys, round(args.train_share * len(train_keys)))
    wrong = set(rng.sample(labelled_train, round(args.wrong * len(labelled_train))))
    given = {k: (rng.choice([a for a in AREAS if a != truth[k]]) if k in wrong else truth[k]) for k in labelled_train}
    given |= {k: truth[k] for k in photos if split[k[0]] == "test"}
    stages: list[tuple[str, float, float, str]] = []

    def stage(name: str, t0: float, c0: float, note: str = "") -> None:
        stages.append((name, time.perf_counter() - t0, cpu_s() - c0, note))
        print(f"{name}: {stages[-1][1]:.1f} s wall, {stages[-1][2]:.1f} CPU-s {note}", flush=True)

    t_all, c_all = time.perf_counter(), cpu_s()
    with EmbeddedKafka() as kafka, EmbeddedRedis() as redis_server:
        tag = uuid.uuid4().hex[:6]
        s = Settings(
            bootstrap_servers=kafka.bootstrap_servers,
            redis_url=redis_server.url,
            topic=f"houses-{tag}",
            dlq_topic=f"houses-{tag}.dlq",
            labels_topic=f"houses-{tag}.labels",
            group_id=f"houses-{tag}",
            namespace="live",
            download_allow_networks="127.0.0.0/8",
            session_timeout_ms=6000,
            metrics_port=0,
            backend="onnxruntime",
            device="cpu",
            model_cache_dir=str(work / "model"),
            review_rate_per_minute=1_000_000,
        )
        server = await ImageServer({f"{h}-{i}.jpg": p.read_bytes() for (h, i), p in photos.items()}).start()
        redis = redis_client(s)
        try:
            t0, c0 = time.perf_counter(), cpu_s()
            model = load_scoring_model(None, device="cpu", backend="onnxruntime", cache_dir=s.model_cache_dir)
            await create_topics(s, partitions=4)
            await publish(s, [upserted(h, i, server.url(f"{h}-{i}.jpg")) for h, i in photos])
            await run_scorer(s, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
            stage("upload + score", t0, c0, f"{len(photos)} photos")

            t0, c0 = time.perf_counter(), cpu_s()
            add = ["reviewers", "add", f"campaign-{tag}", "--role", "reviewer", "--redis-url", s.redis_url]
            out = await asyncio.to_thread(CliRunner().invoke, cli, add)  # the command runs its own event loop
            assert out.exit_code == 0, out.output
            token = out.stdout.strip().splitlines()[0]
            app = TestServer(create_app(s, redis=redis), host="127.0.0.1")
            await app.start_server()
            async with ClientSession(
                base_url=str(app.make_url("")), headers={"Authorization": f"Bearer {token}"}
            ) as http:
                gate = asyncio.Semaphore(16)

                async def label(key: tuple[str, str]) -> None:
                    async with (
                        gate,
                        http.post(f"/hotels/{key[0]}/images/{key[1]}/area", json={"area": given[key]}) as r,
                    ):
                        assert r.status == 200, await r.text()

                await asyncio.gather(*(label(k) for k in sorted(given)))
            await app.close()
            stage("labels via HTTP API", t0, c0, f"{len(given)} labels ({len(wrong)} wrong)")

            t0, c0 = time.perf_counter(), cpu_s()
            await run_scorer(s, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
            stage("scorer applies labels", t0, c0)

            t0, c0 = time.perf_counter(), cpu_s()
            export = work / "export"
            read = await read_labels(s)
            manifest = await export_labels(s, read, export, ExportOptions(0.2, 0))
            stage("labels export", t0, c0, json.dumps(manifest["split"]["train"]["area_counts"]))
        finally:
            await redis.aclose()
            await server.stop()

    t0, c0 = time.perf_counter(), cpu_s()
    train_only = [p for p in photos_from_dir(export) if p.split == "train"]
    report = find_suspects(train_only, folds=5, cache_dir=str(work / "cache"), progress=False)
    flagged = {i["photo"] for i in report["label_issues"]}
    wrong_names = {f"{h} {i}" for h, i in wrong}
    found = len(flagged & wrong_names)
    stage(
        "labels suspects",
        t0,
        c0,
        f"{len(flagged)} flagged, {found}/{len(wrong)} wrong found (recall {found / max(len(wrong), 1):.2f}, "
        f"precision {found / max(len(flagged), 1):.2f}), oof acc {report['out_of_fold_accuracy']}",
    )
    (work / "suspects.json").write_text(json.dumps(report, indent=2))

    t0, c0 = time.perf_counter(), cpu_s()
    ev = run_evidence(
        export,
        work / "evidence",
        train_options={
            "epochs_all": 0,
            "feature_views": args.feature_views,
            "cache_dir": str(work / "cache"),
            "device": "cpu",
        },
    )
    stage("labels evidence (3 trainings + 4 evaluations)", t0, c0)
    stage("whole loop", t_all, c_all)

    print(
        f"\nload average {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} / {os.getloadavg()[2]:.1f} (1/5/15 min), {os.cpu_count()} cores"
    )
    print("\n| stage | wall s | CPU s | note |\n| --- | ---: | ---: | --- |")
    for name, wall, cpu, note in stages:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {note} |")
    live = ev["live"]["areas"]
    print(f"\nheld-out: {ev['test_photos']} photos of {manifest['split']['test']['hotels']} houses")
    print(
        "\n| model | labels | held-out top-1 | "
        + " | ".join(AREAS)
        + " |\n| --- | ---: | ---: |"
        + " ---: |" * len(AREAS)
    )
    print(
        f"| zero-shot prior (today) | 0 | {live['top1']:.3f} | "
        + " | ".join(f"{live['top1_per_area'].get(a, 0):.3f}" for a in AREAS)
        + " |"
    )
    for c in ev["learning_curve"]:
        if c["top1"] is None:
            print(f"| retrained, {c['fraction']:.0%} | {c['labels']} | not trained: {c['error']} |")
            continue
        print(
            f"| retrained, {c['fraction']:.0%} | {c['labels']} | {c['top1']:.3f} | "
            + " | ".join(f"{c['top1_per_area'].get(a, 0):.3f}" for a in AREAS)
            + " |"
        )
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-share", type=float, default=1.0, help="Share of the training hotels' photos labelled")
    ap.add_argument("--wrong", type=float, default=0.05, help="Share of the training labels deliberately wrong")
    ap.add_argument("--feature-views", type=int, default=1, help="Augmented views per photo in the feature cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="Folder for the export, caches and runs (default: a new temp folder)")
    asyncio.run(main(ap.parse_args()))
