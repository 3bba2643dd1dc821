"""``attnmt serve``: translation over HTTP, batched under load, and a web page to explore attention.

    POST /translate     {"sentences": ["..."], "model": NAME, "beam": 5, "n_best": 1, "alpha": 1.0,
                         "attention": false, "prefix": ["..."], "top_k": 0}   (decoding defaults:
                         DecodeOptions; prefix: optional, one per sentence, the text its translation
                         begins with; top_k: each token's log p and the k likeliest tokens in its place)
    POST /score         {"sources": ["..."], "targets": ["..."], "model": NAME, "attention": false,
                         "top_k": 0}: how probable the model finds each target, token by token
    POST /complete      {"source": "...", "typed": "...", "model": NAME, "beam": 1, "alpha": 1.0,
                         "top_k": 0, "word": null, "attention": false}: the typed translation, kept exactly, and the
                         model's proposal for the rest (attnmt.completion); each source is encoded once
                         and its decoded prefixes kept, so a keystroke costs little
    GET  /models        the loaded models and what they are
    GET  /health        {"status": "ok"}
    GET  /              the web page (attnmt/resources/web: no build step, nothing from the internet)
    GET  /openapi.json  this API, described

Requests wait in one queue per model.  A worker takes the oldest, then whatever else arrives within
``batch_window`` seconds with the same decoding options, up to ``max_batch`` sentences, and translates
them in one call on a worker thread: the event loop never waits for the model.  A scoring request waits
in the same queue, as one more job: it neither jumps nor stalls the translations.  Errors are JSON,
``{"error": {"status": 422, "message": "..."}}``, with the status a client expects.
"""

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NotRequired

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict from Python 3.12 only

from attnmt.completion import Completer, Completion
from attnmt.engine import DecodeOptions, Engine, Score, Translation
from attnmt.errors import AttnmtError
from attnmt.tokenization import Tokenizer
from attnmt.vocab import EOS, UNK

WEB = Path(__file__).parent / "resources" / "web"
DEFAULTS = DecodeOptions()


@dataclass
class Limits:
    max_sentences: int = 64  # per request
    max_chars: int = 1000  # per sentence
    max_body_bytes: int = 1 << 20
    max_beam: int = 16
    max_top_k: int = 20  # likeliest tokens per position a request may ask for
    timeout: float = 60.0  # seconds a request may wait for its translations
    max_batch: int = 64  # sentences per model call; 1 turns batching off
    max_typing: int = 16  # sources whose decoded prefixes /complete keeps (least recently used out)
    typing_ttl: float = 600.0  # seconds a source being typed is kept unused
    batch_window: float = 0.005  # seconds the worker waits for more requests to join a batch


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sentences: list[StrictStr] = Field(description="English sentences, one translation each")
    model: StrictStr | None = Field(None, description="a loaded model's name (default: the first)")
    beam: StrictInt = Field(DEFAULTS.beam_size, description="beam size; 1 is greedy search")
    n_best: StrictInt = Field(DEFAULTS.n_best, description="alternatives per sentence, at most `beam`")
    alpha: StrictFloat | StrictInt = Field(
        DEFAULTS.alpha, description="GNMT length penalty; 0 ranks by log-probability"
    )
    attention: StrictBool = Field(False, description="also return tokens and attention weights")
    prefix: list[StrictStr] | None = Field(
        None, description='one per sentence: the text its translation begins with ("" for none)'
    )
    top_k: StrictInt = Field(
        0, description="also each token's log p and the k likeliest tokens in its place (0: neither)"
    )


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: list[StrictStr] = Field(description="English sentences")
    targets: list[StrictStr] = Field(description="one translation per source, to score")
    model: StrictStr | None = Field(None, description="a loaded model's name (default: the first)")
    attention: StrictBool = Field(False, description="also return the attention weights")
    top_k: StrictInt = Field(0, description="also the k likeliest tokens at each position (0: none)")


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: StrictStr = Field(description="the English sentence being translated")
    typed: StrictStr = Field(description="the translation typed so far; may end inside a word")
    model: StrictStr | None = Field(None, description="a loaded model's name (default: the first)")
    beam: StrictInt = Field(1, description="beam size; 1 is greedy search (the fastest proposals)")
    alpha: StrictFloat | StrictInt = Field(
        DEFAULTS.alpha, description="GNMT length penalty; 0 ranks by log-probability"
    )
    top_k: StrictInt = Field(0, description="also each proposed word's k likeliest alternatives")
    word: StrictInt | None = Field(
        None, description="with top_k: the alternatives of this word only (its index in words)"
    )
    attention: StrictBool = Field(False, description="also the attention behind every token")


