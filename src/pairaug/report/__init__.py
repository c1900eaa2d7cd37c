"""The `report` stage's logic: the ablation table and verdicts (`ablation`), and the figures and
galleries that show the synthetic pairs (`figures`)."""
