"""Tokenize corpora of any size into sharded token files, in parallel worker processes.

The work is cut into units: a whole file, or a byte range of a big uncompressed text/jsonl file
(`data.shard_mb`). Each unit becomes one shard, so the result does not depend on how many
workers ran, and an interrupted prepare keeps its finished shards and redoes only the rest.

Layout of `<cache_dir>/<key>/` (key: sources, reading options, filters, tokenizer, shard size):
  units.json            the plan: source, file and byte range of every shard
  shard-00012.bin       token ids of the shard's documents, each followed by one [SEP]
  shard-00012.idx.npy   int64 start of each document in the .bin, plus the end
  shard-00012.hash.npy  uint64 hash per document (only with filters.dedup)
  shard-00012.json      written last: counts, read problems, filter counts, sha256 = "done"
  manifest.json         written when all shards are done and deduplicated: the whole record
Nothing here imports torch, so worker processes start quickly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from encoderlab.config import CorpusSource, DataConfig, FilterConfig
from encoderlab.data.corpus import (
    FileReport,
    check_read_once,
    describe_sources,
    iter_source,
    require_readers,
    resolve_sources,
    splittable,
)
from encoderlab.errors import UserError, first_line
from encoderlab.tokenizer import special_ids, tokenizer_hash

CACHE_VERSION = 2
_ENCODE_BATCH = 1000
_SCRIPTS = {
    "hangul": "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af",
    "latin": "A-Za-z\u00c0-\u024f\u1e00-\u1eff",
    "han": "\u3400-\u4dbf\u4e00-\u9fff",
    "kana": "\u3040-\u30ff",
    "cyrillic": "\u0400-\u04ff",
    "arabic": "\u0600-\u06ff",
    "devanagari": "\u0900-\u097f",
    "thai": "\u0e00-\u0e7f",
}
_SCRIPT_RE = {name: re.compile(f"[{chars}]") for name, chars in _SCRIPTS.items()}
_LETTER = re.compile(r"[^\W\d_]")


# ---------------------------------------------------------------------------------------------
# Sources and the plan


def corpus_sources(data: DataConfig) -> list[CorpusSource]:
    """`data.corpus` (one unnamed corpus) and `data.sources` (named, maybe weighted) as one list."""
    out = list(data.sources)
    if data.corpus:
        out.insert(0, CorpusSource(name="corpus", files=list(data.corpus)))
    if not out:
        raise UserError(
            "no corpus: set data.corpus to a list of files or globs "
            "(e.g. --set 'data.corpus=[train.txt]'), or data.sources for a mix"
        )
    return out


def source_key(data: DataConfig, index: int) -> str:
    """The config key of corpus_sources(data)[index], for errors about its files."""
    if data.corpus:
        if index == 0:
            return "data.corpus"
        index -= 1
    return f"data.sources[{index}].files ({data.sources[index].name})"


def read_options(source: CorpusSource, data: DataConfig) -> dict[str, Any]:
    return {
        "text_field": source.text_field or data.text_field,
        "text_column": source.text_column if source.text_column is not None else data.text_column,
        "txt_unit": data.txt_unit,
        "fmt": source.format or data.format,
        "sheet": data.sheet,
    }


def describe_corpus(data: DataConfig) -> list[dict[str, Any]]:
    """Each source's files (path, size, mtime) and reading options: the corpus half of the key."""
    described = [
        {
            "name": s.name,
            "weight": s.weight,
            "files": describe_sources(s.files, read_options(s, data)["fmt"], source_key(data, i)),
            "read": read_options(s, data),
        }
        for i, s in enumerate(corpus_sources(data))
    ]
    files = [(f, d["read"]) for d in described for f in d["files"] if "path" in f]
    check_read_once(  # across sources: one file in two of them, read the same way
        [(Path(f["path"]), f.get("split")) for f, _ in files],
        "data.corpus / data.sources",
        reading=[json.dumps(read, sort_keys=True) for _, read in files],
    )
    return described