class Candidate(TypedDict):
    token: str
    log_prob: float
    prefix: NotRequired[
        Annotated[
            str,
            Field(
                description="the text a translation begins with if it takes this token here (for a "
                "`prefix`); absent for <eos> and <unk>"
            ),
        ]
    ]


CANDIDATES = Field(
    description="per token, the k tokens the model finds likeliest in its place given the tokens before "
    "it, best first (top_k > 0)"
)


class ScoreOut(TypedDict):
    tokens: Annotated[list[str], Field(description="the target's tokens as the model read them, <eos> last")]
    src_tokens: Annotated[list[str], Field(description="source tokens, <eos> last")]
    log_probs: Annotated[list[float], Field(description="log p of each token given those before it")]
    total: Annotated[float, Field(description="their sum: the target's log-probability")]
    attention: NotRequired[
        Annotated[
            list[list[float]],
            Field(description="target × source weights (on request; absent for a model without attention)"),
        ]
    ]
    candidates: NotRequired[Annotated[list[list[Candidate]], CANDIDATES]]


class ScoreResponse(TypedDict):
    model: str
    scores: list[ScoreOut]


class Alternative(TypedDict):
    text: str
    score: float


class TranslationOut(TypedDict):
    """One sentence's answer, built as a plain dict (the hot path skips re-validation).  A field that
    does not apply is left out, never sent as null: alternatives only for ``n_best`` > 1, tokens and
    weights only with ``attention`` requested."""

    text: str
    score: Annotated[float, Field(description="log-probability under the model")]
    alternatives: NotRequired[
        Annotated[list[Alternative], Field(description="the n best, best first (n_best > 1)")]
    ]
    src_tokens: NotRequired[Annotated[list[str], Field(description="source tokens, <eos> last")]]
    tokens: NotRequired[Annotated[list[str], Field(description="target tokens, <eos> last")]]
    log_probs: NotRequired[
        Annotated[list[float], Field(description="log p of each token given those before it (top_k > 0)")]
    ]
    candidates: NotRequired[Annotated[list[list[Candidate]], CANDIDATES]]
    attention: NotRequired[
        Annotated[
            list[list[float]],
            Field(
                description="target × source weights as search used them (last layer, heads averaged); "
                "absent for a model without attention"
            ),
        ]
    ]
    maps: NotRequired[
        Annotated[
            dict[str, list],
            Field(
                description="every layer and head: cross [layer][head][target][source]; Transformer "
                "only: encoder [layer][head][source][source], decoder [layer][head][target][target]"
            ),
        ]
    ]


class WordAlternative(TypedDict):
    text: str
    log_prob: float
    typed: Annotated[str, Field(description="the typed text that takes this word: send it to complete")]


class ProposedWord(TypedDict):
    text: str
    start: Annotated[int, Field(description="character offset in text")]
    end: int
    first: Annotated[int, Field(description="its tokens are tokens[first:last]")]
    last: int
    log_prob: Annotated[float, Field(description="the sum of its tokens' log-probabilities")]
    alternatives: NotRequired[
        Annotated[list[WordAlternative], Field(description="the likeliest words in its place (top_k > 0)")]
    ]


class CompleteResponse(TypedDict):
    model: str
    text: Annotated[str, Field(description="the typed text, unchanged, then the proposal")]
    proposal: Annotated[str, Field(description="what the model adds after the typed text")]
    tokens: Annotated[list[str], Field(description="the whole translation's target tokens, <eos> last")]
    src_tokens: list[str]
    log_probs: Annotated[list[float], Field(description="log p of each token given those before it")]
    words: Annotated[list[ProposedWord], Field(description="from the word being typed to the end")]
    attention: NotRequired[
        Annotated[list[list[float]], Field(description="target × source weights (on request)")]
    ]


class TranslateResponse(TypedDict):
    model: str
    translations: list[TranslationOut]


class ModelInfo(BaseModel):
    name: str
    architecture: str
    attention: str
    layers: int
    heads: int
    parameters: int
    src_lang: str
    tgt_lang: str
    src_vocab_size: int
    tgt_vocab_size: int
    alternatives: bool = Field(
        description="whether requests may ask for top_k: each word's likeliest alternatives"
    )


