"""`encoderlab serve RUN`: a fine-tuned run answering predictions over HTTP.

The run is loaded once (`inference.load_finetuned`); requests from many clients are batched
together (dynamic batching) because one forward pass over 32 texts costs little more than
one over a single text on a CPU:

    POST /predict  {"texts": [...]}                       classification, tagging
                   {"pairs": [[a, b], ...]}               pair (NLI, paraphrase)
                   {"questions": [...], "contexts": [...]} qa
        -> {"predictions": [{"label", "score", "scores", ...}, ...]} in the order given
    POST /embed    {"texts": [...]} -> {"embeddings": [[...], ...]}: the run's encoder,
                   mean-pooled and L2-normalised (`encoderlab embed`)
    GET /health    {"status": "ok"}
    GET /info      task, labels, run, params, the request fields, the limits

Batching: each request's examples go on one asyncio queue with a future; one worker task
takes the first waiting request, adds more until it holds `max_batch` examples or
`max_wait_ms` have passed, runs the model in a worker thread (`run_in_executor`, so the event
loop keeps accepting requests while the model runs) and resolves each request's future with
its own slice of the results. One thread runs the model, so batches never compete for cores.

Bad requests get a 4xx JSON error `{"error": ..., "field": ...}` naming the field; a failure
inside the model is a 500 for the requests of that batch only; past `max_queue` waiting
examples a request gets a 503 with Retry-After. The server binds to loopback
unless told otherwise. Built on Starlette + uvicorn (the `serve` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from encoderlab.embedding import Embedder
from encoderlab.errors import UserError
from encoderlab.inference import INVISIBLE, Finetuned, load_finetuned, visible
from encoderlab.runs import run_model_config
from encoderlab.tasks.base import Example

try:  # the serve extra; `serve` says how to install it when it is missing
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError:  # pragma: no cover - exercised only without the extra
    Starlette = None  # type: ignore[assignment,misc]

INSTALL_HINT = "encoderlab serve needs the serve extra: pip install 'encoderlab[serve]'"


SMALLEST_BODY = len('{"texts": ["a"]}')  # one text of one character


@dataclass
class ServeLimits:
    """What one request may hold and how requests are batched (all configurable flags)."""

    max_batch: int = 64  # examples per forward pass
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_texts: int = 256  # examples per request
    max_text_chars: int = 10_000  # characters per text (question, context)
    max_body_bytes: int = 1_000_000  # bytes per request body
    max_queue: int = 4096  # examples waiting for the model; beyond it a request gets a 503

    def check(self) -> None:
        for name in ("max_batch", "max_texts", "max_text_chars", "max_body_bytes", "max_queue"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.max_wait_ms <= 60_000:  # inf would hold every request forever
            raise UserError("--max-wait-ms must be between 0 and 60000 (a minute)")
        if self.max_body_bytes < SMALLEST_BODY:  # every request a 413
            raise UserError(
                f"--max-body-bytes {self.max_body_bytes}: no request fits (the smallest, "
                f'{{"texts": ["a"]}}, has {SMALLEST_BODY} bytes); give at least a few thousand'
            )
        if self.max_queue < self.max_texts:  # a full request could never be queued: a 503
            raise UserError(  # "retry shortly" that no retry would ever get past
                f"--max-queue {self.max_queue} is below --max-texts {self.max_texts}: a request "
                "of --max-texts texts could never wait its turn; raise --max-queue or lower "
                "--max-texts"
            )


class Busy(Exception):
    """The queue holds `max_queue` examples already: the client should retry later."""


class RequestError(Exception):
    """A bad request: its HTTP status, the field at fault and a one-line message."""

    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


# ---------------------------------------------------------------------------------------------
# Requests


def request_fields(ft: Finetuned) -> list[str]:
    """The JSON fields /predict takes for this run's task (from what the task declares)."""
    if ft.task.hf_head == "span":  # extractive QA: a question and its context
        return ["questions", "contexts"]
    if ft.pairs:  # two sentences
        return ["pairs"]
    return ["texts"]


