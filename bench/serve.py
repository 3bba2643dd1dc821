"""Load on `attnmt serve`: many concurrent clients, each sending one sentence at a time.

    python bench/serve.py MODEL_DIR [--clients 32] [--requests 20] [--data tatoeba:test] [--modes batched,single]

For each mode the service is started on 127.0.0.1 (``batched``: --max-batch 64; ``single``: --max-batch 1,
one request per model call), every client sends its requests one after another, and every answer is
checked against the model's own translation of that sentence (nothing lost or mixed up between
clients).  Prints requests/s, p50/p99 latency and errors per mode, and the speed-up, as Markdown;
``--json`` also writes them.  Exit status 1 if any request failed or came back wrong.
"""

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

from attnmt.corpora import group_references, load_pairs
from attnmt.modeldir import load_model
from attnmt.translator import DecodeOptions

MODES = {"batched": ["--max-batch", "64"], "single": ["--max-batch", "1"]}
SERVE_OPTIONS: list[str] = []  # --serve-options: passed to every `attnmt serve`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Connection:
    """One keep-alive HTTP/1.1 connection: a client this thin keeps the load generator's own CPU use
    small, so the measurement is of the service (httpx costs several times more per request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Connection":
        return cls(*await asyncio.open_connection(host, port))

    async def post_json(self, path: str, data) -> tuple[int, dict]:
        body = json.dumps(data).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(await self.reader.readexactly(length))

    def close(self) -> None:
        self.writer.close()


async def _client(host, port, sentences, expected, first, count, latencies, errors):
    connection = await Connection.open(host, port)
    try:
        for k in range(count):
            sentence = sentences[(first + k) % len(sentences)]
            started = time.perf_counter()
            try:
                status, body = await connection.post_json("/translate", {"sentences": [sentence], "beam": 1})
                text = body["translations"][0]["text"] if status == 200 else f"<{status}: {body}>"
            except (OSError, ValueError, KeyError, IndexError, asyncio.IncompleteReadError) as e:
                text = f"<{e!r}>"
            latencies.append(time.perf_counter() - started)
            if text != expected[sentence]:
                errors.append(f"{sentence!r}: got {text!r}")
    finally:
        connection.close()


async def load(
    host: str, port: int, sentences: list[str], expected: dict, clients: int, requests: int
) -> dict:
    latencies, errors = [], []
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _client(host, port, sentences, expected, c * requests, requests, latencies, errors)
            for c in range(clients)
        )
    )
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": round(seconds, 2),
        "req_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "errors": len(errors),
        "first_errors": errors[:3],
    }


def serve_and_load(model_dir: Path, mode: str, sentences, expected, clients: int, requests: int) -> dict:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "attnmt.cli",
        "serve",
        str(model_dir),
        "--port",
        str(port),
        *MODES[mode],
        *SERVE_OPTIONS,
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"the server did not start: {process.stderr.read1().decode()}")
        return {"mode": mode, **asyncio.run(load("127.0.0.1", port, sentences, expected, clients, requests))}
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--data", default="tatoeba:test", help="where the sentences come from (a data spec)")
    parser.add_argument("--modes", default="batched,single")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--serve-options", default="", help='more `attnmt serve` options, e.g. "--batch-window-ms 20"'
    )
    args = parser.parse_args()
    SERVE_OPTIONS.extend(args.serve_options.split())
    translator = load_model(args.model_dir)
    sentences, _ = group_references(load_pairs(args.data))
    sentences = sentences[: args.clients * args.requests]
    expected = dict(
        zip(
            sentences,
            (t.text for t in translator.translate(sentences, DecodeOptions(beam_size=1))),
            strict=True,
        )
    )
    del translator
    rows = [
        serve_and_load(args.model_dir, mode, sentences, expected, args.clients, args.requests)
        for mode in args.modes.split(",")
    ]
    print(f"`python bench/serve.py {args.model_dir} --clients {args.clients} --requests {args.requests}`, "
          f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}\n")  # fmt: skip
    print("| mode | clients | requests | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['req_per_s']} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['errors']} |")  # fmt: skip
    by_mode = {r["mode"]: r for r in rows}
    if {"batched", "single"} <= by_mode.keys():
        print(
            f"\nbatching: {by_mode['batched']['req_per_s'] / by_mode['single']['req_per_s']:.1f}× the throughput"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    for r in rows:
        for error in r["first_errors"]:
            print(f"{r['mode']}: {error}", file=sys.stderr)
    sys.exit(1 if any(r["errors"] for r in rows) else 0)


if __name__ == "__main__":
    main()