@dataclass
class _Job:
    sentences: list[str]
    options: DecodeOptions | None  # jobs batch together when these agree; None: scoring ``targets``
    future: asyncio.Future
    prefix: list[str] | None = None  # one per sentence, or none at all
    targets: list[str] | None = None  # one per sentence, to score
    top_k: int = 0  # candidates per scored position
    typed: str | None = None  # a completion of this typed text (one sentence)
    word: int | None = None  # the word whose alternatives a completion asks for; None: every word

    @property
    def kind(self) -> tuple[str, DecodeOptions | None]:
        """Jobs of one kind go to the model together."""
        work = "score" if self.options is None else "complete" if self.typed is not None else "translate"
        return work, self.options


@dataclass
class Batcher:
    """One model's request queue and the worker that empties it in batches."""

    engine: Engine
    limits: Limits
    executor: ThreadPoolExecutor
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    completer: Completer | None = None  # the sources being typed (an attnmt model's only)

    def __post_init__(self) -> None:
        if self.engine.model is not None:
            self.completer = Completer(
                self.engine, max_sources=self.limits.max_typing, ttl=self.limits.typing_ttl
            )

    async def translate(
        self, sentences: list[str], options: DecodeOptions, prefix: list[str] | None = None
    ) -> list[list[Translation]]:
        return await self._submit(_Job(sentences, options, self._future(), prefix=prefix))

    async def score(self, sources: list[str], targets: list[str], top_k: int = 0) -> list[Score]:
        """Scores with up to ``top_k`` candidates per position (a call shared with other scoring requests
        finds as many as the most any of them asks for)."""
        return await self._submit(_Job(sources, None, self._future(), targets=targets, top_k=top_k))

    async def complete(
        self, source: str, typed: str, options: DecodeOptions, top_k: int, word: int | None = None
    ) -> tuple[Completion, list[list[tuple[str, float]] | None]]:
        """The completion, and with ``top_k`` the alternatives of its words (of ``word`` only, if given;
        None for the others)."""
        job = _Job([source], options, self._future(), typed=typed, top_k=top_k, word=word)
        return (await self._submit(job))[0]

    @staticmethod
    def _future() -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> list:
        await self.queue.put(job)
        return await asyncio.wait_for(job.future, self.limits.timeout)  # a timeout cancels it: never run

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size, deadline = len(jobs[0].sentences), loop.time() + self.limits.batch_window
            while size < self.limits.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except TimeoutError:
                    break
                jobs.append(job)
                size += len(job.sentences)
            for kind in dict.fromkeys(job.kind for job in jobs):  # in order of arrival
                group = [job for job in jobs if job.kind == kind and not job.future.done()]
                await self._run_group(loop, group, kind[1])

    async def _run_group(self, loop, group: list[_Job], options: DecodeOptions | None) -> None:
        """Model calls of at most ``max_batch`` sentences (one request over it gets a call alone)."""
        batch, chunk = [], 0
        for job in group:
            if batch and chunk + len(job.sentences) > self.limits.max_batch:
                await self._call(loop, batch, options)
                batch, chunk = [], 0
            batch.append(job)
            chunk += len(job.sentences)
        if batch:
            await self._call(loop, batch, options)

    async def _call(self, loop, jobs: list[_Job], options: DecodeOptions | None) -> None:
        try:
            results = await loop.run_in_executor(self.executor, self._work, jobs, options)
        except Exception as e:  # handed to the waiting requests, never lost
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(results[start : start + len(job.sentences)])
            start += len(job.sentences)

    def _complete(self, job: _Job, options: DecodeOptions) -> tuple[Completion, list]:
        completion = self.completer.complete(job.sentences[0], job.typed, options)
        if not job.top_k:
            return completion, []
        alternatives = [  # the word being typed: alternatives that begin with what was typed of it
            self.completer.alternatives(job.sentences[0], completion, w, job.top_k, job.typed[w.start :])
            if job.word in (None, i)
            else None
            for i, w in enumerate(completion.words)
        ]
        return completion, alternatives

    def _work(self, jobs: list[_Job], options: DecodeOptions | None) -> list:
        """One model call for all ``jobs``: one result per sentence, in order."""
        sentences = [s for job in jobs for s in job.sentences]
        if jobs[0].typed is not None:  # one source each, its prefixes kept between calls
            return [self._complete(job, options) for job in jobs]
        if options is None:
            targets = [t for job in jobs for t in job.targets]
            top_k = max(job.top_k for job in jobs)
            return self.engine.score(sentences, targets, batch_size=self.limits.max_batch, top_k=top_k)
        prefix = None
        if any(job.prefix is not None for job in jobs):
            prefix = [p for job in jobs for p in (job.prefix or [""] * len(job.sentences))]
        return self.engine.translate_n_best(
            sentences, options, batch_size=self.limits.max_batch, prefix=prefix
        )


