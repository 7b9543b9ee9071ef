"""Work that runs beyond this process, followed through each engine's own supported API:
Dask distributed (:mod:`.dask`) and submitit / Slurm (:mod:`.submitit`). Each is an
optional extra, imported only when ``track()`` is handed that engine's handles."""