def _items(body: dict[str, Any], name: str, what: str, limits: ServeLimits) -> list[Any]:
    """body[name]: a non-empty list of at most max_texts items (`what` each is, for messages)."""
    if name not in body:
        raise RequestError(422, name, f"missing field '{name}' (a list of {what})")
    value = body[name]
    if not isinstance(value, list):
        raise RequestError(422, name, f"'{name}' must be a list of {what}")
    if not value:
        raise RequestError(422, name, f"'{name}' is empty; give at least one")
    if len(value) > limits.max_texts:
        raise RequestError(
            413, name, f"'{name}' has {len(value)} items; at most {limits.max_texts} per request"
        )
    return value


def _text(text: Any, where: str, limits: ServeLimits) -> str:
    """One text of a request, or a RequestError naming its field (`texts[2]`, `pairs[1][1]`)."""
    if not isinstance(text, str):
        raise RequestError(422, where, f"'{where}' must be a string")
    if not text.strip():
        raise RequestError(422, where, f"'{where}' is empty")
    if not visible(text):
        raise RequestError(422, where, f"'{where}' {INVISIBLE}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows "\ud800"; the tokenizer does not
        raise RequestError(
            422, where, f"'{where}' is not valid Unicode (a lone surrogate such as \\ud800)"
        ) from None
    if len(text) > limits.max_text_chars:
        raise RequestError(
            413, where, f"'{where}' has {len(text):,} characters; at most {limits.max_text_chars:,}"
        )
    return text


def _strings(body: dict[str, Any], name: str, limits: ServeLimits) -> list[str]:
    value = _items(body, name, "strings", limits)
    return [_text(text, f"{name}[{i}]", limits) for i, text in enumerate(value)]


def _pairs(body: dict[str, Any], limits: ServeLimits) -> tuple[list[str], list[str]]:
    value = _items(body, "pairs", "[text, text_pair] lists", limits)
    for i, p in enumerate(value):
        if not isinstance(p, list) or len(p) != 2:
            raise RequestError(422, f"pairs[{i}]", f"'pairs[{i}]' must be a [text, text_pair] list")
    checked = [
        [_text(t, f"pairs[{i}][{k}]", limits) for k, t in enumerate(p)] for i, p in enumerate(value)
    ]
    return [a for a, _ in checked], [b for _, b in checked]


# every request field some model reads: one a model does not read is refused, not ignored
REQUEST_FIELDS = ("texts", "pairs", "text_pair", "questions", "contexts")
BODY_SECONDS = 30.0  # a body still arriving after this is dropped (408): a stalled client
MAX_CONNECTIONS = 256  # open connections and requests at once (uvicorn's limit_concurrency)


def parse_request(raw: bytes, fields: list[str], limits: ServeLimits) -> tuple[list, list]:
    """(texts, second texts or None each) from a /predict body, or a RequestError."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError(400, None, "the body is not JSON") from None
    except RecursionError:  # arrays nested ~1,000 deep: Python's decoder gives up
        raise RequestError(400, None, "the body's JSON is nested too deeply") from None
    except ValueError as e:  # past json's own limits: an integer of over 4,300 digits
        why = str(e).split(":")[0]
        raise RequestError(400, None, f"the body holds a value JSON cannot read ({why})") from None
    if not isinstance(body, dict):
        raise RequestError(400, None, f"the body must be a JSON object with {fields}")
    # null is "not sent" (a generic client sends every field); a value is refused
    other = next((k for k in REQUEST_FIELDS if body.get(k) is not None and k not in fields), None)
    if other is not None:  # a pair sent to a one-text model was answered for its first text
        raise RequestError(
            422,
            other,
            f"'{other}' is not read here; send {' + '.join(fields)} (this model and "
            "endpoint take those)",
        )
    if fields == ["pairs"]:
        return _pairs(body, limits)
    texts = _strings(body, fields[0], limits)
    if len(fields) == 1:
        return texts, [None] * len(texts)
    seconds = _strings(body, fields[1], limits)
    if len(seconds) != len(texts):
        raise RequestError(
            422, fields[1], f"{len(texts)} {fields[0]} but {len(seconds)} {fields[1]}; one each"
        )
    return texts, seconds


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes: never held whole in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, None, f"the body has {int(declared):,} bytes; at most {limit:,}")
    chunks, size = [], 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BODY_SECONDS
    stream = request.stream().__aiter__()
    try:
        while True:  # asyncio.wait_for per chunk: asyncio.timeout is Python 3.11's
            left = max(0.0, deadline - loop.time())
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), left)
            except StopAsyncIteration:
                break
            size += len(chunk)
            if size > limit:
                raise RequestError(413, None, f"the body is over {limit:,} bytes")
            chunks.append(chunk)
    except asyncio.TimeoutError:  # a client that stopped sending holds memory and a connection
        raise RequestError(
            408, None, f"the body did not arrive within {BODY_SECONDS:g} s"
        ) from None
    except ClientDisconnect:  # gone mid-body: nothing to answer (was a logged traceback)
        raise RequestError(400, None, "the client left before its body ended") from None
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# Dynamic batching


@dataclass
class _Job:
    examples: list[Example]
    future: asyncio.Future = field(repr=False)
    arrived: float = 0.0  # the event loop's clock when the request was queued


class Batcher:
    """One queue, one worker: requests' examples are run together, up to `max_batch`
    examples or `max_wait_ms` after the first one arrived, whichever comes first.

    The queue is bounded by `max_queue` waiting examples (with those of the batcher it shares
    the model with): past that, `submit` raises `Busy` at once (a 503), so an overloaded server sheds load instead of holding every request in
    memory until clients time out."""

    def __init__(
        self,
        predict: Callable[[list[Any]], list[dict[str, Any]]],
        limits: ServeLimits,
        executor: ThreadPoolExecutor | None = None,
        shares_queue_with: Batcher | None = None,
    ) -> None:
        self.predict = predict
        self.limits = limits
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        # one thread runs the model, also for a second batcher that shares this executor
        self.executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="encoderlab-model"
        )
        self.batches = 0  # how many forward calls ran (tests and /info read it)
        self._worker: asyncio.Task | None = None
        self._getter: asyncio.Future | None = None
        self._carry: _Job | None = None
        # examples submitted and not yet answered, counted with those of the batcher this one
        # shares the model with (labels and vectors): max_queue bounds them together
        self._waiting = shares_queue_with._waiting if shares_queue_with else [0]

    @property
    def waiting(self) -> int:
        return self._waiting[0]

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in (self._worker, self._getter):
            if task is not None:
                task.cancel()
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, examples: list[Example]) -> list[dict[str, Any]]:
        if self.waiting + len(examples) > self.limits.max_queue:
            raise Busy(f"{self.waiting} examples are waiting (at most {self.limits.max_queue})")
        loop = asyncio.get_running_loop()
        job = _Job(examples, loop.create_future(), loop.time())
        self._waiting[0] += len(examples)
        try:
            await self.queue.put(job)
            return await job.future
        finally:
            self._waiting[0] -= len(examples)

    async def _next(self, timeout: float | None) -> _Job | None:
        """The next queued job, or None after `timeout` seconds. The pending get is kept
        across calls, so a job arriving as a wait times out is never lost."""
        if self._getter is None:
            self._getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({self._getter}, timeout=timeout)
        if not done:
            return None
        job, self._getter = self._getter.result(), None
        return job

    def _queued(self) -> _Job | None:
        """A job that is already waiting (taken without yielding to the event loop), or None."""
        if self._getter is not None and self._getter.done():
            job, self._getter = self._getter.result(), None
            return job
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def _collect(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        first = self._carry or await self._next(None)
        self._carry = None
        assert first is not None
        jobs, n = [first], len(first.examples)
        # counted from the first request's arrival: requests that queued while the model ran
        # the previous batch have waited already and go at once with whatever else is queued
        deadline = first.arrived + self.limits.max_wait_ms / 1000.0
        while n < self.limits.max_batch:
            job = self._queued() or await self._next(max(0.0, deadline - loop.time()))
            if job is None:
                break
            if n + len(job.examples) > self.limits.max_batch:
                self._carry = job  # starts the next batch
                break
            jobs.append(job)
            n += len(job.examples)
        return [j for j in jobs if not j.future.done()]  # a client that left is skipped

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            if jobs:
                await self._answer(jobs)

    async def _answer(self, jobs: list[_Job]) -> None:
        """One forward pass for these requests. If it fails with several in it, each is run
        alone, so one request's input fails that request only, not the others batched with it."""
        loop = asyncio.get_running_loop()
        examples = [ex for j in jobs for ex in j.examples]
        try:
            rows = await loop.run_in_executor(self.executor, self.predict, examples)
        except Exception as e:  # the server stays up; the failing request gets a 500
            if len(jobs) > 1:
                for j in jobs:
                    await self._answer([j])
                return
            traceback.print_exc(file=sys.stderr)
            if not jobs[0].future.done():
                jobs[0].future.set_exception(e)
            return
        self.batches += 1
        k = 0
        for j in jobs:
            part, k = rows[k : k + len(j.examples)], k + len(j.examples)
            if not j.future.done():
                j.future.set_result(part)


# ---------------------------------------------------------------------------------------------
# The application


async def _http_error(request: Any, exc: Any) -> JSONResponse:
    """An unknown route (404) or method (405), answered as JSON like every other error."""
    allowed = (getattr(exc, "headers", None) or {}).get("Allow")
    message = {
        404: f"no route {request.url.path}; the routes are /predict, /embed, /health, /info"
    }.get(exc.status_code, str(exc.detail))
    if exc.status_code == 405 and allowed:
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    return JSONResponse(
        {"error": message, "field": None}, status_code=exc.status_code, headers=exc.headers
    )


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse({"error": e.message, "field": e.field}, status_code=e.status)


def run_info(ft: Finetuned, limits: ServeLimits) -> dict[str, Any]:
    params = ft.run.info.get("params") or sum(p.numel() for p in ft.model.parameters())
    return {
        "run": ft.run.path.name,
        "path": str(ft.run.path),
        "task": ft.task.type,
        "labels": ft.labels,
        "params": int(params),
        "fields": request_fields(ft),
        "routes": ["POST /predict", "POST /embed", "GET /health", "GET /info"],
        "device": str(ft.device),
        "limits": asdict(limits),
    }


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body is read: what the server receives next is
    the disconnect, or nothing until the response is sent)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(work: Any, request: Request | None) -> Any:
    """`work`'s result, or GONE when the client disconnects first: its request is then
    cancelled, so a batch that has not run yet leaves its examples out (a client that timed
    out no longer costs the model a forward pass)."""
    if request is None:
        return await work
    job, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job.done():
        return job.result()
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await job
    return GONE