@dataclass
class _Service:
    """What the routes share: the models (name → engine, the first the default), their batchers, the
    limits, and the one thread the models compute on."""

    models: dict[str, Engine]
    limits: Limits
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="attnmt-model")
    )
    batchers: dict[str, Batcher] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self.batchers.update(
            {name: Batcher(e, self.limits, self.executor) for name, e in self.models.items()}
        )
        tasks = [asyncio.create_task(b.run()) for b in self.batchers.values()]
        yield
        for task in tasks:
            task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def loaded(self, name: str | None) -> str:
        """The model a request names, the first by default; 404 if it is not loaded."""
        name = name or next(iter(self.models))
        if name not in self.models:
            raise ApiError(404, f"model {name!r} is not loaded; loaded: {', '.join(self.models)}")
        return name

    async def in_time(self, answer: Awaitable[list]) -> list:
        """The batcher's answer, or 504 once the request has waited ``limits.timeout``."""
        try:
            return await answer
        except TimeoutError:
            raise ApiError(
                504, f"no answer within {self.limits.timeout:g} s; try fewer or shorter sentences"
            ) from None


def create_app(models: dict[str, Engine], limits: Limits | None = None) -> "BodyLimit":
    """The service for ``models`` (name → engine); the first is the default."""
    if not models:
        raise ValueError("no models to serve")
    service = _Service(models, limits or Limits())
    app = FastAPI(
        title="attnmt",
        summary="Neural machine translation with attention you can look at.",
        version="1",
        docs_url=None,  # the interactive docs load scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
        lifespan=service.lifespan,
    )
    _add_error_handlers(app)
    _add_translation_routes(app, service)
    _add_completion_route(app, service)
    _add_page_routes(app, service)
    return BodyLimit(app, service.limits.max_body_bytes)


def _add_translation_routes(app: FastAPI, service: _Service) -> None:
    """``/translate`` and ``/score``."""
    limits = service.limits

    @app.post("/translate", response_model=TranslateResponse)  # documents the JSONResponse
    async def translate(request: TranslateRequest) -> JSONResponse:
        """Translate the sentences with one model, greedy or beam search, with attention on request;
        each translation begins with its ``prefix`` if given."""
        name = service.loaded(request.model)
        engine = service.models[name]
        _check_sentences(request.sentences, limits)
        if request.prefix is not None:
            _check_one_each(request.prefix, limits, "prefix", len(request.sentences), "sentences")
        options = _decode_options(request, limits)
        _check_top_k(request.top_k, limits, engine, name)
        answer = service.batchers[name].translate(request.sentences, options, request.prefix)
        results = await service.in_time(answer)
        best = [n_best[0] for n_best in results]
        if request.attention or request.top_k:  # one extra pass per sentence, off the event loop
            maps, scores = await asyncio.get_running_loop().run_in_executor(
                service.executor, lambda: _read_again(engine, best, request, limits.max_batch)
            )
        else:
            maps, scores = [None] * len(best), [None] * len(best)
        translations = [_output(r, m, s, request) for r, m, s in zip(results, maps, scores, strict=True)]
        return JSONResponse(TranslateResponse(model=name, translations=translations))

    @app.post("/score", response_model=ScoreResponse)
    async def score(request: ScoreRequest) -> JSONResponse:
        """How probable one model finds each target as the translation of its source: the
        log-probability of each token (forced decoding), the total, the attention and the likeliest
        tokens at each position on request."""
        name = service.loaded(request.model)
        engine = service.models[name]
        _check_sentences(request.sources, limits, "sources")
        _check_one_each(request.targets, limits, "targets", len(request.sources), "sources")
        _check_top_k(request.top_k, limits, engine, name)
        answer = service.batchers[name].score(request.sources, request.targets, request.top_k)
        results = await service.in_time(answer)
        scores = [_score_output(r, request.attention, request.top_k, engine) for r in results]
        return JSONResponse(ScoreResponse(model=name, scores=scores))


