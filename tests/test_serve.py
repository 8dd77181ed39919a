"""`encoderlab serve`: the batcher, request validation, the app (TestClient) and one real uvicorn."""

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import httpx  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from conftest import BAD, FILL, GOOD, run_cli, sentiment_rows  # noqa: E402
from encoderlab.config import FinetuneConfig  # noqa: E402
from encoderlab.errors import UserError  # noqa: E402
from encoderlab.finetuning import finetune  # noqa: E402
from encoderlab.inference import length_batches, load_finetuned, scored  # noqa: E402
from encoderlab.serve import Batcher, RequestError, ServeLimits, build_app, parse_request  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    train = tmp / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in sentiment_rows(160, 0)) + "\n")
    cfg = FinetuneConfig.model_validate(
        {
            "name": "srv",
            "runs_dir": str(tmp / "runs"),
            "task": {
                "type": "classification",
                "train": str(train),
                "label_column": "target",
                "max_len": 32,
            },
            "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
            "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
            "train": {"batch_size": 16, "lr": 3e-3, "epochs": 3, "warmup_steps": 0},
        }
    )
    run, _ = finetune(cfg, say=lambda m: None)
    return run.path


@pytest.fixture(scope="module")
def ft(run_dir):
    return load_finetuned(run_dir)


TEXTS = ["a great lovely film", "awful dull plot", "the actor was sad", "nice happy music"]


# -- predictions with scores -------------------------------------------------------------------


def test_predict_scored_matches_predict(ft):
    rows = ft.predict_scored(TEXTS)
    plain = ft.predict(TEXTS)
    assert [r["label"] for r in rows] == [p["prediction"] for p in plain]
    for r in rows:
        assert set(r["scores"]) == {"0", "1"}
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["score"] == max(r["scores"].values())
        assert r["label"] == max(r["scores"], key=r["scores"].get)


def test_length_batches_cover_everything_once_with_little_padding():
    lengths = [64, 10, 12, 11, 63, 30, 10, 31, 12, 60, 29, 11]
    batches = length_batches(lengths, max_batch=5)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 5 for b in batches)
    for b in batches:  # sorted by length, so similar lengths share a batch
        lens = [lengths[i] for i in b]
        assert lens == sorted(lens) and (len(b) <= 4 or max(lens) * len(b) <= 1.3 * sum(lens))
    assert length_batches([], 8) == [] and length_batches([5], 8) == [[0]]


