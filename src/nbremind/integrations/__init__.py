"""Work that runs beyond this process, followed through each engine's own supported API:
Dask distributed (:mod:`.dask`, :mod:`.dask_span`), Ray (:mod:`.ray`) and submitit / Slurm
(:mod:`.submitit`). Each is an optional extra, imported only when the user's code uses it."""
