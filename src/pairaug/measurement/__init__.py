"""Measurement: what training (selection on valid), generation (its quality checks) and evaluation
(the test split) all measure with — zero-shot prompts and probabilities, AUCs, the pixel probe, the
linear probe, a pretrained CLIP's encoder, a split's images. It sits below train/, generate/ and
evaluate/, so those three import it and never each other."""
