"""Vector search over item vectors with FAISS. Imports no other package of the project."""
