"""One run's lifecycle: its folder, seeding and set-up, compile and fit with modelforge's callbacks, the
metrics.json record, and the trackers (MLflow, TensorBoard). TensorFlow is imported inside functions only.
"""
