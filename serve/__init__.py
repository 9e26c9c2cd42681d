"""The online path: serving settings, the in-process recommender and the Ray Serve app.
Imports interests, train and index; never flows."""