def cache_key(data: DataConfig, tok: Tokenizer, sources: list[dict[str, Any]] | None = None) -> str:
    """Changes when anything that changes the shards changes; worker count does not."""
    desc = {
        "sources": [
            {k: v for k, v in s.items() if k != "weight"}
            for s in (sources if sources is not None else describe_corpus(data))
        ],
        "max_documents": data.max_documents,
        "filters": data.filters.model_dump(),
        # 64 and 64.0 (the default, and the same value read back from a run's config.yaml)
        "shard_mb": int(data.shard_mb) if float(data.shard_mb).is_integer() else data.shard_mb,
        "tokenizer": tokenizer_hash(tok),
        "cache_version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]


def plan_units(data: DataConfig) -> list[dict[str, Any]]:
    """One unit per file, or per `shard_mb` byte range of a big splittable file."""
    piece = max(1, int(data.shard_mb * 2**20))
    units: list[dict[str, Any]] = []
    for si, source in enumerate(corpus_sources(data)):
        opts = read_options(source, data)
        for src in resolve_sources(source.files, opts["fmt"], source_key(data, si)):
            size = src.path.stat().st_size if src.kind == "file" and src.path else 0
            ranges: list[list[int] | None] = [None]
            if size > piece and splittable(src, opts["fmt"], opts["txt_unit"]):
                ranges = [[a, min(a + piece, size)] for a in range(0, size, piece)]
            for r in ranges:
                units.append(
                    {
                        "source": si,
                        "source_name": source.name,
                        "path": str(src),
                        "byte_range": r,
                        "bytes": (r[1] - r[0]) if r else size,
                        "read": opts,
                    }
                )
    return units


# ---------------------------------------------------------------------------------------------
# One unit -> one shard (runs in a worker process)

_worker_tok: Tokenizer | None = None


def _init_worker(tok_json: str, threads_per_worker: bool) -> None:
    global _worker_tok
    if not threads_per_worker:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    _worker_tok = Tokenizer.from_str(tok_json)


def keep_document(doc: str, filters: FilterConfig) -> str | None:
    """The reason a document is filtered out before tokenizing, or None to keep it."""
    n = len(doc)
    if n < filters.min_chars:
        return "too_short"
    if filters.max_chars is not None and n > filters.max_chars:
        return "too_long"
    if filters.script is not None and filters.min_script_ratio > 0:
        letters = len(_LETTER.findall(doc))
        in_script = len(_SCRIPT_RE[filters.script].findall(doc))
        if letters == 0 or in_script / letters < filters.min_script_ratio:
            return "script"
    return None


def doc_hash(doc: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc.encode("utf-8"), digest_size=8).digest(), "little")


