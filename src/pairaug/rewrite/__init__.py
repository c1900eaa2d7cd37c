"""Step 1 of PairAug: rewrite real train reports with an LLM (or the offline rules backend).

prompts  the three instructions with version hashes    rules  the offline, deterministic rewriter
llm      OpenAI / OpenAI-compatible / Azure backends    guard  the privacy guard
cache    the SQLite response cache                      run    the stage: concurrency, limits, metrics
"""
