"""PairAug for radiology: synthetic image-report pairs for vision-language pretraining."""

import os as _os

# Nothing in this project downloads weights or datasets (code that would must fail clearly), and the
# stages' logs stay readable: no Hugging Face load reports or progress bars. Users may override.
for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
                     ("TRANSFORMERS_VERBOSITY", "error"), ("DIFFUSERS_VERBOSITY", "error"),
                     ("TOKENIZERS_PARALLELISM", "false")):
    _os.environ.setdefault(_key, _value)

__version__ = "0.1.0"
