"""The Feast repository of the online user features: `definitions.py` (entities, sources,
feature views, one FeatureService per model) and `feature_store.yaml` (the same store for the
`feast` CLI, with `${VAR}` placeholders).

Serving reads one user's features per request through `serve/online.py`, which builds the
same `RepoConfig` in code. Item features are never read from Feast per request: the serving
state holds the whole catalog's features in arrays (300 candidates cost 0.03 ms there and
30-50 ms as Feast entity reads), so `item_attributes` exists for offline use only.

The offline sources are parquet files with paths relative to the repository path, which in
code is `OnlineConfig.path` (`<artifacts>/online` by default): `materialize` writes them
there, beside the registry and the SQLite database.
"""
