"""Training and evaluation: ``model.fit`` with checkpoints, TensorBoard and early stopping; per-task-sentence
metrics; expert utilization."""
