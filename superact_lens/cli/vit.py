"""``superact vit train --dataset DIR --out MODEL_DIR``: train the small ViT of the image pipeline.

Prints the per-label F1 on train and test; the folder it writes loads with
``AutoModel.from_pretrained`` like a hub model (see :mod:`superact_lens.vision.train`).
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    from superact_lens.vision.train import ViTTrainConfig

    d = ViTTrainConfig()
    p = sub.add_parser("vit", help="vision transformers trained here")
    vit_sub = p.add_subparsers(dest="vit_command", required=True)
    tr = vit_sub.add_parser(
        "train",
        help="train a small multi-label ViT on an image dataset folder (e.g. superact data clevr)",
        description="Train a ViTForImageClassification from a random init on the train split; "
        "save it (safetensors, config, image processor, training.json) to --out.",
    )
    tr.add_argument("--dataset", required=True, help="image dataset folder")
    tr.add_argument("--out", required=True, help="model folder to write")
    tr.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    tr.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    tr.add_argument("--device", default="cpu", help="torch device (default cpu)")
    tr.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    tr.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    tr.add_argument("--image-size", type=int, default=d.image_size, help=f"default {d.image_size}")
    tr.add_argument("--patch-size", type=int, default=d.patch_size, help=f"default {d.patch_size}")
    tr.add_argument("--hidden-size", type=int, default=d.hidden_size)
    tr.add_argument("--layers", type=int, default=d.num_layers)
    tr.add_argument("--heads", type=int, default=d.num_heads)
    tr.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1: faster than 2 on a busy machine)",
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from superact_lens.vision.train import ViTTrainConfig, train_vit

    cfg = ViTTrainConfig(
        image_size=args.image_size,
        patch_size=args.patch_size,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        num_heads=args.heads,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    info = train_vit(
        args.dataset,
        args.out,
        cfg,
        device=args.device,
        progress=not args.quiet,
        threads=args.threads,
    )
    concepts = info["concepts"]
    width = max(len(c) for c in [*concepts, "macro"])
    print(f"{'F1':<{width}}  " + "  ".join(f"{s:>5}" for s in ("train", "cal", "test")))
    for c in concepts:
        print(f"{c:<{width}}  " + "  ".join(f"{info['f1'][s][c]:5.3f}" for s in info["f1"]))
    print(f"{'macro':<{width}}  " + "  ".join(f"{info['macro_f1'][s]:5.3f}" for s in info["f1"]))
    print(f"saved to {args.out} in {info['seconds']:.0f} s")
    return 0
