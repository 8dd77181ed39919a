"""`encoderlab export RUN --to-onnx model.onnx`: a run as an ONNX graph, for onnxruntime.

Any run exports, whatever its head (cls, mean, cnn, pooler, token, span) or backbone: the
graph is traced from the PyTorch model itself, so nothing is mapped by hand.

  inputs   input_ids, attention_mask, token_type_ids: int64 (batch, sequence), both axes
           dynamic (one graph serves any batch size and any length up to model.max_len)
  output   logits: (batch, labels) for classification/pair, (batch, sequence, labels) for
           tagging, (batch, sequence, 2) for qa (channel 0 start, 1 end), (batch, sequence,
           vocab) for a pretraining run's MLM head

The exporter is torch.onnx's TorchScript-based one (dynamo=False): the dynamo exporter,
torch's default since 2.9, needs the onnxscript package, and this graph has nothing the
older exporter cannot express. Opset 17 (LayerNormalization as one op). The label names and
the run's tokenizer are written next to the graph (model.onnx.json, model.onnx.tokenizer/).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from encoderlab.config import FinetuneConfig, load_config
from encoderlab.errors import UserError
from encoderlab.hf import run_encoder
from encoderlab.inference import TaskModel
from encoderlab.model import MaskedLM
from encoderlab.runs import Run, load_run_weights, run_checkpoint, run_labels, run_model_config
from encoderlab.tasks import get_task
from encoderlab.tasks.registry import task_kind
from encoderlab.tokenizer import load_tokenizer, save_tokenizer

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _Logits(nn.Module):
    """The run's model with one call shape: (ids, mask, types) -> logits tensor."""

    def __init__(self, model: nn.Module, mlm: bool) -> None:
        super().__init__()
        self.model = model
        self.mlm = mlm

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        out = self.model(input_ids, attention_mask, token_type_ids)
        return out.logits if self.mlm else out


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX export needs onnx: pip install 'encoderlab[onnx]'") from None
    return onnx


def run_logits_model(run: Run) -> tuple[nn.Module, dict[str, Any]]:
    """The run's model in eval mode behind `_Logits`, and what the sidecar file says of it."""
    check_onnx_exportable(run)
    kind = str(run.info.get("kind", ""))
    mc = run_model_config(run)
    ckpt = run_checkpoint(run)
    if kind == "pretrain":
        model: nn.Module = MaskedLM(mc)
        meta: dict[str, Any] = {"kind": kind, "output": "mlm logits (batch, sequence, vocab)"}
    elif kind.startswith("finetune/"):
        cfg = load_config(run.path / "config.yaml", schema=FinetuneConfig)
        task = get_task(cfg.task.type)
        labels = run_labels(run)
        head = task.head(cfg.head, mc.d_model, max(len(labels), 1))
        model = TaskModel(run_encoder(run, mc), head)
        meta = {
            "kind": kind,
            "task": task.type,
            # a token-level task's own head (tagging: token, qa: span); head.type configures
            # only the sequence heads (cls, mean, cnn, pooler)
            "head": task.hf_head if task.token_level else getattr(cfg.head, "type", None),
            "labels": ["start", "end"] if task_kind(task.type) == "qa" else labels,
            "max_len": cfg.task.max_len,
            "output": "logits: (batch, sequence, labels)"
            if task.token_level
            else "logits: (batch, labels)",
        }
        if task.hf_problem_type == "multi_label_classification":
            cut = cfg.task.threshold
            said = (
                f"{cut:g}"
                if not isinstance(cut, dict)
                else "its label's threshold (0.5 unless given)"
            )
            meta["output"] += f"; a label applies where sigmoid(logit) >= {said}"
            meta["threshold"] = cut
        meta |= reading_settings(cfg.task)
    else:
        raise UserError(
            f"{run.path}: run kind {kind!r} cannot be exported; use a pretraining or fine-tuning run"
        )
    load_run_weights(model, ckpt / "model.safetensors")
    if kind.startswith("finetune/") and task_kind(cfg.task.type) == "regression":
        # the graph gives the score itself, not its z-score (a plugin's subclass too)
        mean, std = cfg.task.target_scale()
        with torch.no_grad():
            model.head.out.weight.mul_(std)
            model.head.out.bias.mul_(std).add_(mean)
    meta |= {"checkpoint": ckpt.name, "opset": OPSET, "inputs": list(INPUTS)}
    meta.setdefault("max_len", mc.max_len)
    return _Logits(model, mlm=kind == "pretrain").eval(), meta


def onnx_exportable(run: Run) -> bool:
    """Whether --to-onnx takes this run: a fine-tuning run, or an MLM pretraining run (its MLM
    logits); an ELECTRA run's graph would be its generator, not the encoder it trained."""
    return not (str(run.info.get("kind", "")) == "pretrain" and _objective(run) != "mlm")


def _objective(run: Run) -> str:
    return str(run.info.get("objective", "mlm"))


def check_onnx_exportable(run: Run) -> None:
    if not onnx_exportable(run):
        raise UserError(
            f"{run.path}: an {_objective(run)} pretraining run has no MLM logits to export to "
            "ONNX; export its encoder with --to-hf, or fine-tune it and export that run"
        )


