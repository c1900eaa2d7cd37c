"""Prompt-to-prompt attention control (generate/p2p.py): token alignment and proof that the edit acts.

The mechanism tests run a tiny randomly initialised embedded UNet (cross-attention at 8x8 and 4x4,
16 px) with a tiny CLIP text encoder, saved with `save_pretrained` and loaded through the real
`load_generator` path. Other intra test files import `tiny_generator` from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from transformers import CLIPTextConfig, CLIPTextModel

from pairaug.generate.inversion import reconstruct
from pairaug.generate.p2p import (
    EditSchedule,
    LocalBlend,
    P2PAttnProcessor,
    P2PController,
    align_tokens,
    attention_control,
    edit_sample,
    prompt_token_ids,
    refine_mapper,
)
from pairaug.models.generator import (
    TextToImagePipeline,
    UNetArch,
    embedded_unet,
    load_generator,
    train_scheduler,
)
from pairaug.models.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer

REPORTS = [
    "Moderate cardiomegaly. No pleural effusion. No pulmonary edema.",
    "Moderate cardiomegaly. Large left pleural effusion. No pulmonary edema.",
    "The heart is normal in size. Mild pulmonary edema. No pneumothorax.",
    "Large right pleural effusion with right basilar atelectasis. No pneumothorax.",
    "Normal chest. No focal consolidation, effusion or pneumothorax.",
]
SOURCE, EDIT = REPORTS[0], REPORTS[1]  # y' inserts a finding and drops a word ("no")
SIZE = 16
STEPS = 6
GUIDANCE = 3.0
# A batch of 4 rows vs an ordinary batch of 2 (and, where maps are edited or observed, explicit softmax
# probabilities vs diffusers' fused attention): the same maths summed in a different order, so results
# agree to float32 rounding (~1e-6), not bit for bit. An edit that acts moves latents by ≥ 1e-2.
ATOL = 1e-4


def tiny_generator(folder: Path, size: int = SIZE, reports: list[str] = REPORTS, seed: int = 0,
                   arch: UNetArch | None = None) -> Path:
    """A randomly initialised embedded generator folder (our diffusers layout), saved with save_pretrained."""
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(reports, vocab_size=120, max_length=24)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=24, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID))
    arch = arch or UNetArch(block_out_channels=(8, 16, 16), attention_head_dim=4, norm_num_groups=4,
                            cross_attention_levels=(1, 2))
    unet = embedded_unet(arch, size, cross_attention_dim=32)
    pipe = TextToImagePipeline(unet=unet, scheduler=train_scheduler(), text_encoder=text_encoder, tokenizer=tokenizer)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> TextToImagePipeline:
    return load_generator(tiny_generator(tmp_path_factory.mktemp("gen") / "generator"))


def noise(pipe: TextToImagePipeline, seed: int = 7) -> torch.Tensor:
    return pipe.initial_noise([seed], SIZE) * pipe.scheduler.init_noise_sigma


def run_edit(pipe, source=SOURCE, edit=EDIT, eta=0.5, self_eta=0.2, self_max_positions=64, observer=None,
             guidance=GUIDANCE):
    return edit_sample(pipe, [source], [edit], noise(pipe), steps=STEPS, guidance=guidance, eta=eta,
                       self_eta=self_eta, self_max_positions=self_max_positions, observer=observer)


# ------------------------------------------------------------------------------------- token alignment

def test_alignment_maps_shared_tokens_and_marks_new_ones():
    # source: a b c d    edit: a x c d e  → a, c, d shared; x (a substitution) and e (an insertion) new
    assert align_tokens([1, 2, 3, 4], [1, 9, 3, 4, 5]).tolist() == [0, -1, 2, 3, -1]
    # a deletion shifts the later tokens back to their source positions
    assert align_tokens([1, 2, 3, 4, 5], [1, 2, 4, 5]).tolist() == [0, 1, 3, 4]
    assert align_tokens([5, 6, 7], [5, 6, 7]).tolist() == [0, 1, 2]
    assert align_tokens([1, 2], [3, 4]).tolist() == [-1, -1]


def test_alignment_of_real_prompts_keeps_padding_and_finds_the_inserted_words(pipe):
    ids_src, ids_edit = prompt_token_ids(pipe, [SOURCE]), prompt_token_ids(pipe, [EDIT])
    index, shared = refine_mapper(ids_src, ids_edit)
    src, edit = ids_src[0].tolist(), ids_edit[0].tolist()
    assert all(src[i] == edit[j] for j, i in enumerate(index[0].tolist()) if shared[0, j])
    new_words = pipe.tokenizer.decode([t for t, s in zip(edit, shared[0].tolist()) if not s]).split()
    assert "large" in new_words and "left" in new_words and "cardiomegaly" not in new_words
    assert shared[0, -1] and edit[-1] == PAD_ID  # padding is shared, like any common token


# ---------------------------------------------------------------------------------- the controller


def test_controller_edits_only_the_conditional_edit_rows():
    n, heads, q, k = 2, 2, 4, 5
    index = torch.tensor([[0, 1, 1, 3, 4], [0, 2, 1, 3, 4]])
    shared = torch.tensor([[True, True, False, True, True], [True, False, True, True, False]])
    ctl = P2PController(n, index, shared, EditSchedule(steps=10, eta=0.5, self_eta=0.2, self_max_positions=4))
    probs = torch.rand(4 * n, heads, q, k)
    before = probs.clone()
    out = ctl(probs, True, "layer")
    assert torch.equal(out[:3 * n], before[:3 * n])  # uncond y, uncond y', cond y untouched
    src, edit = before[2 * n:3 * n], out[3 * n:]
    for p in range(n):
        for j in range(k):
            want = src[p, :, :, index[p, j]] if shared[p, j] else before[3 * n + p, :, :, j]
            assert torch.equal(edit[p, :, :, j], want)
    ctl.step = 5  # 5 is not < 0.5 * 10: no swap any more
    probs = torch.rand(2 * n, heads, q, k)  # guidance 1: [cond y, cond y']
    assert torch.equal(ctl(probs.clone(), True, "layer"), probs)
    ctl.step = 1
    self_probs = torch.rand(2 * n, heads, q, q)
    assert torch.equal(ctl(self_probs.clone(), False, "layer")[n:], self_probs[:n])  # 4 positions ≤ 4: injected
    big = torch.rand(2 * n, heads, 9, 9)
    assert torch.equal(ctl(big.clone(), False, "layer"), big)  # 9 positions > 4: left alone
    with pytest.raises(ValueError, match="does not hold"):
        ctl(torch.rand(3, heads, q, k), True, "layer")


def test_schedule_counts_steps_from_the_noisiest():
    s = EditSchedule(steps=15, eta=0.5, self_eta=0.2, self_max_positions=64)
    assert [i for i in range(15) if s.cross(i)] == list(range(8))  # i < 7.5
    assert [i for i in range(15) if s.self_attention(i, 64)] == [0, 1, 2]
    assert not s.self_attention(0, 256)


# -------------------------------------------------------------------------- the mechanism, end to end


def test_a_eta_zero_is_an_ordinary_generation_of_the_edit_prompt(pipe):
    src, edit = run_edit(pipe, eta=0.0, self_eta=0.0)
    ordinary_edit = reconstruct(pipe, noise(pipe), [EDIT], STEPS, GUIDANCE)
    ordinary_src = reconstruct(pipe, noise(pipe), [SOURCE], STEPS, GUIDANCE)
    torch.testing.assert_close(edit, ordinary_edit, atol=ATOL, rtol=0)
    torch.testing.assert_close(src, ordinary_src, atol=ATOL, rtol=0)
    # and the pipeline's own __call__ (default attention processors) draws the same image
    called = pipe([EDIT], [7], num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=SIZE)
    assert np.abs(called.astype(int) - pipe.decode(edit).astype(int)).max() <= 1
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())  # left clean


def test_b_eta_positive_changes_the_edit_branch_only(pipe):
    src0, edit0 = run_edit(pipe, eta=0.0, self_eta=0.0)
    src, edit = run_edit(pipe, eta=0.5, self_eta=0.0)
    assert (edit - edit0).abs().max() > 100 * ATOL
    torch.testing.assert_close(src, src0, atol=ATOL, rtol=0)  # the source branch is never edited
    _, edit_self = run_edit(pipe, eta=0.5, self_eta=0.5)
    assert (edit_self - edit).abs().max() > 100 * ATOL  # self-attention injection acts too
    # the edit pulls x' towards the source image: closer to it than the unedited generation of y'
    assert (edit_self - src).abs().mean() < (edit0 - src0).abs().mean()


class Recorder:
    """An attention controller that edits nothing and keeps the conditional rows' maps per (step, layer)."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.maps: dict[tuple[int, str], torch.Tensor] = {}

    def __call__(self, probs, is_cross, layer):
        step = self.calls.get(layer, 0)
        self.calls[layer] = step + 1
        self.maps[(step, layer)] = probs[probs.shape[0] // 2:].clone()  # [uncond; cond] → cond
        return probs


def test_c_swapped_steps_give_the_edit_branch_the_sources_maps_on_shared_tokens(pipe):
    # the source's maps, recorded in an independent ordinary generation of y from the same latent
    recorder = Recorder()
    with attention_control(pipe.unet, recorder):
        reconstruct(pipe, noise(pipe), [SOURCE], STEPS, GUIDANCE)
    seen: dict[tuple[int, str], tuple[bool, torch.Tensor]] = {}

    def observe(step, layer, is_cross, src_maps, edit_maps):
        seen[(step, layer)] = (is_cross, edit_maps.clone())

    eta, self_eta, max_pos = 0.5, 0.34, 16
    run_edit(pipe, eta=eta, self_eta=self_eta, self_max_positions=max_pos, observer=observe)
    index, shared = refine_mapper(prompt_token_ids(pipe, [SOURCE]), prompt_token_ids(pipe, [EDIT]))
    index, shared = index[0], shared[0]
    assert (~shared).sum() >= 2
    swapped = [i for i in range(STEPS) if i < eta * STEPS]
    checked = {"cross": 0, "cross_after": 0, "self": 0, "self_big": 0}
    for (step, layer), (is_cross, edit_maps) in seen.items():
        src_maps = recorder.maps[(step, layer)]
        if is_cross:
            aligned = src_maps[..., index[shared]]
            if step in swapped:
                torch.testing.assert_close(edit_maps[..., shared], aligned, atol=1e-5, rtol=0)
                assert not torch.allclose(edit_maps[..., ~shared], src_maps[..., ~shared], atol=1e-3)
                checked["cross"] += 1
            else:  # after η·T the edit branch attends with its own maps again
                assert not torch.allclose(edit_maps[..., shared], aligned, atol=1e-3)
                checked["cross_after"] += 1
        elif step < self_eta * STEPS:
            if edit_maps.shape[-2] <= max_pos:
                torch.testing.assert_close(edit_maps, src_maps, atol=1e-5, rtol=0)
                checked["self"] += 1
            elif step > 0:  # (at step 0 the branches' first layers still see the same latent)
                assert not torch.allclose(edit_maps, src_maps, atol=1e-3)
                checked["self_big"] += 1
    assert all(checked.values()), checked  # every case was met at least once
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())


