"""The study service: config, storage, search space, trial loop, workers, warm start, final refit."""