def reading_settings(task: Any) -> dict[str, Any]:
    """How the run cut long inputs into the graph's max_len, which a caller of the graph must
    do alike: truncation (head_tail: the first head_tokens and the end; windows: overlapping
    windows whose logits are averaged per document), and a QA run's question and context
    windows."""
    out: dict[str, Any] = {"truncation": task.truncation}
    if task.truncation == "head_tail":
        out["head_tokens"] = task.head_tokens
    elif task.truncation == "windows":
        out |= {"window_stride": task.window_stride, "max_windows": task.max_windows}
    if task_kind(task.type) == "qa":
        out |= {k: getattr(task, k) for k in ("doc_stride", "max_query_len", "max_answer_len")}
    return out


def truncation_warning(meta: dict[str, Any]) -> str | None:
    """What to say when the run read long texts otherwise than by keeping their head."""
    truncation = meta.get("truncation")
    if truncation in (None, "head") or meta.get("task") == "qa":
        return None
    return (
        f"warning: the run read texts longer than {meta['max_len']} tokens with "
        f"task.truncation={truncation}; a caller of the graph that keeps their first tokens "
        "gets other predictions than `encoderlab predict` for them (the settings are in the "
        ".json beside the graph)"
    )


def example_inputs(vocab: int, batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with right padding in every row but the first (what a padded batch looks like)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        mask[row, length - 1 - (row % max(length // 2, 1)) :] = 0
    types = torch.zeros(batch, length, dtype=torch.long)
    types[:, length // 2 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask}


def check_onnx_path(out: Path) -> None:
    """Where the graph goes, refused in one line before the model is loaded (and before
    `export --to-hf` beside it writes its folder): a folder, another suffix, a user's file."""
    if out.is_dir():
        raise UserError(f"--to-onnx {out}: is a folder; give a file, e.g. {out / 'model.onnx'}")
    if out.suffix != ".onnx":
        raise UserError(f"--to-onnx {out}: give a file name ending in .onnx, e.g. model.onnx")
    _check_outputs(out)


def _check_outputs(out: Path) -> None:
    """The graph, its .json and its .tokenizer/ replace only an earlier export's: a user's
    own file of one of those names is refused before anything is written."""
    meta_file, tok_dir = out.with_name(out.name + ".json"), out.with_name(out.name + ".tokenizer")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else None
    except (OSError, ValueError):
        meta = None
    earlier = isinstance(meta, dict) and {"checkpoint", "output"} <= meta.keys()
    for path in (out, meta_file, tok_dir):
        if not path.exists() or earlier and path.is_dir() == (path == tok_dir):
            continue
        if path == tok_dir and path.is_dir() and not any(path.iterdir()):
            continue
        raise UserError(
            f"--to-onnx {out}: {path} exists and is not from an earlier encoderlab export; "
            "give a new file name (or move it away)"
        )


def _declare_all_inputs(onnx: Any, path: Path) -> None:
    """Give the graph every input of INPUTS. The exporter drops an input the model never reads:
    token_type_ids of an encoder without a segment table (one converted from RoBERTa, XLM-R,
    DistilBERT, or a wrapped DeBERTa), and onnxruntime then refuses the documented three
    inputs ("Invalid input name: token_type_ids"). Declared again, it is accepted and unused."""
    # a graph over 2 GB keeps its weights in external files: only the graph itself is rewritten
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    present = {i.name for i in graph.input}
    missing = [name for name in INPUTS if name not in present]
    if not missing:
        return
    for name in missing:
        graph.input.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, ["batch", "sequence"])
        )
    order = {name: i for i, name in enumerate(INPUTS)}
    inputs = sorted(graph.input, key=lambda i: order.get(i.name, len(order)))
    del graph.input[:]
    graph.input.extend(inputs)
    onnx.save(model, str(path))


def export_onnx(
    run_dir: str | Path, out_path: str | Path, say: Callable[[str], None] = print
) -> Path:
    """Write the run as an ONNX graph at `out_path` (dynamic batch and sequence axes)."""
    out = Path(out_path)
    check_onnx_path(out)
    onnx = _onnx()
    run = Run.open(run_dir)
    model, meta = run_logits_model(run)
    for note in run.skip_notes():
        say(note)
    warning = truncation_warning(meta)
    if warning:
        say(warning)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # /proc/x, a read-only mount: the user's choice of path
        raise UserError(
            f"--to-onnx {out}: cannot make its folder ({e.strerror or e}); give another path"
        ) from None
    vocab = run_model_config(run).vocab_size or 100
    sample = example_inputs(vocab, 2, min(16, int(meta["max_len"])))
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes["logits"] = (
        {0: "batch"}
        if meta["output"].startswith("logits: (batch, labels)")
        else {
            0: "batch",
            1: "sequence",
        }
    )
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shapes and deprecation
        torch.onnx.export(
            model,
            tuple(sample[k] for k in INPUTS),
            str(out),
            input_names=list(INPUTS),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    _declare_all_inputs(onnx, out)
    onnx.checker.check_model(str(out))
    out.with_name(out.name + ".json").write_text(
        json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    # named after the graph, like its .json: a user's own tokenizer/ beside it is not touched
    tok_dir = out.with_name(out.name + ".tokenizer")
    save_tokenizer(load_tokenizer(run.path / "tokenizer"), tok_dir, meta["max_len"])
    say(
        f"exported {run.path} ({meta['kind']}, {meta['checkpoint']}) to {out} (opset {OPSET}); "
        f"labels and max_len: {out.name}.json, tokenizer: {tok_dir.name}/"
    )
    return out
