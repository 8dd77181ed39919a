"""`encoderlab embed`: one vector per text from any encoder here, for search, clustering,
deduplication or features for another model.

The source is a pretraining run, a fine-tuning run (its encoder, without the task's head) or
`hf:` (a sentence-transformers model such as all-MiniLM-L6-v2 is a BERT encoder whose vectors
are its mean-pooled states). Pooling is the mean over the text's tokens ([CLS] and [SEP]
included, as sentence-transformers pools) or the [CLS] state; vectors are L2-normalised by
default, so a dot product is the cosine similarity. Texts are sorted by length into batches
(little padding) and come back in their input order; a text longer than the encoder's
max_len is cut, and said.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import TaskConfig
from encoderlab.data.tables import HALF_PAIR, NOT_UNICODE, lone_surrogate, plain_name, read_text
from encoderlab.errors import UserError
from encoderlab.runtime import autocast, autocast_dtype, resolve_device
from encoderlab.tokenizer import special_ids

POOLINGS = ("mean", "cls")
OUTPUTS = (".npy", ".jsonl")  # what --output writes, by the name's suffix


@dataclass
class Embedder:
    """An encoder and its tokenizer, loaded once to embed many texts."""

    encoder: nn.Module
    tokenizer: Tokenizer
    max_len: int
    dim: int
    device: torch.device
    source: str
    pooling: str = "mean"  # the model's own (a sentence-transformers folder says), else mean

    def embed(
        self,
        texts: Sequence[str],
        pooling: str | None = None,
        normalize: bool = True,
        batch_size: int = 64,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[int]]:
        """(float32 array (len(texts), dim) in the texts' order, the indices of the texts
        whose end was cut at max_len); `pooling` None: the model's own."""
        pooling = pooling or self.pooling
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise UserError(f"texts[{bad}] is {type(texts[bad]).__name__}, not a string")
        if (at := lone_surrogate(list(texts))) is not None:
            raise UserError(f"texts{at.strip(chr(39))} is {NOT_UNICODE}")
        if pooling not in POOLINGS:
            raise UserError(f"pooling: '{pooling}' is not one of {', '.join(POOLINGS)}")
        ids = self._encode(texts)
        cut = [i for i, x in enumerate(ids) if len(x) > self.max_len - 2]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        amp = autocast_dtype("auto", self.device)
        from encoderlab.inference import _RowsBar

        bar = _RowsBar(len(ids) if progress else 0, "embed", "texts")
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    vectors = self._pooled([ids[i] for i in rows], pooling, amp)
                    if normalize:
                        vectors = torch.nn.functional.normalize(vectors, dim=-1)
                    out[rows] = vectors.float().cpu().numpy()
                    bar.advance(len(rows))
        finally:
            bar.close()
        if not np.isfinite(out).all():
            raise UserError(
                f"{self.source}: the encoder's vectors are not finite numbers (NaN or inf): its "
                "weights are damaged (a diverged run, a bad copy); retrain it, or use another run"
            )
        return out, cut

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self.tokenizer.encode_batch([str(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encodings]

    def _pooled(self, rows: list[list[int]], pooling: str, amp: torch.dtype | None) -> torch.Tensor:
        sp = special_ids(self.tokenizer)
        keep = self.max_len - 2
        seqs = [[sp["cls"], *r[:keep], sp["sep"]] for r in rows]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), sp["pad"], dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for k, s in enumerate(seqs):
            input_ids[k, : len(s)] = torch.tensor(s)
            mask[k, : len(s)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        with autocast(self.device, amp):
            hidden = self.encoder(input_ids, mask, torch.zeros_like(input_ids)).float()
        if pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def _for_embed(text: str) -> str:
    """import_checkpoint's wording for embed, which has no `init:` and no `--set` opt-ins."""
    from encoderlab.hf import PICKLE_OPT_IN, TRUST_OPT_IN

    text = text.removeprefix("init: ").replace("point init at", "give").replace("init=hf:", "hf:")
    text = text.replace(f", or opt in with {PICKLE_OPT_IN}", "")
    trust = f" If you trust that code, opt in with {TRUST_OPT_IN} (hf_trust_remote_code: true in the config)"
    return text.replace(
        trust,
        " embed loads no checkpoint's own code (fine-tuning may, with hf_trust_remote_code: true)",
    )


def load_embedder(source: str, say: Callable[[str], None] = print) -> Embedder:
    """The encoder of a run directory (pretraining or fine-tuning) or of `hf:<name or dir>`."""
    from encoderlab.hf import import_checkpoint, run_encoder
    from encoderlab.model import without_init
    from encoderlab.runs import (
        Run,
        check_tokenizer_fits,
        load_encoder_weights,
        run_checkpoint,
        run_model_config,
    )
    from encoderlab.tokenizer import load_tokenizer

    source = source.strip()
    pooling, max_len = "mean", None
    if source.startswith("hf:"):
        try:
            imp = import_checkpoint(source.removeprefix("hf:"), say)
        except UserError as e:  # its messages speak of fine-tuning's `init:` and `--set`
            raise UserError(_for_embed(str(e))) from None
        encoder, tok, model_cfg, where = imp.encoder, imp.tokenizer, imp.model_cfg, imp.source
        name = source.removeprefix("hf:").strip()
        folder = Path(name).expanduser()
        folder = folder if folder.is_dir() else _hub_settings_folder(name)
        if folder is not None:
            pooling, max_len, skipped = sentence_transformers_settings(folder)
            if skipped:
                say(
                    f"warning: {source} is a sentence-transformers model with "
                    f"{' and '.join(skipped)}, which embed does not apply: these vectors are "
                    f"its encoder's {pooling}-pooled states, not the model's own"
                )
    else:
        if not Path(source).is_dir():
            raise UserError(
                f"{source}: no such run directory; give a run (runs/<name>) or hf:<model>"
            )
        run = Run.open(source)
        tok = load_tokenizer(run.path / "tokenizer")
        model_cfg = run_model_config(run)
        check_tokenizer_fits(run, tok.get_vocab_size(), model_cfg)
        with without_init():  # every weight is loaded below
            encoder = run_encoder(run, model_cfg)
        ckpt = run_checkpoint(run)
        load_encoder_weights(encoder, ckpt)
        where = f"{run.path}@{ckpt.name}"
        max_len = None  # a fine-tuning run read at most task.max_len tokens: its config says
        if str(run.info.get("kind", "")).startswith("finetune"):
            max_len = _finetuned_length(run.path)
    device = resolve_device("auto")
    encoder.to(device).eval()
    limit = min(int(model_cfg.max_len), max_len or int(model_cfg.max_len))
    return Embedder(encoder, tok, limit, int(model_cfg.d_model), device, where, pooling)


# what sentence_transformers_settings reads, fetched for a hub name as transformers fetches
# the model's own files (into the Hugging Face cache; HF_HUB_OFFLINE=1 reads only the cache)
SETTINGS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "tokenizer_config.json",
)


def _hub_settings_folder(name: str) -> Path | None:
    """The cache folder of a hub model's snapshot holding its embedding settings, None when
    it has none (a plain BERT) or the hub has none to give: all-MiniLM-L6-v2 by name was
    mean-pooled over 512 tokens, not its own 256; a [CLS]-pooled model (BGE) mean-pooled."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    folder = None
    for filename in SETTINGS_FILES:
        try:
            path = Path(hf_hub_download(name, filename))
        except Exception:  # not in this model (most have no 1_Pooling/), or not reachable
            continue
        folder = path.parents[filename.count("/")]
    return folder


def _finetuned_length(run_dir: Path) -> int:
    """A fine-tuning run's task.max_len (the longest input its encoder was trained on); a
    config that cannot say it is an error, as `predict` makes it, not a silent other length."""
    from encoderlab.config import FinetuneConfig, load_config

    return int(load_config(run_dir / "config.yaml", schema=FinetuneConfig).task.max_len)


def sentence_transformers_settings(folder: Path) -> tuple[str, int | None, list[str]]:
    """(pooling, max tokens, what is not applied) a sentence-transformers folder records
    (1_Pooling/config.json, sentence_bert_config.json, modules.json: all-MiniLM-L6-v2
    mean-pools 256 tokens, then normalises; without a sentence-transformers length, the
    tokenizer's model_max_length), so its vectors are the ones its model card gives;
    a pooling mode other than mean or [CLS], or a module after pooling other than Normalize
    (a Dense projection), is named, since these vectors then are not that model's. ("mean",
    None, []) for any other checkpoint. Read as JSON data, nothing executed."""
    import json

    def read(name: str) -> Any:
        try:
            return json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    pool = read("1_Pooling/config.json")
    pool = pool if isinstance(pool, dict) else {}
    modes = [
        k.removeprefix("pooling_mode_")
        for k, v in pool.items()
        if k.startswith("pooling_mode_") and v
    ]
    pooling = "cls" if "cls_token" in modes else "mean"
    skipped = [f"{m} pooling" for m in modes if m not in ("cls_token", "mean_tokens")]
    if {"cls_token", "mean_tokens"} <= set(modes):  # sentence-transformers joins the two
        skipped.append("[CLS] and mean pooling joined end to end")
    modules = read("modules.json")
    for m in modules if isinstance(modules, list) else []:
        kind = str(m.get("type", "")) if isinstance(m, dict) else ""
        if kind and not kind.endswith((".Transformer", ".Pooling", ".Normalize")):
            skipped.append(f"its {kind.rsplit('.', 1)[-1]} module")
    config = read("sentence_bert_config.json")
    length = config.get("max_seq_length") if isinstance(config, dict) else None
    if not isinstance(length, int) or length <= 2:  # else the tokenizer's own limit (an
        tokenizer = read("tokenizer_config.json")  # export's is the run's task.max_len)
        length = tokenizer.get("model_max_length") if isinstance(tokenizer, dict) else None
    return pooling, length if isinstance(length, int) and 2 < length < 10**6 else None, skipped


# what `embed --input` reads (compressed too), by the name without a compression suffix
INPUTS = (".txt", ".csv", ".tsv", ".jsonl", ".json", ".parquet", ".pq", ".xlsx", ".xlsm")


def read_texts(path: str, text_column: str) -> tuple[list[str], list[str]]:
    """(ids, texts) of every row of a file, in order: a .txt file's lines (ids are line
    numbers), else a table's `text_column` (ids: its `id` column, else row numbers). No row
    is skipped, an empty text included, so row i of the vectors is row i of the file; a cell
    that is not text (missing, null, a number, a list) is an error at its row."""
    from encoderlab.tasks.records import is_dataset_source, read_records

    name = plain_name(path)
    if not is_dataset_source(path) and not Path(path).is_dir() and not name.endswith(INPUTS):
        raise UserError(
            f"{path}: embed reads .txt (a text per line), .csv, .tsv, .jsonl, .json, .parquet "
            "or .xlsx files (compressed too), or a save_to_disk folder; convert the file"
        )
    if name.endswith(".txt"):
        return _lines(Path(path))
    _one_split(path)
    rows = read_records(path, TaskConfig(text_column=text_column, format="auto"))
    if rows and text_column not in rows[0][1]:
        fields = ", ".join(map(str, rows[0][1]))
        raise UserError(
            f"{path}: no column '{text_column}' (columns: {fields}); give --text-column"
        )
    texts = []
    for line, row in rows:
        value = row.get(text_column)
        if value is None or isinstance(value, (list, tuple, dict, bool)):
            what = "missing" if value is None else f"a {type(value).__name__}"
            raise UserError(
                f"{path}:{line}: the '{text_column}' cell is {what}, not a text; give every "
                "row a text (an empty one is embedded as such)"
            )
        if lone_surrogate(value) is not None:
            raise UserError(f"{path}:{line}: '{text_column}' {HALF_PAIR}")
        texts.append(str(value))  # a number reads as its text, as the task readers read it
    return [str(row.get("id", n)) for n, row in rows], texts


def _one_split(path: str) -> None:
    """A DatasetDict folder named without `::split` would be read at its train split alone."""
    from encoderlab.tasks.records import datasetdict_splits

    splits = None if "::" in path else datasetdict_splits(Path(path.removeprefix("hf:")))
    if splits is not None and len(splits) > 1:
        raise UserError(
            f"{path}: a DatasetDict with the splits {', '.join(splits)}; name the one to embed: "
            f"--input {path}::<split>"
        )


def _lines(path: Path) -> tuple[list[str], list[str]]:
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [str(i) for i in range(1, len(lines) + 1)], [ln.removesuffix("\r") for ln in lines]


def write_vectors(path: Path, ids: list[str], vectors: np.ndarray) -> None:
    """.npy: the (N, dim) float32 matrix, row i for input row i; .jsonl: {"id", "embedding"}
    per line. Through a temp file, so a kill never leaves half a file."""
    from encoderlab.inference import write_jsonl

    if path.suffix.lower() == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.save(f, vectors)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    rows = [
        {"id": i, "embedding": [round(float(x), 6) for x in v]}
        for i, v in zip(ids, vectors, strict=True)
    ]
    write_jsonl(path, rows)


def check_output(output: str) -> Path:
    out = Path(output)
    if out.suffix.lower() not in OUTPUTS:
        raise UserError(
            f"--output {output}: embed writes .npy (the matrix, row i for input row i) or "
            ".jsonl (an id and its vector per line); give one of those"
        )
    if len(out.name.encode()) > 240:  # its temp file's name must fit the file system's 255
        raise UserError(
            f"--output: a file name of {len(out.name.encode())} bytes; give a shorter one"
        )
    if out.is_dir():
        raise UserError(f"--output {output} is a folder; give a file name (.npy or .jsonl)")
    return out


def similarity_table(texts: list[str], vectors: np.ndarray) -> list[str]:
    """Cosine similarities of a few --text inputs, as lines to print."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    lines = [f"[{i + 1}] {t}" for i, t in enumerate(texts)]
    lines.append("cosine similarity:")
    head = "      " + "".join(f"{f'[{j + 1}]':>8}" for j in range(len(texts)))
    lines.append(head)
    for i in range(len(texts)):
        lines.append(
            f"{f'[{i + 1}]':>6}" + "".join(f"{sims[i, j]:8.3f}" for j in range(len(texts)))
        )
    return lines