def _add_completion_route(app: FastAPI, service: _Service) -> None:
    limits = service.limits

    @app.post("/complete", response_model=CompleteResponse)
    async def complete(request: CompleteRequest) -> JSONResponse:
        """Translate as you type: ``typed`` kept exactly and the model's best continuation of it (the
        word being typed completed, then on to the end), greedy or beam search."""
        name = service.loaded(request.model)
        if not request.source.strip():
            raise ApiError(422, "source: empty; send the sentence being translated")
        for field_name in ("source", "typed"):
            if len(text := getattr(request, field_name)) > limits.max_chars:
                raise ApiError(413, f"{field_name}: {len(text)} characters, the limit is {limits.max_chars}")
        batcher = service.batchers[name]
        if batcher.completer is None:
            raise ApiError(422, f"model {name!r} cannot complete typed text (a CTranslate2 export)")
        options = _decode_options(request, limits)
        _check_top_k(request.top_k, limits, service.models[name], name)
        answer = batcher.complete(request.source, request.typed, options, request.top_k, request.word)
        completion, alternatives = await service.in_time(answer)
        return JSONResponse(_complete_output(name, completion, alternatives, request))


def _add_page_routes(app: FastAPI, service: _Service) -> None:
    """What the models are, whether the service is up, and the web page."""

    @app.get("/models", response_model=list[ModelInfo])
    async def list_models() -> list[ModelInfo]:
        """The loaded models, the default first."""
        return [_info(name, engine) for name, engine in service.models.items()]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    app.mount("/static", StaticFiles(directory=WEB), name="static")


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"status": ..., "message": ...}}``, with the status a client expects."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        if first["type"] == "json_invalid":
            return _error(
                400, f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
            )
        where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        return _error(422, f"{where}: {first['msg']}")


def _check_sentences(sentences: list[str], limits: Limits, name: str = "sentences") -> None:
    if not sentences:
        raise ApiError(422, f"{name}: empty; send at least one sentence")
    if len(sentences) > limits.max_sentences:
        raise ApiError(413, f"{name}: {len(sentences)} in one request, the limit is {limits.max_sentences}")
    for i, sentence in enumerate(sentences):
        if not sentence.strip():
            raise ApiError(422, f"{name}[{i}]: empty")
        if len(sentence) > limits.max_chars:
            raise ApiError(413, f"{name}[{i}]: {len(sentence)} characters, the limit is {limits.max_chars}")


def _check_one_each(texts: list[str], limits: Limits, name: str, count: int, of: str) -> None:
    """Texts that go one per sentence (a prefix, a target to score): ``count`` of them, each within
    ``max_chars``; an empty one is allowed."""
    if len(texts) != count:
        raise ApiError(422, f"{name}: {len(texts)} for {count} {of}; send one per sentence")
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise ApiError(413, f"{name}[{i}]: {len(text)} characters, the limit is {limits.max_chars}")


def _check_top_k(top_k: int, limits: Limits, engine: Engine, name: str) -> None:
    if not 0 <= top_k <= limits.max_top_k:
        raise ApiError(422, f"top_k: must be between 0 and {limits.max_top_k}, got {top_k}")
    if top_k and engine.model is None:
        raise ApiError(422, f"top_k: model {name!r} gives no alternatives (a CTranslate2 export); send 0")


def _read_again(
    engine: Engine, best: list[Translation], request: TranslateRequest, batch_size: int
) -> tuple[list[dict | None], list[ScoreOut | None]]:
    """What a translation request asks for beyond the text, read from each best translation again: every
    attention map (``attention``), and each token's log p with its candidates (``top_k``)."""
    maps = [engine.attention_maps(t) if request.attention else None for t in best]
    if not request.top_k:
        return maps, [None] * len(best)
    scores = engine.score_translations(best, batch_size=batch_size, top_k=request.top_k)
    return maps, [_score_output(s, False, request.top_k, engine) for s in scores]


def _complete_output(
    name: str,
    completion: Completion,
    alternatives: list[list[tuple[str, float]] | None],
    request: CompleteRequest,
) -> CompleteResponse:
    """The answer to a completion; with ``top_k``, each word's alternatives."""
    words = []
    for i, word in enumerate(completion.words):
        out = ProposedWord(
            text=word.text, start=word.start, end=word.end, first=word.first, last=word.last,
            log_prob=word.log_prob,
        )  # fmt: skip
        if request.top_k and alternatives[i] is not None:
            before = completion.text[: word.start]
            out["alternatives"] = [
                WordAlternative(text=text, log_prob=log_prob, typed=before + text)
                for text, log_prob in alternatives[i]
            ]
        words.append(out)
    out = CompleteResponse(
        model=name, text=completion.text, proposal=completion.proposal, tokens=completion.tokens,
        src_tokens=completion.src_tokens, log_probs=completion.log_probs, words=words,
    )  # fmt: skip
    if request.attention and completion.attention is not None:
        out["attention"] = completion.attention.round(4).tolist()
    return out