def _batched(items: Iterator[str], n: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def tokenize_unit(
    unit: dict[str, Any], index: int, root: str, filters: dict[str, Any], max_docs: int | None
) -> dict[str, Any]:
    """Read, filter and tokenize one unit into shard `index`; returns what its .json records.
    A unit that fails (a full disk, a bad line) leaves no temporary files taking space."""
    try:
        return _tokenize_unit(unit, index, root, filters, max_docs)
    except BaseException:
        for tmp in Path(root).glob(f"shard-{index:05d}.*tmp*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


def _tokenize_unit(
    unit: dict[str, Any], index: int, root: str, filters: dict[str, Any], max_docs: int | None
) -> dict[str, Any]:
    tok = _worker_tok
    assert tok is not None, "call _init_worker first"
    flt = FilterConfig(**filters)
    ids = special_ids(tok)
    sep, unk = ids["sep"], ids["unk"]
    dtype = np.uint16 if tok.get_vocab_size() <= np.iinfo(np.uint16).max else np.uint32
    stem = Path(root) / f"shard-{index:05d}"
    report = FileReport(path=unit["path"])
    dropped: dict[str, int] = {}
    n_read = n_docs = n_tokens = n_unk = 0
    digest = hashlib.sha256()
    t0 = time.perf_counter()

    def kept_documents() -> Iterator[str]:
        nonlocal n_read
        for doc in iter_source(
            unit["path"], **unit["read"], report=report, byte_range=unit["byte_range"]
        ):
            n_read += 1
            reason = keep_document(doc, flt)
            if reason is None:
                yield doc
            else:
                dropped[reason] = dropped.get(reason, 0) + 1
            if max_docs is not None and n_read >= max_docs:
                return

    # Tokens, document ends and hashes stream to disk batch by batch: a unit can be a whole
    # multi-GB compressed file, whose document index alone would not fit in a Python list.
    with (
        open(f"{stem}.bin.tmp", "wb") as f,
        open(f"{stem}.ends.tmp", "wb") as f_ends,
        open(f"{stem}.hash.tmp", "wb") as f_hash,
    ):
        for batch in _batched(kept_documents(), _ENCODE_BATCH):
            flat: list[int] = []  # one numpy conversion per batch, not per document
            lengths: list[int] = []
            hashes: list[int] = []
            encs = tok.encode_batch(batch, add_special_tokens=False)
            for doc, enc in zip(batch, encs, strict=True):
                tokens = enc.ids
                if not tokens:
                    dropped["no_tokens"] = dropped.get("no_tokens", 0) + 1
                    continue
                if flt.min_chars_per_token and len(doc) / len(tokens) < flt.min_chars_per_token:
                    dropped["junk"] = dropped.get("junk", 0) + 1
                    continue
                flat.extend(tokens)
                flat.append(sep)
                lengths.append(len(tokens) + 1)
                if flt.dedup:
                    hashes.append(doc_hash(doc))
            if flat:
                arr = np.array(flat, dtype=dtype)
                n_unk += int(np.count_nonzero(arr == unk))
                data = arr.tobytes()
                digest.update(data)
                f.write(data)
                ends = n_tokens + np.cumsum(np.asarray(lengths, dtype=np.int64))
                f_ends.write(ends.tobytes())
                f_hash.write(np.asarray(hashes, dtype=np.uint64).tobytes())
                n_tokens, n_docs = int(ends[-1]), n_docs + len(lengths)
    _to_npy(f"{stem}.ends.tmp", f"{stem}.idx.npy", np.int64, n_docs, first=0)
    if flt.dedup:
        _to_npy(f"{stem}.hash.tmp", f"{stem}.hash.npy", np.uint64, n_docs)
    else:
        os.remove(f"{stem}.hash.tmp")
    os.replace(f"{stem}.bin.tmp", f"{stem}.bin")
    result = {
        "index": index,
        "source": unit["source"],
        "source_name": unit["source_name"],
        "path": unit["path"],
        "byte_range": unit["byte_range"],
        "bytes": unit["bytes"],
        "dtype": np.dtype(dtype).name,
        "documents_read": n_read,
        "docs": n_docs,
        "tokens": n_tokens,
        "unk": n_unk,
        "dropped": dropped,
        "report": asdict(report),
        "sha256": digest.hexdigest(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    _write_json(Path(f"{stem}.json"), result)
    return result


def _to_npy(raw: str, out: str, dtype: Any, n: int, first: int | None = None) -> None:
    """A raw little file of n values -> .npy (with `first` prepended), copied in chunks."""
    lead = 0 if first is None else 1
    arr = np.lib.format.open_memmap(out + ".tmp.npy", mode="w+", dtype=dtype, shape=(n + lead,))
    if lead:
        arr[0] = first
    if n:
        src = np.memmap(raw, dtype=dtype, mode="r", shape=(n,))
        step = 1 << 22
        for a in range(0, n, step):
            arr[lead + a : lead + min(a + step, n)] = src[a : a + step]
        del src
    arr.flush()
    del arr
    os.replace(out + ".tmp.npy", out)
    os.remove(raw)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The whole corpus


def prepare_shards(
    data: DataConfig,
    tok: Tokenizer,
    log: Callable[[str], None] = print,
    workers: int | None = None,
) -> Path:
    """Return the directory of this corpus's shards, tokenizing whatever is not done yet."""
    for flag, n in (("--workers", workers), ("data.prepare_workers", data.prepare_workers)):
        if n is not None and n < 1:
            raise UserError(f"{flag}={n}: give 1 or more tokenizing processes")
    sources = describe_corpus(data)  # once: a file may vanish while we work
    key = cache_key(data, tok, sources)
    root = Path(data.cache_dir) / key
    if (root / "manifest.json").is_file():
        return _intact(root)
    for i, source in enumerate(corpus_sources(data)):  # before anything is made
        require_readers(source.files, read_options(source, data)["fmt"], source_key(data, i))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileNotFoundError, NotADirectoryError, FileExistsError) as e:
        raise UserError(
            f"data.cache_dir={data.cache_dir}: cannot make {root} there ({e.strerror}); set "
            "data.cache_dir to a folder that can be made"
        ) from None
    with _exclusive(root / ".lock"):  # two runs sharing a cache: one tokenizes, one waits
        if (root / "manifest.json").is_file():
            return _intact(root)
        return _prepare(data, tok, log, workers, root, key, sources)


def _intact(root: Path) -> Path:
    """A finished token cache, checked against its manifest before a run reads it: a cut
    short shard or a damaged manifest or index is one line, not a traceback mid-run."""
    try:
        shards = json.loads((root / "manifest.json").read_text(encoding="utf-8"))["shards"]
        for i, shard in enumerate(shards):
            tokens = root / f"shard-{i:05d}.bin"
            want = int(shard["tokens"]) * np.dtype(shard["dtype"]).itemsize
            have = tokens.stat().st_size if tokens.exists() else -1
            if have != want and want:
                raise ValueError(f"{tokens.name} has {have:,} bytes, the manifest says {want:,}")
            if not want:
                continue
            offsets = np.load(root / f"shard-{i:05d}.idx.npy", mmap_mode="r")
            if offsets.ndim != 1 or len(offsets) < 1:
                raise ValueError(f"shard-{i:05d}.idx.npy is not an index")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{root}: the token cache is damaged ({first_line(e)}); delete that folder and run "
            "again (it is rebuilt from the corpus)"
        ) from None
    return root


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no locking; runs sharing a cache must not prepare at once
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _prepare(data, tok, log, workers, root, key, sources) -> Path:
    units = plan_units(data)
    _write_json(root / "units.json", {"key": key, "units": units})
    results: dict[int, dict[str, Any]] = {}
    for i in range(len(units)):
        done = _finished_shard(root, i)
        if done is not None:
            results[i] = done
    todo = [i for i in range(len(units)) if i not in results]
    n_workers = workers if workers is not None else data.prepare_workers
    if n_workers is None:
        n_workers = min(os.cpu_count() or 1, 8)
    n_workers = max(1, min(n_workers, len(todo) or 1))
    if results:
        log(f"resuming: {len(results)} of {len(units)} shards already tokenized in {root}")
    t0 = time.perf_counter()
    args = (str(root), data.filters.model_dump(), data.max_documents)
    total_bytes = sum(units[i]["bytes"] for i in todo)
    with _Bar(total_bytes, f"tokenize ({_workers(n_workers)})") as bar:
        try:
            if n_workers == 1:
                _init_worker(tok.to_str(), threads_per_worker=True)
                for i in todo:
                    results[i] = tokenize_unit(units[i], i, *args)
                    bar.advance(units[i]["bytes"], results[i]["tokens"])
            else:
                _run_pool(units, todo, args, tok, n_workers, results, bar)
        except KeyboardInterrupt:
            done = sum((root / f"shard-{i:05d}.json").is_file() for i in range(len(units)))
            log(
                f"interrupted: {done} of {len(units)} shards are done and kept in "
                f"{root}; run the same command again to tokenize the rest"
            )
            raise
    seconds = time.perf_counter() - t0
    manifest = _finalize(root, key, data, tok, units, results, sources, log)
    manifest["prepare_seconds"] = round(seconds, 2)
    manifest["workers"] = n_workers
    _write_json(root / "manifest.json", manifest)
    t = manifest["totals"]
    text_tokens = t["tokens"] - t["docs"]  # without the [SEP] after each, as corpus stats counts
    log(
        f"tokenized {t['docs']:,} documents into {text_tokens:,} tokens in {len(units)} shards, "
        f"{seconds:.1f}s ({text_tokens / max(seconds, 1e-9):,.0f} tokens/s, {_workers(n_workers)})"
    )
    return root


def _workers(n: int) -> str:
    return f"{n} worker{'s' if n > 1 else ''}"


def _run_pool(units, todo, args, tok, n_workers, results, bar) -> None:
    """Tokenize `todo` units in worker processes, largest first.

    Workers ignore Ctrl-C; the main process stops them (terminate) and keeps what finished.
    """
    order = sorted(todo, key=lambda i: -_work(units[i]))
    ctx = get_context("spawn")  # forking a process that already ran tokenizers' threads is unsafe
    jobs = [(units[i], i, *args) for i in order]
    with _spawn_without_main():
        pool = ctx.Pool(n_workers, initializer=_init_worker, initargs=(tok.to_str(), False))
    with pool:
        for rec in pool.imap_unordered(_tokenize_job, jobs):
            results[rec["index"]] = rec
            bar.advance(rec["bytes"], rec["tokens"])


@contextlib.contextmanager
def _spawn_without_main() -> Iterator[None]:
    """Spawned workers import the parent's `__main__` script first; a user's script without
    `if __name__ == "__main__":` (the README's API snippets) would run again in each worker,
    start its own runs and die, and the pool would wait on it forever. The workers need only
    this module, so while they start the main module shows no file to import."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None  # spawn reads it: None means no module to import
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _work(unit: dict[str, Any]) -> float:
    """Rough size of a unit's text: compressed files hold about four times their bytes."""
    compressed = Path(unit["path"]).suffix.lower() in (".gz", ".bz2", ".xz", ".zst")
    return unit["bytes"] * (4 if compressed else 1)


def _tokenize_job(job: tuple) -> dict[str, Any]:
    return tokenize_unit(*job)


def _finished_shard(root: Path, i: int) -> dict[str, Any] | None:
    """The shard's record if it is complete and its files agree with it; else None (redo)."""
    stem = root / f"shard-{i:05d}"
    try:
        rec = json.loads(Path(f"{stem}.json").read_text())
        offsets = np.load(f"{stem}.idx.npy", mmap_mode="r")
        itemsize = np.dtype(rec["dtype"]).itemsize
        if (
            os.path.getsize(f"{stem}.bin")
            == rec["tokens"] * itemsize
            == int(offsets[-1]) * itemsize
        ):
            return rec
    except (OSError, ValueError, KeyError):
        pass
    return None


def _finalize(root, key, data, tok, units, results, sources, log) -> dict[str, Any]:
    """Drop duplicates across shards and documents past max_documents; write the record."""
    n = len(units)
    keep = [None] * n
    if data.filters.dedup:
        hashes = [np.load(root / f"shard-{i:05d}.hash.npy") for i in range(n)]
        flat = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        _, first = np.unique(flat, return_index=True)
        mask = np.zeros(len(flat), dtype=bool)
        mask[first] = True
        bounds = np.cumsum([0] + [len(h) for h in hashes])
        keep = [mask[bounds[i] : bounds[i + 1]] for i in range(n)]
        del flat, mask, hashes
    if data.max_documents is not None:
        seen = 0
        for i in range(n):
            k = np.ones(results[i]["docs"], bool) if keep[i] is None else keep[i]
            room = max(0, data.max_documents - seen)
            idx = np.flatnonzero(k)
            k = k.copy()
            k[idx[room:]] = False
            seen += min(room, len(idx))
            keep[i] = k
    for i in range(n):
        k = keep[i]
        if k is not None and not k.all():
            results[i] = _compact(root, i, results[i], k, data.filters.dedup, tok)
    totals = {
        "docs": sum(r["docs"] for r in results.values()),
        "tokens": sum(r["tokens"] for r in results.values()),
        "unk": sum(r["unk"] for r in results.values()),
        "documents_read": sum(r["documents_read"] for r in results.values()),
        "bytes": sum(u["bytes"] for u in units),
    }
    if totals["docs"] == 0:
        raise UserError(_empty_message(data, results))
    problems = merge_reports(results)
    for rep in problems.values():
        log(f"warning: {rep['summary']}")
    dropped: dict[str, int] = {}
    for r in results.values():
        for k, v in r["dropped"].items():
            dropped[k] = dropped.get(k, 0) + v
    return {
        "key": key,
        "cache_version": CACHE_VERSION,
        "tokenizer_hash": tokenizer_hash(tok),
        "vocab_size": tok.get_vocab_size(),
        "special_ids": special_ids(tok),
        "sources": sources,
        "filters": data.filters.model_dump(),
        "max_documents": data.max_documents,
        "totals": totals,
        "dropped": dropped,
        "problems": problems,
        "shards": [
            {
                k: results[i][k]
                for k in (
                    "index",
                    "source",
                    "source_name",
                    "path",
                    "byte_range",
                    "dtype",
                    "docs",
                    "tokens",
                    "unk",
                    "sha256",
                )
            }
            for i in range(n)
        ],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _compact(root: Path, i: int, rec: dict[str, Any], keep: np.ndarray, dedup: bool, tok) -> dict:
    """Rewrite shard i with only the kept documents (idempotent: safe to redo after a crash)."""
    stem = root / f"shard-{i:05d}"
    dtype = np.dtype(rec["dtype"])
    offsets = np.load(f"{stem}.idx.npy")
    tokens = np.fromfile(f"{stem}.bin", dtype=dtype)
    lengths = np.diff(offsets)
    new_tokens = tokens[np.repeat(keep, lengths)]
    new_offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    n_removed = int((~keep).sum())
    new_tokens.tofile(f"{stem}.bin.tmp")
    np.save(f"{stem}.idx.tmp.npy", new_offsets, allow_pickle=False)
    if dedup:
        np.save(f"{stem}.hash.tmp.npy", np.load(f"{stem}.hash.npy")[keep], allow_pickle=False)
    Path(f"{stem}.json").unlink()  # from here until the new record exists, the shard is "not done"
    os.replace(f"{stem}.bin.tmp", f"{stem}.bin")
    os.replace(f"{stem}.idx.tmp.npy", f"{stem}.idx.npy")
    if dedup:
        os.replace(f"{stem}.hash.tmp.npy", f"{stem}.hash.npy")
    unk = special_ids(tok)["unk"]
    rec = {
        **rec,
        "docs": len(new_offsets) - 1,
        "tokens": int(new_offsets[-1]),
        "unk": int(np.count_nonzero(new_tokens == unk)),
        "sha256": hashlib.sha256(new_tokens.tobytes()).hexdigest(),
        "dropped": {**rec["dropped"], "duplicate_or_over_max": n_removed},
    }
    _write_json(Path(f"{stem}.json"), rec)
    return rec


def merge_reports(results: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Read problems per file (a file split into ranges has one report per range)."""
    by_file: dict[str, FileReport] = {}
    for i in sorted(results):
        rep = FileReport(**results[i]["report"])
        if rep.path in by_file:
            by_file[rep.path].merge(rep)
        else:
            by_file[rep.path] = rep
    return {
        path: {**asdict(rep), "summary": rep.summary()}
        for path, rep in by_file.items()
        if rep.n_problems
    }


def _empty_message(data: DataConfig, results: dict[int, dict[str, Any]]) -> str:
    read = sum(r["documents_read"] for r in results.values())
    dropped: dict[str, int] = {}
    for r in results.values():
        for k, v in r["dropped"].items():
            dropped[k] = dropped.get(k, 0) + v
    named = [
        ", ".join(s.files) if s.name == "corpus" else f"source {s.name} ({', '.join(s.files)})"
        for s in corpus_sources(data)
    ]
    names = "; ".join(named)
    if read == 0:  # what reading skipped says why (a UTF-16 file: every line non-UTF-8)
        problems = [r["summary"] for r in merge_reports(results).values()]
        why = f" ({problems[0]}{'; ...' if len(problems) > 1 else ''})" if problems else ""
        return f"{names}: no documents found{why}; check the files and the names given (data.corpus or --corpus, data.sources)"
    why = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(dropped.items()))
    return (
        f"corpus {names}: all {read:,} documents were filtered out ({why}); "
        "loosen data.filters (min_chars, max_chars, min_script_ratio, min_chars_per_token)"
    )


class _Bar:
    """Bytes-of-source progress with tokens/s and ETA on a terminal; silent otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.bar, self.tokens, self.t0 = total, label, None, 0, 0.0

    def __enter__(self) -> _Bar:
        self.t0 = time.perf_counter()
        if sys.stderr.isatty() and self.total:
            from rich.console import Console
            from rich.progress import Progress

            from encoderlab.runtime import bar_columns

            columns = bar_columns(self.label, bytes_done=True)
            self.bar = Progress(*columns, console=Console(stderr=True))
            self.task = self.bar.add_task("tok", total=self.total, info="")
            self.bar.start()
        return self

    def advance(self, n_bytes: int, n_tokens: int) -> None:
        self.tokens += n_tokens
        if self.bar is not None:
            rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, advance=n_bytes, info=f"{rate:,.0f} tok/s")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---------------------------------------------------------------------------------------------
# Reading shards back


class ShardStore:
    """Read-only view of prepared shards; token files are memory-mapped on first use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.manifest = json.loads((self.path / "manifest.json").read_text())
        self.shards = self.manifest["shards"]
        self._tokens: dict[int, np.ndarray] = {}
        self._offsets: dict[int, np.ndarray] = {}

    @property
    def n_docs(self) -> int:
        return int(self.manifest["totals"]["docs"])

    @property
    def content_digest(self) -> str:
        """What the tokens are, whatever the files' paths and times (the cache key's): a
        resume compares it to tell a touched corpus from a changed one."""
        parts = [(s["source_name"], s["sha256"], s["docs"], s["tokens"]) for s in self.shards]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["totals"]["tokens"])

    def tokens(self, i: int) -> np.ndarray:
        arr = self._tokens.get(i)
        if arr is None:
            n = self.shards[i]["tokens"]
            dtype = np.dtype(self.shards[i]["dtype"])
            path = self.path / f"shard-{i:05d}.bin"
            arr = np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
            self._tokens[i] = arr
        return arr

    def offsets(self, i: int) -> np.ndarray:
        arr = self._offsets.get(i)
        if arr is None:
            arr = np.load(self.path / f"shard-{i:05d}.idx.npy", mmap_mode="r")
            self._offsets[i] = arr
        return arr

    def __getstate__(self) -> dict[str, Any]:  # memmaps are reopened in each DataLoader worker
        return {**self.__dict__, "_tokens": {}, "_offsets": {}}


def corpus_stats(store: ShardStore, bins: int = 12) -> dict[str, Any]:
    """Documents, tokens, unknown-token rate, and a log2 histogram of document length.

    Shard by shard, so memory does not grow with the number of documents.
    """
    counts = np.zeros(1, np.int64)  # documents per length in tokens
    for i in range(len(store.shards)):
        lengths = np.diff(np.asarray(store.offsets(i))) - 1  # minus the [SEP] after each
        found = np.bincount(lengths)
        if len(found) > len(counts):
            counts = np.pad(counts, (0, len(found) - len(counts)))
        counts[: len(found)] += found
    n = int(counts.sum())
    lengths = np.arange(len(counts))
    edges = [2**k for k in range(bins + 1)]
    where = np.clip(np.searchsorted(edges, np.maximum(lengths, 1), side="right") - 1, 0, bins - 1)
    hist = np.bincount(where, weights=counts, minlength=bins)
    median = int(np.searchsorted(np.cumsum(counts), (n + 1) // 2)) if n else 0
    by_source: dict[str, dict[str, Any]] = {}
    for s in store.shards:
        acc = by_source.setdefault(s["source_name"], {"docs": 0, "tokens": 0, "unk": 0})
        for k in ("docs", "unk"):
            acc[k] += s[k]
        acc["tokens"] += s["tokens"] - s["docs"]  # as the totals: without each [SEP]
    for acc in by_source.values():  # a Korean source under an English vocabulary shows here
        acc["unk_rate"] = acc["unk"] / max(acc["tokens"], 1)
    t = store.manifest["totals"]
    return {
        "docs": t["docs"],
        "tokens": t["tokens"] - t["docs"],  # without the [SEP] after each document
        "unk_rate": t["unk"] / max(t["tokens"] - t["docs"], 1),
        "mean_len": float((lengths * counts).sum() / n) if n else 0.0,
        "median_len": float(median),
        "histogram": [
            {"from": edges[k], "to": edges[k + 1] - 1, "docs": int(c)} for k, c in enumerate(hist)
        ],
        "by_source": by_source,
        "dropped": store.manifest.get("dropped", {}),
        "documents_read": t["documents_read"],
        "problems": store.manifest.get("problems", {}),
        "shards": len(store.shards),
    }


def format_stats(stats: dict[str, Any], path: Path) -> str:
    lines = [
        f"corpus shards: {path}",
        f"documents {stats['docs']:,} (read {stats['documents_read']:,})  "
        f"tokens {stats['tokens']:,}  unknown-token rate {stats['unk_rate']:.4%}  "
        f"shards {stats['shards']}",
        f"tokens per document: mean {stats['mean_len']:.1f}  median {stats['median_len']:.0f}",
    ]
    if len(stats["by_source"]) > 1:
        for name, s in stats["by_source"].items():
            lines.append(
                f"  source {name}: {s['docs']:,} documents, {s['tokens']:,} tokens, "
                f"unknown-token rate {s['unk_rate']:.4%}"
            )
    if stats["dropped"]:
        why = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(stats["dropped"].items()))
        lines.append(f"filtered out: {why}")
    for rep in stats["problems"].values():
        lines.append(f"problem: {rep['summary']}")
    peak = max((h["docs"] for h in stats["histogram"]), default=0)
    lines.append("length histogram (tokens per document):")
    for h in stats["histogram"]:
        if h["docs"] == 0:
            continue
        bar = "#" * max(1, math.ceil(40 * h["docs"] / max(peak, 1)))
        lines.append(f"  {h['from']:>6}-{h['to']:<6} {h['docs']:>10,}  {bar}")
    return "\n".join(lines)
