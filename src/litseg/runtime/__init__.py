"""The lifecycle of a Hydra run: entry (one-line errors, exit codes), run_dir (claim the
run folder), launch (DDP workers re-run this job), resume (``ckpt_path`` to a checkpoint)."""
