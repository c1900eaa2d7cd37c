"""Models: the report tokenizer, CLIP (scorer and VLP model), and the text-to-image generator."""
