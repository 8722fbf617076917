"""GL-Native Deploy: install k3s and the GL-Native Execution Backend on single-node, HA and
air-gapped hosts. Entry points are the invoke tasks (tasks.py); see docs/architecture.md."""
