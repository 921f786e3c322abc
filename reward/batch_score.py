"""`empathy-rl score`: score a JSONL file in process (no Ray) through the same `RewardModel` as the service.

Each input line is validated with the service's own item model (`reward.http_api`), so a line is
accepted here exactly when `POST /score` would accept it as an item, plus an optional `id` that is
copied to the output. The whole file is validated before the encoder is loaded: a bad line at the
end stops the command in a second, naming the file, the line and the field, and nothing is written.
The output goes to a temporary file beside the target and is renamed over it at the end, so an
interrupted run leaves no half-written file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any, Iterator, Optional

from pydantic import BaseModel, ValidationError

from empathy_rl.atomic_io import atomic_writer
from empathy_rl.config import RewardConfig
from reward.http_api import error_from_validation, line_model


class ScoreInputError(ValueError):
    """A bad input line; the message is `FILE:LINE: field F: what is wrong`."""


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw.rstrip(b"\r\n")


def _parse(path: Path, number: int, raw: bytes, model: type[BaseModel]) -> BaseModel:
    if not raw.strip():
        raise ScoreInputError(f"{path}:{number}: empty line (every line must be one JSON object; output line N answers input line N)")
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        api = error_from_validation(err)
        where = "not valid JSON" if api.code == "invalid_json" else f"field {api.field!r}"
        raise ScoreInputError(f"{path}:{number}: {where}: {api.message}") from None


def validate_file(path: Path) -> int:
    """Check every line; returns the number of lines. Raises `ScoreInputError` at the first bad one."""
    if not path.is_file():
        raise FileNotFoundError(f"--input {path}: no such file")
    model = line_model()
    count = 0
    for number, raw in _lines(path):
        _parse(path, number, raw, model)
        count = number
    return count


def _batches(path: Path, size: int) -> Iterator[list[Any]]:
    model = line_model()
    batch: list[Any] = []
    for number, raw in _lines(path):
        batch.append(_parse(path, number, raw, model))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_scores(cfg: RewardConfig, path: Path, total: int, out: IO[str], progress: bool) -> None:
    from dataclasses import asdict

    from tqdm import tqdm

    from reward.model import RewardModel

    model = RewardModel(cfg)
    size = cfg.chunk_size * cfg.max_batch_chunks  # what one batched Serve call scores
    with tqdm(total=total, desc="scoring", unit="item", disable=not progress, file=sys.stderr) as bar:
        for batch in _batches(path, size):
            scores = model.score([line.to_request() for line in batch])  # type: ignore[attr-defined]
            for line, score in zip(batch, scores):
                record = {"id": line.id} if line.id is not None else {}  # type: ignore[attr-defined]
                record.update(asdict(score))
                out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            bar.update(len(batch))


def score_file(cfg: RewardConfig, input_path: str, output_path: Optional[str] = None, progress: bool = True) -> int:
    """Score `input_path` into `output_path` (stdout when None); returns the number of lines scored."""
    path = Path(input_path)
    total = validate_file(path)
    if output_path is None:
        _write_scores(cfg, path, total, sys.stdout, progress)
        sys.stdout.flush()
        return total
    with atomic_writer(output_path) as out:  # a crash mid-way leaves no half-scored file
        _write_scores(cfg, path, total, out, progress)
    return total
