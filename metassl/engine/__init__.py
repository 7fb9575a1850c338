"""Training engine: loop, schedules, EMA, evaluation, checkpoints, logging."""
