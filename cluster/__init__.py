"""KubeRay manifests, rendered from cluster/groups.yaml and serve/config.yaml (render.py)."""
