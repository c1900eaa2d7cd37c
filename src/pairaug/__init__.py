"""PairAug for radiology: synthetic image-report pairs for vision-language pretraining."""

__version__ = "0.1.0"
