"""The MLflow pyfunc of a pretrained CLIP folder, logged as "models from code" (no pickled objects).

`mlflow.pyfunc.load_model(uri).predict(["no pleural effusion", ...])` → L2-normalised text embeddings.
The folder (artifact "clip") is a plain Hugging Face save_pretrained folder: it also loads with
`transformers.CLIPModel.from_pretrained` or `pairaug.models.clip.load_clip`. Loading needs pairaug
installed (`pip install -e .` at the run's git commit).
"""

from __future__ import annotations

from typing import Any

import mlflow
import mlflow.pyfunc


class PairaugVLP(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from pairaug.measurement.encoder import VisionLanguageModel

        self.vlp = VisionLanguageModel(context.artifacts["clip"])

    def predict(self, context, model_input: list[str], params: dict[str, Any] | None = None) -> list[list[float]]:
        return self.vlp.encode_texts([str(t) for t in model_input]).tolist()


mlflow.models.set_model(PairaugVLP())