GONE = object()  # what _unless_gone gives for a client that left


async def _answered(
    batcher: Batcher, items: list[Any], what: str, request: Request | None = None
) -> Any:
    """The batcher's rows for `items`, or the JSON error response: 503 when the queue is
    full (with Retry-After), 500 when the model failed (the worker logged it), nothing to
    read (an empty 499, nginx's "client closed request") when the client left first."""
    try:
        rows = await _unless_gone(batcher.submit(items), request)
        return JSONResponse(None, status_code=499) if rows is GONE else rows
    except Busy as e:
        return JSONResponse(
            {"error": f"the server is busy: {e}; retry shortly", "field": None},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    except Exception as e:
        return JSONResponse(
            {"error": f"{what} failed: {type(e).__name__}: {e}", "field": None}, status_code=500
        )


def _embedder(ft: Finetuned) -> Embedder:
    """The run's encoder for /embed: mean-pooled, L2-normalised vectors (`encoderlab embed`)."""
    model_cfg = run_model_config(ft.run)
    return Embedder(  # at most the length the run was fine-tuned on
        ft.model.backbone,
        ft.tokenizer,
        min(model_cfg.max_len, ft.cfg.task.max_len),
        model_cfg.d_model,
        ft.device,
        str(ft.run.path),
    )


def build_app(ft: Finetuned, limits: ServeLimits | None = None) -> Starlette:
    """The ASGI app for a loaded run (tests drive it with Starlette's TestClient)."""
    if Starlette is None:
        raise UserError(INSTALL_HINT)
    limits = limits or ServeLimits()
    limits.check()
    fields = request_fields(ft)
    info = run_info(ft, limits)

    def predict(examples: list[Example]) -> list[dict[str, Any]]:
        return ft.predict_examples_scored(examples, batch_size=limits.max_batch)

    batcher = Batcher(predict, limits)
    embedder = _embedder(ft)

    def embed(texts: list[str]) -> list[dict[str, Any]]:
        vectors, cut = embedder.embed(texts, batch_size=limits.max_batch)
        rows = [{"embedding": [round(float(x), 6) for x in v], "cut": False} for v in vectors]
        for i in cut:
            rows[i]["cut"] = True
        return rows

    # its own queue (vectors and labels never mix in a batch), the same model thread
    embed_batcher = Batcher(embed, limits, batcher.executor, shares_queue_with=batcher)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def get_info(request: Request) -> JSONResponse:
        return JSONResponse({**info, "batches": batcher.batches})

    async def post_predict(request: Request) -> JSONResponse:
        try:
            texts, seconds = parse_request(
                await read_body(request, limits.max_body_bytes), fields, limits
            )
            try:
                examples = ft.examples_from_pairs(texts, seconds)
            except UserError as e:
                raise RequestError(422, fields[-1], str(e)) from None
        except RequestError as e:
            return _error(e)
        rows = await _answered(batcher, examples, "prediction", request)
        return rows if isinstance(rows, JSONResponse) else JSONResponse({"predictions": rows})

    async def post_embed(request: Request) -> JSONResponse:
        try:
            raw = await read_body(request, limits.max_body_bytes)
            texts, _ = parse_request(raw, ["texts"], limits)
        except RequestError as e:
            return _error(e)
        rows = await _answered(embed_batcher, texts, "embedding", request)
        if isinstance(rows, JSONResponse):
            return rows
        return JSONResponse(
            {
                "embeddings": [r["embedding"] for r in rows],
                # the texts longer than the encoder's max_len: their vectors miss the end
                "truncated": [i for i, r in enumerate(rows) if r["cut"]],
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        embed_batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            await embed_batcher.stop()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/info", get_info, methods=["GET"]),
            Route("/predict", post_predict, methods=["POST"]),
            Route("/embed", post_embed, methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},  # 404, 405: JSON like the rest
    )
    app.state.batcher = batcher
    return app


def check_address(host: str, port: int) -> None:
    """Refuse a busy port or an unknown host before the model is loaded (uvicorn would log
    the error and exit 1, which reads as a bug)."""
    if not 1 <= port <= 65535:  # 0 (any free port) would be announced as port 0
        raise UserError(f"--port {port} is not a TCP port; give one from 1 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except OSError as e:
        raise UserError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pass another --port or --host"
        ) from None


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Load the run once and answer predictions until interrupted (Ctrl-C)."""
    if Starlette is None:
        raise UserError(INSTALL_HINT)
    try:
        import uvicorn
    except ImportError:  # starlette came with another package, uvicorn did not
        raise UserError(INSTALL_HINT) from None

    limits = limits or ServeLimits()
    limits.check()
    check_address(host, port)
    ft = load_finetuned(run_dir)
    app = build_app(ft, limits)
    fields = " + ".join(request_fields(ft))
    say(f"serving {ft.run.path.name} ({ft.task.type}, {len(ft.labels)} labels) on {ft.device}")
    say(
        f"POST http://{host}:{port}/predict with {{{fields}}}, /embed with {{texts}}; "
        "GET /health, /info"
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        say(f"warning: listening on {host}: reachable from other machines, with no authentication")
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            # connections past this get a 503 at once (each may hold a body in memory), and
            # Ctrl-C or SIGTERM stops the server within seconds, not when the last client goes
            limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=5,
        )
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after a clean shutdown
        pass
    say("stopped")
