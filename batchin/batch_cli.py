"""`batchin batch submit|status|cancel|results`: the OpenAI file form of /v1/batches from a shell.

Talks HTTP to a running server (BATCHIN_BASE_URL, key from BATCHIN_API_KEY), like any SDK caller:
the JSONL streams from disk while a progress bar counts the bytes, the batch's progress is polled
while it runs, and results stream to disk. JSON goes to stdout, progress to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Annotated, Any, cast

import httpx2
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

batch_app = typer.Typer(no_args_is_help=True, help="Batches (the OpenAI file form) against a running server.")

_TERMINAL = {"completed", "failed", "expired", "cancelled"}
_CHUNK = 1 << 20
BaseUrl = Annotated[str, typer.Option(envvar="BATCHIN_BASE_URL", help="server address")]
ApiKey = Annotated[str, typer.Option(envvar="BATCHIN_API_KEY", help="API key (env BATCHIN_API_KEY)")]


class _CountingReader:
    """A file whose reads advance a progress bar (the multipart encoder reads it in chunks)."""

    def __init__(self, raw: IO[bytes], progress: Progress, task: Any) -> None:
        self._raw, self._progress, self._task = raw, progress, task

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._progress.advance(self._task, len(data))
        return data

    def __getattr__(self, name: str) -> Any:  # seek, tell, fileno: size detection by the encoder
        return getattr(self._raw, name)


def _client(base_url: str, api_key: str) -> httpx2.Client:
    return httpx2.Client(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=httpx2.Timeout(600.0),
    )


def _checked(response: httpx2.Response) -> Any:
    if response.status_code >= 400:
        sys.stderr.write(response.text + "\n")
        raise typer.Exit(code=1)
    return response.json()


def _emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _upload(client: httpx2.Client, path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    with (
        Progress(TextColumn("upload"), BarColumn(), DownloadColumn(), console=Console(stderr=True)) as bar,
        path.open("rb") as raw,
    ):
        task = bar.add_task("upload", total=size)
        reader = cast(IO[bytes], _CountingReader(raw, bar, task))  # duck-typed: read, seek, tell, fileno
        response = client.post(
            "/v1/files", data={"purpose": "batch"}, files={"file": (path.name, reader, "application/jsonl")}
        )
    uploaded: dict[str, Any] = _checked(response)
    return uploaded


def _wait(client: httpx2.Client, batch_id: str, poll_seconds: float) -> dict[str, Any]:
    with _progress() as bar:
        task = bar.add_task("validating", total=None)
        while True:
            batch: dict[str, Any] = _checked(client.get(f"/v1/batches/{batch_id}"))
            counts = batch.get("request_counts") or {}
            done = int(counts.get("completed", 0)) + int(counts.get("failed", 0))
            bar.update(task, description=batch["status"], completed=done, total=counts.get("total") or None)
            if batch["status"] in _TERMINAL:
                return batch
            time.sleep(poll_seconds)


def _download(client: httpx2.Client, file_id: str, target: Path) -> None:
    with client.stream("GET", f"/v1/files/{file_id}/content") as response:
        if response.status_code >= 400:
            response.read()
            _checked(response)
        with target.open("wb") as out:
            for chunk in response.iter_bytes(_CHUNK):
                out.write(chunk)


def _write_results(client: httpx2.Client, batch: dict[str, Any], output: Path) -> dict[str, str]:
    written: dict[str, str] = {}
    if batch.get("output_file_id"):
        _download(client, batch["output_file_id"], output)
        written["output"] = str(output)
    if batch.get("error_file_id"):
        errors = output.with_name(output.stem + ".errors.jsonl")
        _download(client, batch["error_file_id"], errors)
        written["errors"] = str(errors)
    return written


@batch_app.command()
def submit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSONL: custom_id, method, url, body")
    ],
    base_url: BaseUrl = "http://127.0.0.1:8000",
    api_key: ApiKey = "",
    priority: Annotated[str, typer.Option(help="high, low or fill")] = "low",
    endpoint: Annotated[str, typer.Option(help="the url every line targets")] = "/v1/chat/completions",
    webhook_url: Annotated[str | None, typer.Option(help="called (signed) when the batch ends")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the batch to end, then write the results")] = False,
    output: Annotated[Path | None, typer.Option(help="results file (default FILE.results.jsonl)")] = None,
    poll_seconds: Annotated[float, typer.Option(help="status poll interval while waiting")] = 1.0,
) -> None:
    """Upload FILE, start a batch over it; with --wait, follow it and write the results."""
    with _client(base_url, api_key or os.environ.get("BATCHIN_API_KEY", "")) as client:
        uploaded = _upload(client, file)
        body: dict[str, Any] = {
            "input_file_id": uploaded["id"],
            "endpoint": endpoint,
            "completion_window": "24h",
            "priority": priority,
        }
        if webhook_url:
            body["webhook_url"] = webhook_url
        batch: dict[str, Any] = _checked(client.post("/v1/batches", json=body))
        if wait:
            batch = _wait(client, batch["id"], poll_seconds)
            target = output or file.with_name(file.stem + ".results.jsonl")
            batch["results"] = _write_results(client, batch, target)
    _emit(batch)


@batch_app.command()
def status(batch_id: str, base_url: BaseUrl = "http://127.0.0.1:8000", api_key: ApiKey = "") -> None:
    """A batch's status and request counts."""
    with _client(base_url, api_key) as client:
        _emit(_checked(client.get(f"/v1/batches/{batch_id}")))


@batch_app.command()
def cancel(batch_id: str, base_url: BaseUrl = "http://127.0.0.1:8000", api_key: ApiKey = "") -> None:
    """Cancel a batch: unstarted tasks stop, finished results are kept."""
    with _client(base_url, api_key) as client:
        _emit(_checked(client.post(f"/v1/batches/{batch_id}/cancel")))


@batch_app.command()
def results(
    batch_id: str,
    base_url: BaseUrl = "http://127.0.0.1:8000",
    api_key: ApiKey = "",
    output: Annotated[Path, typer.Option(help="where to write the output JSONL")] = Path("results.jsonl"),
) -> None:
    """Write a finished batch's output (and error) JSONL files."""
    with _client(base_url, api_key) as client:
        batch: dict[str, Any] = _checked(client.get(f"/v1/batches/{batch_id}"))
        if batch["status"] not in _TERMINAL:
            sys.stderr.write(f"batch {batch_id} is still {batch['status']}\n")
            raise typer.Exit(code=1)
        _emit({"id": batch_id, "status": batch["status"], "results": _write_results(client, batch, output)})
