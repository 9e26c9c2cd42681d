"""Features, models and their training: the dataset schema, feature transforms, encoders,
Two-Tower and DLRM with the model registry, the Ray Train loop, scoring, metrics, and the
published version folder. Imports index only."""
