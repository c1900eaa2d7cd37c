"""MLflow tracking of the pipeline, one concern per module (each imports only those above it):

- `store`     where runs go (the `tracking` params, the URI, the experiment) and opening the store to
              write (created on first use) or to read (never created);
- `lineage`   what made a model as DVC, git and the manifests say it (params DVC declares, dvc.lock,
              the DVC cache, the synthetic pairs used); no MLflow;
- `registry`  the pyfunc model logged and registered, versions and aliases;
- `runs`      what a `pretrain@mix` + `evaluate@mix` run logs, and why a failure to log never fails a stage;
- `ui`        the runs-table view of the MLflow UI and its link;
- `audit`     reading a model's audit trail back and verifying its images;
- `cli`       `pairaug audit`, `pairaug ui`, `pairaug model ...`;
- `pyfunc_model`  the "models from code" file MLflow stores with each model.
"""
