"""A few contrastive training steps on fixed data, as one process or as one rank of `torchrun`.

    python tests/ddp_train_worker.py OUT.pt                                # the single-process reference
    torchrun --standalone --nproc-per-node=2 tests/ddp_train_worker.py OUT.pt   # DDP over 2 gloo ranks

Both train the same tiny CLIP from the same initialisation on the same global batches; rank 0 saves
the final state dict to OUT.pt (test_distributed.py compares the two).
"""

import itertools
import sys

import torch
from transformers import CLIPModel

from pairaug.launch import process_group, stage_device
from pairaug.models.clip import ClipArch, ImagePreprocessor, embedded_config
from pairaug.models.tokenizer import train_tokenizer
from pairaug.parallel import Ranks
from pairaug.train.contrastive import ContrastiveConfig, train_clip

WORDS = ["mild", "moderate", "large", "left", "right", "effusion", "edema", "cardiomegaly", "no", "pneumothorax"]


def main(out: str) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 16, 16), generator=gen, dtype=torch.uint8)
    texts = [" ".join(WORDS[j] for j in torch.randint(0, len(WORDS), (5,), generator=gen).tolist()) for _ in range(48)]
    arch = ClipArch(projection_dim=16, text_hidden=16, text_mlp=32, text_layers=1, text_heads=2, max_positions=16,
                    vision_hidden=16, vision_mlp=32, vision_layers=1, vision_heads=2, patch_size=4, channels=1)
    tokenizer = train_tokenizer(texts, 100, 16)
    torch.manual_seed(0)
    model = CLIPModel(embedded_config(arch, len(tokenizer), 16))
    preprocess = ImagePreprocessor(16, 1, (0.5,), (0.25,))
    cfg = ContrastiveConfig(steps=5, batch_size=16, lr=1e-3, warmup_steps=1, select_every=5)
    counter = itertools.count()  # an ever-better score: the last evaluated state is the one kept
    with process_group(Ranks.from_env()) as ranks:
        model, _ = train_clip(model, tokenizer, preprocess, images, texts, cfg, seed=0,
                              select=lambda _m: next(counter), ranks=ranks)
    assert {p.device for p in model.parameters()} == {stage_device(ranks)}  # the stage's device, on every rank
    if ranks.is_main:
        torch.save(model.state_dict(), out)


if __name__ == "__main__":
    main(sys.argv[1])