def _decode_options(request: TranslateRequest | CompleteRequest, limits: Limits) -> DecodeOptions:
    """The request's decoding options, within this server's limits on beam and alpha."""
    if not 1 <= request.beam <= limits.max_beam:
        raise ApiError(422, f"beam: must be between 1 and {limits.max_beam}, got {request.beam}")
    if not (math.isfinite(request.alpha) and 0 <= request.alpha <= 10):
        raise ApiError(422, f"alpha: must be between 0 and 10, got {request.alpha}")
    try:
        n_best = getattr(request, "n_best", 1)
        return DecodeOptions(beam_size=request.beam, alpha=float(request.alpha), n_best=n_best)
    except AttnmtError as e:
        raise ApiError(422, str(e)) from None


def _output(
    n_best: list[Translation],
    maps: dict | None,
    score: ScoreOut | None,
    request: TranslateRequest,
) -> TranslationOut:
    """One sentence's answer; what does not apply (alternatives, attention of a model without) is left out."""
    best = n_best[0]
    out = TranslationOut(text=best.text, score=best.score)
    if request.n_best > 1:
        out["alternatives"] = [Alternative(text=t.text, score=t.score) for t in n_best]
    if request.attention or score is not None:
        out["src_tokens"], out["tokens"] = best.src_tokens, best.tokens
    if request.attention:
        if best.attention is not None:
            out["attention"] = best.attention.round(4).tolist()
        out["maps"] = {kind: weights.round(4).tolist() for kind, weights in (maps or {}).items()}
    if score is not None:
        out["log_probs"], out["candidates"] = score["log_probs"], score["candidates"]
    return out


def _score_output(score: Score, attention: bool, top_k: int, engine: Engine) -> ScoreOut:
    out = ScoreOut(
        tokens=score.tokens, src_tokens=score.src_tokens, log_probs=score.log_probs, total=score.total
    )
    if attention and score.attention is not None:
        out["attention"] = score.attention.round(4).tolist()
    if top_k:
        out["candidates"] = _candidates(score, top_k, engine.tgt_tokenizer)
    return out


def _candidates(score: Score, top_k: int, tokenizer: Tokenizer) -> list[list[Candidate]]:
    """The ``top_k`` likeliest tokens at each position of ``score``, each with the text a translation
    taking it there begins with (``prefix``), except for ``<eos>`` and ``<unk>``, which no prefix holds."""
    rows = []
    for i, candidates in enumerate(score.candidates):
        row = []
        for token, log_prob in candidates[:top_k]:
            candidate = Candidate(token=token, log_prob=log_prob)
            if token not in (EOS, UNK):
                candidate["prefix"] = tokenizer.detokenize([*score.tokens[:i], token])
            row.append(candidate)
        rows.append(row)
    return rows


def _info(name: str, engine: Engine) -> ModelInfo:
    config = engine.config
    transformer = config.model.architecture == "transformer"
    return ModelInfo(
        name=name,
        architecture=config.model.architecture,
        attention="multi-head scaled dot" if transformer else config.model.attention,
        layers=config.model.layers,
        heads=config.model.heads if transformer else 1,
        parameters=engine.parameter_count,
        src_lang=config.data.src_lang,
        tgt_lang=config.data.tgt_lang,
        src_vocab_size=len(engine.src_vocab),
        tgt_vocab_size=len(engine.tgt_vocab),
        alternatives=engine.model is not None,
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before the app sees it,
    whether it announces its length or streams in chunks."""

    def __init__(self, app: FastAPI, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        announced = dict(scope["headers"]).get(b"content-length")
        if announced is not None and announced.isdigit() and int(announced) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send) -> None:
        response = _error(413, f"the body is over the limit of {self.max_bytes:,} bytes")
        await response(scope, receive, send)


def serve(models: dict[str, Engine], host: str, port: int, limits: Limits) -> None:
    import uvicorn

    uvicorn.run(create_app(models, limits), host=host, port=port, log_level="warning")