def test_d_an_unchanged_report_gives_the_source_image(pipe):
    src, edit = run_edit(pipe, source=SOURCE, edit=SOURCE, eta=0.5, self_eta=0.2)
    assert np.array_equal(pipe.decode(src), pipe.decode(edit))
    torch.testing.assert_close(src, edit, atol=1e-6, rtol=0)


def test_guidance_one_runs_the_two_branch_batch(pipe):
    src, edit = run_edit(pipe, eta=0.0, self_eta=0.0, guidance=1.0)
    torch.testing.assert_close(edit, reconstruct(pipe, noise(pipe), [EDIT], STEPS, 1.0), atol=ATOL, rtol=0)


def test_processor_is_restored_after_an_error(pipe):
    def boom(probs, is_cross, layer):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), attention_control(pipe.unet, boom):
        assert all(isinstance(p, P2PAttnProcessor) for p in pipe.unet.attn_processors.values())
        reconstruct(pipe, noise(pipe), [SOURCE], 1, GUIDANCE)
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())


def test_explicit_maps_only_where_the_schedule_edits(pipe, monkeypatch):
    from diffusers.models.attention_processor import Attention

    calls = {"cross": 0, "self": 0}
    real = Attention.get_attention_scores

    def counting(self, query, key, mask=None):
        calls["cross" if self.is_cross_attention else "self"] += 1
        return real(self, query, key, mask)

    monkeypatch.setattr(Attention, "get_attention_scores", counting)
    run_edit(pipe, eta=0.5, self_eta=0.34, self_max_positions=16)
    layers = [name for name in pipe.unet.attn_processors]
    n_cross = sum(name.endswith("attn2.processor") for name in layers)
    n_self_small = sum(name.endswith("attn1.processor") and name.startswith(("down_blocks.2", "mid_block", "up_blocks.0"))
                       for name in layers)  # the 4x4 level: 16 query positions
    assert calls == {"cross": n_cross * 3, "self": n_self_small * 3}  # steps 0-2 of 6 (< 0.5·6 and < 0.34·6)


