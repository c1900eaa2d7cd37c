"""Training loops: contrastive CLIP pretraining (scorer and VLP) and diffusion (generator)."""
