"""Features of every item from a pretrained encoder used as it is (no training on the folder),
with the same preprocessing a run would use; writes FEATS.npy and FEATS.paths.txt like
`sslstudio embed`, so bench/fewshot.py and bench/fewshot_text.py read them.

    python bench/embed_pretrained.py --data DIR --backbone pretrained_efficientnet_lite0 \
        --weights FILE [--image-size 96] --out FEATS.npy
    python bench/embed_pretrained.py --data TEXTS --weights HF_MODEL_FOLDER --out FEATS.npy
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from sslstudio.core.backbones import BACKBONES, build_backbone
from sslstudio.core.backbones.bert import BertShape, is_model_folder
from sslstudio.core.control import RunControl, run_to_end
from sslstudio.core.embed import encode_items
from sslstudio.core.tokenizer import save_tokenizer_unpadded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--backbone", default="")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if is_model_folder(args.weights):
        from sslstudio.core.data.text_tokens import load_text_data

        with tempfile.TemporaryDirectory() as run:
            save_tokenizer_unpadded(Path(args.weights) / "tokenizer.json", Path(run) / "tokenizer.json")
            data, _, _ = run_to_end(load_text_data(Path(args.data), "text", False, Path(run)))
        config = (Path(args.weights) / "config.json").read_text()
        encoder = build_backbone("pretrained_bert", BertShape(config, data.max_length), args.weights)
        preprocess = {"modality": "text"}
        names = [str(data.root / item) for item in data.items]
    else:
        from sslstudio.core.data import load_image_folder

        info = BACKBONES.get(args.backbone).pretrained
        data = run_to_end(load_image_folder(Path(args.data), args.image_size, control=RunControl()))
        encoder = build_backbone(args.backbone, args.image_size, args.weights)
        encoder = encoder.to(memory_format=torch.channels_last)
        preprocess = {"mean": list(info.mean), "std": list(info.std)}
        names = [str(p) for p in data.paths]
    features = run_to_end(encode_items(encoder, data, preprocess, torch.device("cpu"), RunControl(),
                                       batch_size=256))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, features)
    out.with_suffix(".paths.txt").write_text("".join(f"{n}\n" for n in names))
    print(json.dumps({"items": len(names), "dim": int(features.shape[1]), "out": str(out)}))


if __name__ == "__main__":
    main()
