"""The air-gapped site bundle: build (online side), sign, split, unpack and verify (offline side).

Modules: manifest (manifest.json and SHA256SUMS), build, sign (ssh-keygen -Y), split (tar parts,
PARTS.sha256, unpack with a free-space check) and verify. scripts/bundle/verify.sh is the bash
verifier shipped inside every bundle; both verifiers refuse the same faults with the same exit codes.
"""