def embed_command(
    source: str,
    texts: list[str] | None,
    input_path: str | None,
    output: str | None,
    text_column: str = "text",
    pooling: str | None = None,
    normalize: bool = True,
    batch_size: int = 64,
    say: Callable[[str], None] = print,
) -> np.ndarray:
    """`encoderlab embed`: every check that needs no model first, then load, embed, write."""
    import json

    if texts is not None and input_path is not None:
        raise UserError("give --text TEXT (several to compare them) or --input FILE, not both")
    if texts is None and input_path is None:
        raise UserError(
            "nothing to embed: give --text TEXT (several to compare them) or --input FILE"
        )
    if pooling is not None and pooling not in POOLINGS:
        raise UserError(f"--pooling {pooling}: use {' or '.join(POOLINGS)}")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: give a whole number of at least 1")
    out = check_output(output) if output else None
    if out is not None and input_path and out.resolve() == Path(input_path).resolve():
        raise UserError(f"--output {output} is the --input file; give another file name")
    model_dir = Path(source.removeprefix("hf:"))
    if out is not None and out.exists() and model_dir.is_dir():
        if model_dir.resolve() in out.resolve().parents:  # metrics.jsonl, config.json, ...
            raise UserError(
                f"--output {output} is one of {source}'s own files; give a new file name"
            )
    if out is not None:
        from encoderlab.inference import check_output_writable

        check_output_writable(out)
    if input_path:
        ids, data = read_texts(input_path, text_column)
        if not data:
            raise UserError(f"{input_path}: no texts in the file")
    else:
        data = list(texts or [])
        ids = [str(i) for i in range(len(data))]
    loud = say if out is not None or not input_path else _to_stderr  # stdout: the vectors
    embedder = load_embedder(source, loud)
    vectors, cut = embedder.embed(data, pooling, normalize, batch_size, progress=bool(input_path))
    if cut:
        loud(
            f"warning: {len(cut):,} of {len(data):,} texts were longer than the encoder's "
            f"max_len of {embedder.max_len} tokens: their end was cut"
        )
    if out is not None:
        try:
            write_vectors(out, ids, vectors)
        except OSError as e:
            raise UserError(f"--output {out}: cannot write it ({e.strerror or e})") from None
        how = f"{pooling or embedder.pooling} pooling" + (", L2-normalised" if normalize else "")
        say(f"wrote {len(data):,} vectors of {embedder.dim} dimensions ({how}) to {out}")
    elif input_path or len(data) == 1:
        for i, v in zip(ids, vectors, strict=True):
            say(json.dumps({"id": i, "embedding": [round(float(x), 6) for x in v]}))
    else:
        for line in similarity_table(data, vectors):
            say(line)
    return vectors


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
