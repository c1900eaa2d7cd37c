"""Synthetic image generation: InterAug / image-only (fresh noise) and IntraAug (prompt-to-prompt edits)."""