def test_scored_rows_for_spans_and_tags():
    span = scored({"text": "oslo", "score": 7.5, "start_char": 10}, {"context": "x"}, [])
    assert span == {"label": "oslo", "score": 7.5, "scores": {}, "start": 10, "end": 14}
    none = scored({"text": "", "score": None, "start_char": -1}, {"context": "x"}, [])
    assert none["score"] is None and none["end"] == -1
    words = "john smith lives in new york".split()
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    row = scored(tags, {"tokens": words}, ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"])
    assert row["label"] == " ".join(tags) and row["tags"] == tags
    assert row["entities"] == [
        {
            "type": "PER",
            "start": 0,
            "end": 2,
            "char_start": 0,
            "char_end": 10,
            "text": "john smith",
        },
        {"type": "LOC", "start": 4, "end": 6, "char_start": 20, "char_end": 28, "text": "new york"},
    ]
    assert row["score"] is None and "tag_scores" not in row  # no confidences given
    sure = scored(tags, {"tokens": words}, [], [0.9, 0.6, 0.99, 0.98, 0.7, 0.8])
    assert sure["score"] == 0.6 and sure["tag_scores"][1] == 0.6
    assert [e["score"] for e in sure["entities"]] == [0.6, 0.7]
    assert scored(2.5, {}, [])["label"] == 2.5  # a regression-like value passes through


# -- request parsing ---------------------------------------------------------------------------


def test_parse_request_for_pairs_and_qa():
    lim = ServeLimits()
    assert parse_request(b'{"pairs": [["a", "b"], ["c", "d"]]}', ["pairs"], lim) == (
        ["a", "c"],
        ["b", "d"],
    )
    body = b'{"questions": ["q1", "q2"], "contexts": ["c1", "c2"]}'
    assert parse_request(body, ["questions", "contexts"], lim) == (["q1", "q2"], ["c1", "c2"])
    with pytest.raises(RequestError) as e:
        parse_request(
            b'{"questions": ["q"], "contexts": ["a", "b"]}', ["questions", "contexts"], lim
        )
    assert e.value.status == 422 and e.value.field == "contexts"
    with pytest.raises(RequestError) as e:
        parse_request(b'{"pairs": [["a"]]}', ["pairs"], lim)
    assert e.value.field == "pairs[0]"
    with pytest.raises(RequestError) as e:
        parse_request(b'{"pairs": {"a": "b"}}', ["pairs"], lim)
    assert e.value.field == "pairs"
    # the element at fault, not the pair: pairs[1][1] is the second text of the second pair
    with pytest.raises(RequestError) as e:
        parse_request(b'{"pairs": [["a", 3]]}', ["pairs"], lim)
    assert e.value.field == "pairs[0][1]" and "'pairs[0][1]' must be a string" in e.value.message
    with pytest.raises(RequestError) as e:
        parse_request(b'{"pairs": [["a", "b"], ["c", "  "]]}', ["pairs"], lim)
    assert e.value.status == 422 and e.value.field == "pairs[1][1]"
    with pytest.raises(RequestError) as e:
        parse_request(
            b'{"pairs": [["' + b"x" * 20 + b'", "b"]]}', ["pairs"], ServeLimits(max_text_chars=10)
        )
    assert e.value.status == 413 and e.value.field == "pairs[0][0]"


# -- the batcher (a fake model: deterministic) -------------------------------------------------


def _batcher_run(limits: ServeLimits, jobs: list[list[str]], fail_on: str | None = None):
    calls: list[list[str]] = []

    def predict(examples):
        calls.append([ex["text"] for ex in examples])
        if fail_on is not None and any(ex["text"] == fail_on for ex in examples):
            raise RuntimeError("model broke")
        return [{"label": ex["text"].upper()} for ex in examples]

    async def main():
        b = Batcher(predict, limits)
        b.start()
        try:
            out = await asyncio.gather(
                *(b.submit([{"text": t} for t in texts]) for texts in jobs),
                return_exceptions=True,
            )
            after = await b.submit([{"text": "still up"}])  # the worker survived
        finally:
            await b.stop()
        return out, after

    out, after = asyncio.run(main())
    assert after == [{"label": "STILL UP"}]
    return calls, out


def test_batcher_joins_requests_and_keeps_each_ones_order():
    jobs = [[f"r{i}-{k}" for k in range(3)] for i in range(5)]
    calls, out = _batcher_run(ServeLimits(max_batch=64, max_wait_ms=200), jobs)
    assert calls[0] == [t for texts in jobs for t in texts]  # one forward for all five requests
    for texts, rows in zip(jobs, out, strict=True):
        assert [r["label"] for r in rows] == [t.upper() for t in texts]


def test_batcher_respects_max_batch():
    jobs = [["a", "b"], ["c", "d"], ["e", "f"]]
    calls, out = _batcher_run(ServeLimits(max_batch=4, max_wait_ms=200), jobs)
    assert calls[:2] == [["a", "b", "c", "d"], ["e", "f"]]
    assert [[r["label"] for r in rows] for rows in out] == [["A", "B"], ["C", "D"], ["E", "F"]]


def test_batcher_wait_counts_from_arrival_so_requests_queued_during_a_forward_go_at_once():
    """--max-wait-ms is how long a request may wait for company: one that queued while the
    model ran the previous batch has waited already, so the next batch starts without a new
    wait (that idle gap cost ~8 % of batched throughput in benchmarks/serve_load.py)."""
    times: dict[str, float] = {}

    def predict(examples):
        name = examples[0]["text"]
        times[name + " start"] = time.monotonic()
        if name == "a":
            time.sleep(1.2)  # the model is busy; "b" arrives meanwhile
        times[name + " end"] = time.monotonic()
        return [{"label": ex["text"]} for ex in examples]

    async def main():
        b = Batcher(predict, ServeLimits(max_batch=64, max_wait_ms=800))
        b.start()
        try:
            first = asyncio.ensure_future(b.submit([{"text": "a"}]))
            while "a start" not in times:
                await asyncio.sleep(0.01)
            second = await b.submit([{"text": "b"}])
            return await first, second
        finally:
            await b.stop()

    first, second = asyncio.run(main())
    assert first == [{"label": "a"}] and second == [{"label": "b"}]
    gap = times["b start"] - times["a end"]
    assert gap < 0.4, f"the second batch waited {gap:.2f} s after the model was free"


def test_batcher_failure_fails_only_its_batch():
    calls, out = _batcher_run(ServeLimits(max_batch=1, max_wait_ms=0), [["ok"], ["boom"]], "boom")
    assert out[0] == [{"label": "OK"}]
    assert isinstance(out[1], RuntimeError)


def test_a_request_that_fails_its_batch_fails_alone():
    """Batched with others, a request whose input breaks the model gets the error; the other
    requests in that batch are answered (each is run alone after the batch failed)."""
    jobs = [["ok"], ["boom"], ["fine", "too"]]
    calls, out = _batcher_run(ServeLimits(max_batch=64, max_wait_ms=300), jobs, "boom")
    assert calls[0] == ["ok", "boom", "fine", "too"]  # one batch first
    assert out[0] == [{"label": "OK"}] and out[2] == [{"label": "FINE"}, {"label": "TOO"}]
    assert isinstance(out[1], RuntimeError)


# -- the app -----------------------------------------------------------------------------------


BAD_REQUESTS = [
    ("not json", b"{texts: [", 400, None),
    ("not an object", b'["a"]', 400, None),
    ("missing field", b'{"text": ["a"]}', 422, "texts"),
    ("not a list", b'{"texts": "a film"}', 422, "texts"),
    ("item not a string", b'{"texts": ["a", 3]}', 422, "texts[1]"),
    ("empty list", b'{"texts": []}', 422, "texts"),
    ("blank text", b'{"texts": ["ok", "  "]}', 422, "texts[1]"),
    ("lone surrogate", b'{"texts": ["ok", "\\ud800"]}', 422, "texts[1]"),
    ("too many texts", json.dumps({"texts": ["a"] * 5}).encode(), 413, "texts"),
    ("text too long", json.dumps({"texts": ["x" * 101]}).encode(), 413, "texts[0]"),
    ("body too large", json.dumps({"texts": ["y" * 90] * 4}).encode(), 413, None),
]


def test_app_health_info_predict_and_bad_requests(ft):
    limits = ServeLimits(max_texts=4, max_text_chars=100, max_body_bytes=300)
    with TestClient(build_app(ft, limits)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        info = client.get("/info").json()
        assert info["task"] == "classification" and info["labels"] == ["0", "1"]
        assert info["run"] == ft.run.path.name and info["fields"] == ["texts"]
        assert info["params"] == ft.run.info["params"] > 0
        assert info["limits"]["max_texts"] == 4

        r = client.post("/predict", json={"texts": TEXTS})
        assert r.status_code == 200
        want = ft.predict_scored(TEXTS)
        got = r.json()["predictions"]
        assert [g["label"] for g in got] == [w["label"] for w in want]
        for g, w in zip(got, want, strict=True):
            assert g["score"] == pytest.approx(w["score"], abs=1e-5)

        for name, body, status, field in BAD_REQUESTS:
            r = client.post("/predict", content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (name, r.text)
            assert r.json()["field"] == field, name
            assert r.json()["error"], name
        r = client.get("/predict")  # unknown methods and routes answer JSON like the rest
        assert r.status_code == 405 and "use POST" in r.json()["error"], r.text
        r = client.delete("/health")
        assert r.status_code == 405 and r.json()["field"] is None
        r = client.get("/nope")
        assert r.status_code == 404 and "no route /nope" in r.json()["error"]
        deep = b'{"texts": ' + b"[" * 1500 + b"]" * 1500 + b"}"  # under 3 kB
        big = TestClient(build_app(ft, ServeLimits()))
        r = big.post("/predict", content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"], r.text
        huge = b'{"texts": ["a"], "n": ' + b"9" * 5000 + b"}"  # past json's integer limit
        for route in ("/predict", "/embed"):
            r = big.post(route, content=huge, headers={"content-type": "application/json"})
            assert r.status_code == 400 and "a value JSON cannot read" in r.json()["error"]
        assert client.get("/health").json() == {"status": "ok"}  # survived every one
        assert client.post("/predict", json={"texts": ["nice"]}).status_code == 200


def test_app_embeds_texts_as_encoderlab_embed_does(ft, run_dir):
    """POST /embed: the run's encoder, mean-pooled and normalised, the same vectors as
    `el.embed(run, texts)`; its requests are checked as /predict's are."""
    import numpy as np

    import encoderlab as el

    with TestClient(build_app(ft, ServeLimits(max_texts=4))) as client:
        r = client.post("/embed", json={"texts": TEXTS})
        assert r.status_code == 200, r.text
        got = np.asarray(r.json()["embeddings"])
        assert got.shape == (4, 32)
        assert np.allclose(got, el.embed(run_dir, TEXTS, say=None), atol=1e-5)
        assert r.json()["truncated"] == []
        long = " ".join(["great"] * 100)  # past task.max_len (32): its end is not embedded
        r = client.post("/embed", json={"texts": ["ok", long, "fine"]})
        assert r.status_code == 200 and r.json()["truncated"] == [1], r.text
        r = client.post("/embed", json={"texts": ["ok", "\u200b"]})  # the model sees nothing
        assert r.status_code == 422 and "no visible character" in r.json()["error"]
        r = client.post("/embed", json={"texts": ["ok", 3]})
        assert r.status_code == 422 and r.json()["field"] == "texts[1]"
        r = client.post("/embed", json={"texts": TEXTS + ["one more"]})
        assert r.status_code == 413 and r.json()["field"] == "texts"
        # a field it does not read is named (it said "missing field 'texts'")
        r = client.post("/embed", json={"pairs": [["a", "b"]]})
        assert r.status_code == 422 and "'pairs' is not read here; send texts" in r.json()["error"]
        r = client.post("/embed", json={})
        assert r.status_code == 422 and "missing field 'texts'" in r.json()["error"]
        # predictions still answer beside it
        assert client.post("/predict", json={"texts": ["nice"]}).status_code == 200


def test_app_model_failure_is_a_500_and_the_server_stays_up(ft, monkeypatch):
    real = ft.predict_examples_scored

    def flaky(examples, batch_size=None):
        if any(ex["text"] == "explode" for ex in examples):
            raise RuntimeError("out of memory")
        return real(examples, batch_size)

    monkeypatch.setattr(ft, "predict_examples_scored", flaky)
    with TestClient(build_app(ft, ServeLimits(max_batch=1))) as client:
        r = client.post("/predict", json={"texts": ["explode"]})
        assert r.status_code == 500 and "out of memory" in r.json()["error"]
        assert client.post("/predict", json={"texts": ["nice"]}).status_code == 200


def test_weights_that_give_nan_scores_are_a_json_500_and_a_one_line_error(run_dir, capsys):
    """A NaN in the head's weights made /predict a plain-text 500 (JSON refuses NaN) and
    `predict` print p=nan with exit code 0."""
    import torch

    import encoderlab as el

    damaged = load_finetuned(run_dir)
    with torch.no_grad():
        damaged.model.head.out.bias.fill_(float("nan"))
    with TestClient(build_app(damaged, ServeLimits())) as client:
        r = client.post("/predict", json={"texts": ["fire"]})
        assert r.status_code == 500, r.text
        assert "scores are not finite numbers (NaN or inf)" in r.json()["error"]
        assert client.post("/embed", json={"texts": ["fire"]}).status_code == 200  # encoder ok
        assert client.get("/health").json() == {"status": "ok"}
    with pytest.raises(UserError, match="weights are damaged"):
        el.Model(damaged).predict(["fire"])


def test_serve_command_refuses_bad_input(tmp_path, run_dir):
    assert run_cli("serve", tmp_path / "nope") == 2
    assert run_cli("serve", run_dir, "--max-batch", "0") == 2
    # a request of --max-texts (256) texts could never be queued: a 503 forever, refused
    assert run_cli("serve", run_dir, "--max-queue", "10") == 2
    # a body limit no request fits: every request a 413, refused at start-up
    with pytest.raises(UserError, match="--max-body-bytes 10: no request fits"):
        ServeLimits(max_body_bytes=10).check()
    assert run_cli("serve", run_dir, "--port", "0") == 2  # was announced as port 0
    for wait in ("inf", "nan", "-1"):  # inf held every request forever
        assert run_cli("serve", run_dir, "--max-wait-ms", wait) == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run_cli("serve", run_dir, "--port", port) == 2  # in use: one line, not a crash


# -- one real server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_serving(app):
    """The app on a real uvicorn server in a thread: its base URL, then a clean shutdown."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_real_uvicorn_batches_concurrent_clients_in_order(ft):
    with uvicorn_serving(build_app(ft, ServeLimits(max_batch=64, max_wait_ms=20))) as base:
        rng = random.Random(1)
        requests = [
            [" ".join(rng.choice(GOOD + BAD + FILL) for _ in range(5)) for _ in range(1 + i % 3)]
            for i in range(24)
        ]
        expected = [[r["label"] for r in ft.predict_scored(texts)] for texts in requests]

        def call(texts):
            with httpx.Client(timeout=30) as c:
                r = c.post(f"{base}/predict", json={"texts": texts})
                r.raise_for_status()
                return [p["label"] for p in r.json()["predictions"]]

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(call, requests))
        assert got == expected
        info = httpx.get(f"{base}/info", timeout=10).json()
        assert 1 <= info["batches"] < len(requests)  # concurrent requests shared forward passes


def test_a_request_whose_client_left_is_not_run(ft, monkeypatch):
    """A client that times out while its request waits for the model: the request is dropped
    from the queue, not run for nobody (under load, every timed-out retry cost a forward)."""
    seen: list[list[str]] = []
    real = ft.predict_examples_scored

    def slow(examples, batch_size=None):
        seen.append([ex["text"] for ex in examples])
        if examples[0]["text"] == "first":
            time.sleep(1.5)  # the model is busy while the second client gives up
        return real(examples, batch_size=batch_size)

    monkeypatch.setattr(ft, "predict_examples_scored", slow)
    with uvicorn_serving(build_app(ft, ServeLimits(max_batch=64, max_wait_ms=0))) as base:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(
                httpx.post, f"{base}/predict", json={"texts": ["first"]}, timeout=30
            )
            while not seen:
                time.sleep(0.01)
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{base}/predict", json={"texts": ["left early"]}, timeout=0.3)
            assert first.result().status_code == 200
        after = httpx.post(f"{base}/predict", json={"texts": ["after"]}, timeout=30)
        assert after.status_code == 200 and len(after.json()["predictions"]) == 1
    assert seen == [["first"], ["after"]]


def test_pair_model_served_from_pairs(tmp_path):
    import encoderlab as el

    rng = random.Random(2)
    rows = []
    for _ in range(160):
        a = rng.choice(GOOD + BAD)
        same = rng.random() < 0.5
        b = a if same else rng.choice([w for w in GOOD + BAD if w != a])
        rows.append(
            {"s1": f"the {a} film", "s2": f"a {b} plot", "label": "same" if same else "diff"}
        )
    cfg = {
        "name": "pair",
        "runs_dir": str(tmp_path / "runs"),
        "task": {"type": "pair", "text_column": "s1", "text_pair_column": "s2", "max_len": 32},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
        "train": {"batch_size": 16, "lr": 3e-3, "epochs": 1, "warmup_steps": 0},
    }
    model = el.load(el.finetune(cfg, train=rows, say=lambda m: None))
    pairs = [["the great film", "a great plot"], ["the awful film", "a nice plot"]]
    want = model.predict([a for a, _ in pairs], [b for _, b in pairs])
    with TestClient(build_app(model.finetuned)) as client:
        assert client.get("/info").json()["fields"] == ["pairs"]
        got = client.post("/predict", json={"pairs": pairs}).json()["predictions"]
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert set(got[0]["scores"]) == {"diff", "same"}
        r = client.post("/predict", json={"texts": ["a"]})  # what it takes is named
        assert r.status_code == 422 and "'texts' is not read here; send pairs" in r.json()["error"]
        r = client.post("/predict", json={})
        assert r.status_code == 422 and r.json()["field"] == "pairs"


def test_a_pair_regression_model_takes_pairs_and_refuses_one_text(tmp_path):
    """A regression run trained with task.text_pair_column (KLUE-STS's layout) is served from
    pairs, and one text alone is refused (it used to be scored without its second sentence)."""
    import encoderlab as el

    rng = random.Random(3)
    rows = []
    for _ in range(120):
        a, b = rng.choice(GOOD + BAD), rng.choice(GOOD + BAD)
        rows.append({"s1": f"the {a} film", "s2": f"a {b} plot", "score": float(a == b)})
    cfg = {
        "name": "sts",
        "runs_dir": str(tmp_path / "runs"),
        "task": {"type": "regression", "text_column": "s1", "text_pair_column": "s2",
                 "label_column": "score", "max_len": 32},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
        "train": {"batch_size": 16, "epochs": 1, "warmup_steps": 0},
    }  # fmt: skip
    model = el.load(el.finetune(cfg, train=rows, say=lambda m: None))
    with TestClient(build_app(model.finetuned)) as client:
        assert client.get("/info").json()["fields"] == ["pairs"]
        r = client.post("/predict", json={"pairs": [["the great film", "a great plot"]]})
        assert r.status_code == 200 and isinstance(r.json()["predictions"][0]["label"], float)
        assert client.post("/predict", json={"texts": ["a"]}).status_code == 422
    # the API's own words (pairs=), not the CLI's --text-pair
    with pytest.raises(UserError, match=r"^pairs: a sentence-pair model needs .*pairs="):
        model.predict(["the great film"])


def test_batcher_sheds_load_past_max_queue():
    """Past max_queue waiting examples a request is refused at once (Busy), never queued; the
    requests already queued are answered and the count of waiting examples returns to 0."""
    from encoderlab.serve import Busy

    async def main():
        def predict(examples):
            return [{"label": ex["text"]} for ex in examples]

        b = Batcher(predict, ServeLimits(max_batch=2, max_wait_ms=0, max_queue=3))
        first = asyncio.ensure_future(b.submit([{"text": "a"}, {"text": "b"}]))
        await asyncio.sleep(0)  # queued, not yet served: the worker has not started
        with pytest.raises(Busy):
            await b.submit([{"text": "c"}, {"text": "d"}])  # 2 waiting + 2 > 3
        b.start()
        try:
            rows = await first
            more = await b.submit([{"text": "e"}, {"text": "f"}, {"text": "g"}])  # 3 <= 3
        finally:
            await b.stop()
        return rows, more, b.waiting

    rows, more, waiting = asyncio.run(main())
    assert [r["label"] for r in rows] == ["a", "b"]
    assert [r["label"] for r in more] == ["e", "f", "g"] and waiting == 0


def test_the_label_and_vector_queues_share_one_bound():
    """/predict and /embed each had their own max_queue, so the server held twice what
    --max-queue allows before it shed load."""
    from encoderlab.serve import Busy

    async def main():
        limits = ServeLimits(max_batch=2, max_wait_ms=0, max_queue=3, max_texts=3)
        labels = Batcher(lambda xs: [{"label": x} for x in xs], limits)
        vectors = Batcher(lambda xs: [{"embedding": x} for x in xs], limits, labels.executor,
                          shares_queue_with=labels)  # fmt: skip
        first = asyncio.ensure_future(labels.submit(["a", "b"]))
        await asyncio.sleep(0)  # queued, not yet served: no worker has started
        with pytest.raises(Busy):
            await vectors.submit(["c", "d"])  # 2 waiting for labels + 2 > 3
        labels.start()
        vectors.start()
        try:
            await first
            got = await vectors.submit(["e", "f", "g"])
        finally:
            await labels.stop()
            await vectors.stop()
        return got, labels.waiting, vectors.waiting

    got, *waiting = asyncio.run(main())
    assert [r["embedding"] for r in got] == ["e", "f", "g"] and waiting == [0, 0]


def test_app_answers_503_when_the_queue_is_full(ft, monkeypatch):
    from encoderlab.serve import Busy

    async def busy(self, examples):
        raise Busy("9 examples are waiting (at most 8)")

    monkeypatch.setattr(Batcher, "submit", busy)
    with TestClient(build_app(ft, ServeLimits(max_queue=8, max_texts=8))) as client:
        r = client.post("/predict", json={"texts": ["a fine film"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "busy" in r.json()["error"]
        assert client.get("/health").json() == {"status": "ok"}


def test_served_rows_say_what_was_cut_and_where_entities_are(tmp_path):
    """Words past task.max_len (tagging) and question tokens past max_query_len (qa) were cut
    silently: each served row says how many, and an entity is a slice of the text sent."""
    import encoderlab as el

    rng = random.Random(0)
    sentences = []
    for _ in range(60):
        words, tags = [rng.choice(FILL) for _ in range(6)], ["O"] * 6
        i = rng.randint(0, 5)
        words[i], tags[i] = rng.choice(["john", "mary", "anna"]), "B-PER"
        sentences.append({"tokens": words, "tags": tags})
    cfg = {
        "runs_dir": str(tmp_path / "runs"),
        "task": {"type": "tagging", "max_len": 12},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
        "train": {"batch_size": 16, "lr": 3e-3, "epochs": 6, "warmup_steps": 0},
    }
    tagger = el.load(el.finetune(cfg, train=sentences, say=lambda m: None))
    text, long = "the\tmovie  john was", " ".join(["the movie john was"] * 10)
    with TestClient(build_app(tagger.finetuned)) as client:
        whole, cut = client.post("/predict", json={"texts": [text, long]}).json()["predictions"]
    assert whole["truncated_words"] == 0 and cut["truncated_words"] > 0
    assert cut["truncated_words"] == sum(p == 0.0 for p in cut["tag_scores"])
    (john,) = [e for e in whole["entities"] if e["type"] == "PER"]
    assert (john["char_start"], john["char_end"], john["text"]) == (11, 15, "john")

    context = "the capital of norway is oslo ."
    rows = [{"id": f"q{i}", "title": f"t{i % 3}", "context": context, "question": "capital ?",
             "answers": [{"text": "oslo", "answer_start": 25}]} for i in range(6)]  # fmt: skip
    cfg["task"] = {"type": "qa", "max_len": 32, "max_query_len": 8, "doc_stride": 8}
    cfg["train"] |= {"epochs": None, "max_steps": 2}
    reader = el.load(el.finetune(cfg, train=rows, say=lambda m: None))
    body = {
        "questions": ["capital ?", " ".join(["what is the capital"] * 5)],
        "contexts": [context] * 2,
    }
    with TestClient(build_app(reader.finetuned)) as client:
        short_q, long_q = client.post("/predict", json=body).json()["predictions"]
    assert short_q["truncated_question_tokens"] == 0 and long_q["truncated_question_tokens"] > 0


def test_a_pair_sent_to_a_one_text_model_is_refused_not_ignored(ft):
    """{"texts": [...], "pairs": [...]} got the one-text prediction of the first text, where
    `predict --text-pair` and the API refuse a pair for such a model."""
    with TestClient(build_app(ft, ServeLimits())) as client:
        r = client.post("/predict", json={"texts": ["fire"], "pairs": [["fire", "happy"]]})
        assert r.status_code == 422 and r.json()["field"] == "pairs"
        assert "'pairs' is not read here; send texts" in r.json()["error"]


def test_a_client_gone_mid_body_is_no_traceback():
    """ClientDisconnect went uncaught: uvicorn logged 43 lines of traceback per client that
    left while sending, so any client could flood the log."""
    from starlette.requests import ClientDisconnect

    from encoderlab.serve import RequestError, read_body

    class Gone:
        headers: dict = {}

        async def stream(self):
            yield b'{"texts": ["a'
            raise ClientDisconnect()

    with pytest.raises(RequestError, match="the client left before its body ended"):
        asyncio.run(read_body(Gone(), 1000))


def test_a_body_that_stops_arriving_is_a_408_and_a_null_field_is_not_sent(ft, monkeypatch):
    """A client that stopped sending held its connection and memory for good; a generic
    client sending "pairs": null to a one-text model was refused as if it sent pairs."""
    from encoderlab import serve
    from encoderlab.serve import RequestError, read_body

    class Stalled:
        headers: dict = {}

        async def stream(self):
            yield b'{"texts": ["a'
            await asyncio.sleep(5)

    monkeypatch.setattr(serve, "BODY_SECONDS", 0.2)
    with pytest.raises(RequestError, match="the body did not arrive within 0.2 s"):
        asyncio.run(read_body(Stalled(), 1000))
    with TestClient(build_app(ft, ServeLimits())) as client:
        r = client.post("/predict", json={"texts": ["a fine film"], "pairs": None})
        assert r.status_code == 200, r.json()


def test_a_served_text_cut_at_max_len_says_so_on_its_row(ft):
    """Tagging and QA rows said what encoding cut; a classification row did not (the CLI
    only warned), so a client could not tell which answers saw half the text."""
    with TestClient(build_app(ft, ServeLimits())) as client:
        long_text = " ".join(["a great lovely film"] * 40)
        r = client.post("/predict", json={"texts": [long_text, "a great film"]})
        rows = r.json()["predictions"]
        assert rows[0].get("truncated") is True and "truncated" not in rows[1], rows
