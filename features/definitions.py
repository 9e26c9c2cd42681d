"""Feature definitions: what a user and an item are to Feast, where their values come from,
and which features each model reads. Imported lazily (`import feast` costs seconds)."""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Float32, Int64

# The request's key: serving looks a user up by the id the client sends, so the join key is
# that raw id (a string), not the version's vocabulary index (which changes per version).
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
              description="a shopper, keyed by the id requests carry")

# Items are keyed the same way; only offline jobs read their attributes through Feast.
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING,
              description="a catalog item, keyed by its catalog id")

# Model-ready static columns, computed once per version by `serve.online.materialize` with
# the version's fitted transforms, so serving applies no scikit-learn transform per request.
user_profile_source = FileSource(name="user_profile_source", path="user_profile.parquet",
                                 timestamp_field="event_timestamp")

# The training history of each user as of the version; events update it through the push
# source below, and this parquet is what a re-materialization starts again from.
user_activity_source = FileSource(name="user_activity_source", path="user_activity.parquet",
                                  timestamp_field="event_timestamp")

# Real-time updates from click events: a push writes the online store directly (no batch
# job between an event and the next request).
user_activity_push = PushSource(name="user_activity_push", batch_source=user_activity_source)

# The catalog's model-ready attributes, for offline jobs (training sets, audits).
item_attributes_source = FileSource(name="item_attributes_source",
                                    path="item_attributes.parquet",
                                    timestamp_field="event_timestamp")

# No TTL on user features: a user's profile and history stay valid until the next version
# or the next event, however long ago they were written.
NO_TTL = timedelta(0)

# Indices and scalars exactly as the models take them (train/features.py `user_features`):
# OOV is 0 in every index, age is standardized.
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=NO_TTL,
    schema=[
        Field(name="user", dtype=Int64, description="vocabulary index, 0 = OOV"),
        Field(name="gender", dtype=Int64, description="gender index, 0 = unknown"),
        Field(name="age_bucket", dtype=Int64, description="quantile bucket, 0 = unknown"),
        Field(name="age", dtype=Float32, description="standardized age, 0 = unknown"),
    ],
    online=True,
    source=user_profile_source,
    tags={"updated_by": "materialize"},
)

# What the user did: the top category by clicks and the share of impressions per category,
# in the version's category-index order (the Two-Tower query tower's `history` input).
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=NO_TTL,
    schema=[
        Field(name="top_category", dtype=Int64, description="category index, 0 = none"),
        Field(name="category_shares", dtype=Array(Float32),
              description="(C,) share of impressions per category index"),
    ],
    online=True,
    source=user_activity_push,
    tags={"updated_by": "materialize, events"},
)

# Offline only (online=False): candidates' item features come from the serving state's
# arrays, never from per-request entity reads.
item_attributes = FeatureView(
    name="item_attributes",
    entities=[item],
    ttl=NO_TTL,
    schema=[
        Field(name="category", dtype=Int64),
        Field(name="style", dtype=Int64),
        Field(name="price_bucket", dtype=Int64),
        Field(name="price", dtype=Float32, description="log1p price, standardized"),
    ],
    online=False,
    source=item_attributes_source,
)

# One service per model version, listing exactly the user features that model reads.
# The query tower reads the ids, age bucket, gender, top category and category shares.
two_tower_v1 = FeatureService(
    name="two_tower_v1",
    features=[user_profile[["user", "gender", "age_bucket"]],
              user_activity[["top_category", "category_shares"]]],
    description="user inputs of the Two-Tower query tower",
)

# The DLRM reads the same ids plus the standardized age; `category_shares` gives its
# `hist_category` (the share in the candidate's category).
dlrm_v1 = FeatureService(
    name="dlrm_v1",
    features=[user_profile[["user", "gender", "age_bucket", "age"]],
              user_activity[["top_category", "category_shares"]]],
    description="user inputs of the DLRM ranker",
)

ENTITIES = [user, item]
FEATURE_VIEWS = [user_profile, user_activity, item_attributes]
SOURCES = [user_profile_source, user_activity_source, user_activity_push,
           item_attributes_source]
FEATURE_SERVICES = [two_tower_v1, dlrm_v1]
