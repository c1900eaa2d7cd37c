"""`pairaug review`: page through the synthetic pairs of a workspace in the browser and record verdicts
(accept / reject / flag) in review/decisions.csv, which `prune` applies on the next `dvc repro`.

`workspace` reads the DVC outputs; `app` is the Starlette app over them; `cli` the command."""
