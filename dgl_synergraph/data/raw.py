"""Readers for raw inputs: Amazon review dumps (2014 and 2018), their metadata and binary image
features, and generic interaction / item tables. Every malformed input is one DataError line
naming the file (and line) and the problem."""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from dgl_synergraph.errors import DataError

IMAGE_DIM = 4096
ASIN_BYTES = 10


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text or gzip file, with corrupt gzip reported clearly."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt gzip file ({err or type(err).__name__})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None


def parse_record(path: Path, number: int, line: str) -> dict:
    """One JSON object, or (2014 metadata) one Python dict literal; never ``eval``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(f"{path} line {number}: neither JSON nor a Python literal") from None
    if not isinstance(record, dict):
        raise DataError(f"{path} line {number}: expected an object with named fields")
    return record


def read_reviews(path: Path) -> pl.DataFrame:
    """Amazon reviews (2014 ``reviews_<Cat>[_5].json.gz`` or 2018 ``<Cat>[_5].json.gz``) ->
    user, item, rating, timestamp."""
    users, items, ratings, times = [], [], [], []
    for number, line in iter_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path} line {number}: not valid JSON") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: expected a JSON object")
        for field in ("reviewerID", "asin"):
            if field not in record or record[field] in (None, ""):
                raise DataError(f"{path} line {number}: missing required field '{field}'")
        users.append(str(record["reviewerID"]))
        items.append(str(record["asin"]))
        ratings.append(_as_float(record.get("overall")))
        times.append(as_int(record.get("unixReviewTime")))
    if not users:
        raise DataError(f"{path}: no reviews")
    return pl.DataFrame({"user": users, "item": items, "rating": ratings, "timestamp": times},
                        schema={"user": pl.Utf8, "item": pl.Utf8, "rating": pl.Float64, "timestamp": pl.Int64})


def _as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_int(value) -> int | None:
    """``int(value)``, or None when it is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def meta_text(record: dict) -> str:
    """Title, brand, categories and description of one item as one string."""
    parts = []
    for field in ("title", "brand"):
        if record.get(field):
            parts.append(str(record[field]))
    categories = record.get("categories") or record.get("category") or []
    flat = []
    for entry in categories if isinstance(categories, list) else [categories]:
        flat += entry if isinstance(entry, list) else [entry]
    if flat:
        parts.append(", ".join(dict.fromkeys(str(c) for c in flat if c)))
    description = record.get("description")
    if isinstance(description, list):
        description = " ".join(str(d) for d in description)
    if description:
        parts.append(str(description))
    return ". ".join(p.strip() for p in parts if p and p.strip())


def read_meta_texts(path: Path, wanted: set[str] | None = None) -> dict[str, str]:
    """asin -> text from ``meta_<Cat>.json.gz`` (2014 literal lines or 2018 JSON lines)."""
    texts = {}
    for number, line in iter_lines(path):
        record = parse_record(path, number, line)
        asin = record.get("asin")
        if not asin:
            raise DataError(f"{path} line {number}: missing required field 'asin'")
        if wanted is None or asin in wanted:
            texts[str(asin)] = meta_text(record)
    return texts


def read_image_features(path: Path, wanted: dict[str, int], dim: int = IMAGE_DIM) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``image_features_<Cat>.b`` (10-byte ASCII asin + ``dim`` little-endian float32)
    for the asins in ``wanted`` (asin -> row). Returns (matrix, found mask)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    record = ASIN_BYTES + 4 * dim
    size = path.stat().st_size
    if size == 0 or size % record:
        raise DataError(f"{path}: size {size} is not a multiple of the record size {record} "
                        f"({ASIN_BYTES}-byte asin + {dim} float32)")
    dtype = np.dtype([("asin", f"S{ASIN_BYTES}"), ("feat", "<f4", (dim,))])
    records = np.memmap(path, dtype=dtype, mode="r")
    out = np.zeros((len(wanted), dim), dtype=np.float32)
    found = np.zeros(len(wanted), dtype=bool)
    block = 4096
    for start in range(0, len(records), block):
        chunk = records[start : start + block]
        for asin, feat in zip(chunk["asin"], chunk["feat"]):
            row = wanted.get(asin.decode("ascii", errors="replace").strip())
            if row is not None and not found[row]:
                out[row] = feat
                found[row] = True
    if not np.isfinite(out).all():
        raise DataError(f"{path}: contains NaN or infinite values")
    return out, found


SEPARATORS = ("\t", ",", "|", ";", " ")


def sniff_separator(path: Path) -> str:
    """The column separator of a text table: the suffix's usual one (tab for .tsv/.tab/.inter,
    else comma) when the header line holds it, else the one candidate of ``SEPARATORS`` the
    header holds (a '|'-separated MovieLens log, a ';' CSV export)."""
    usual = "\t" if path.suffix in (".tsv", ".tab", ".inter") else ","
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline().rstrip("\r\n")
    except OSError:
        return usual
    if usual in header:
        return usual
    found = [s for s in SEPARATORS if s in header]
    return found[0] if found else usual


def read_table(path: Path, columns: dict[str, str | None], separator: str | None = None) -> pl.DataFrame:
    """A CSV/TSV/parquet table with the ``columns`` (our name -> file column; None = absent).
    ``separator``: the text column separator (default: :func:`sniff_separator`)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, separator=separator or sniff_separator(path), infer_schema_length=0)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise DataError(f"{path}: cannot read table ({str(err).splitlines()[0]})") from None
    missing = [f"{c!r}" for c in columns.values() if c is not None and c not in frame.columns]
    if missing:
        hint = " (give the column separator with --separator)" if len(frame.columns) == 1 else ""
        raise DataError(f"{path}: missing column {', '.join(missing)} (has: {', '.join(frame.columns)}){hint}")
    return frame.select([pl.col(src).alias(dst) for dst, src in columns.items() if src is not None])