# ---------------------------------------------------------------------- re-weighting and local blend


def _first_cross_maps(pipe, reweight):
    """The conditional maps (source, edit) of the first cross-attention call of the first step."""
    seen = []

    def observe(step, layer, is_cross, src_maps, edit_maps):
        if is_cross and not seen:
            seen.append((src_maps.clone(), edit_maps.clone()))

    edit_sample(pipe, [SOURCE], [EDIT], noise(pipe), steps=STEPS, guidance=GUIDANCE, eta=0.5, self_eta=0.0,
                self_max_positions=64, observer=observe, reweight=reweight)
    return seen[0]


def test_reweighting_a_token_changes_only_what_that_token_attends_to(pipe):
    src1, edit1 = _first_cross_maps(pipe, 1.0)
    src3, edit3 = _first_cross_maps(pipe, 3.0)
    _, shared = refine_mapper(prompt_token_ids(pipe, [SOURCE]), prompt_token_ids(pipe, [EDIT]))
    added = ~shared[0]
    assert added.any()
    torch.testing.assert_close(edit3[..., added], 3.0 * edit1[..., added], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(edit3[..., ~added], edit1[..., ~added], atol=0, rtol=0)  # the others: untouched
    torch.testing.assert_close(src3, src1, atol=0, rtol=0)  # and the source branch
    # and it acts on the image
    _, plain = run_edit(pipe)
    _, weighted = edit_sample(pipe, [SOURCE], [EDIT], noise(pipe), steps=STEPS, guidance=GUIDANCE, eta=0.5,
                              self_eta=0.2, self_max_positions=64, reweight=3.0)
    assert (weighted - plain).abs().max() > 100 * ATOL


def test_local_blend_masks_where_the_changed_tokens_attend():
    # planted maps on a 4x4 layer: the removed token attends to the top-left corner in the source branch,
    # the added one to the bottom-right in the edit branch; the mask is their union, nothing else
    blend = LocalBlend(threshold=0.5, start=0.0, max_positions=16)
    blend.begin((4, 4))
    src, edit = torch.full((1, 2, 16, 3), 0.01), torch.full((1, 2, 16, 3), 0.01)
    src[0, :, 0, 1] = 1.0  # query (0, 0) attends to key 1 (removed)
    edit[0, :, 15, 2] = 1.0  # query (3, 3) attends to key 2 (added)
    removed, added = torch.tensor([[False, True, False]]), torch.tensor([[False, False, True]])
    blend.collect(src, edit, removed, added)
    x = torch.cat([torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)])  # [source; edit]
    out = blend(step=0, steps=4, x=x)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = expected[2:, 2:] = True  # each point, grown by the 3x3 max-pool
    assert torch.equal(blend.mask[0, 0].bool(), expected)
    assert torch.equal(out[1, 0], expected.float())  # edit inside the mask, source outside
    assert torch.equal(out[0], x[0])


def test_local_blend_keeps_the_source_outside_the_mask(pipe):
    # the untrained UNet attends almost uniformly (maps within ~5% of their maximum): a high cut
    blend = LocalBlend(threshold=0.985, start=0.2)
    src, edit = edit_sample(pipe, [SOURCE], [EDIT], noise(pipe), steps=STEPS, guidance=GUIDANCE, eta=0.5,
                            self_eta=0.2, self_max_positions=64, blend=blend)
    mask = blend.mask[0, 0].bool()
    assert 0 < int(mask.sum()) < mask.numel()  # a region, not nothing and not the whole film
    # the embedded generator samples pixels: outside the mask x' is the source branch's, bit for bit
    assert torch.equal(edit[0, :, ~mask], src[0, :, ~mask])
    assert (edit[0, :, mask] - src[0, :, mask]).abs().max() > 100 * ATOL  # inside, the edit draws
    # the source branch is the same as without blending (only the edit branch is blended)
    src0, _ = run_edit(pipe)
    torch.testing.assert_close(src, src0, atol=ATOL, rtol=0)
