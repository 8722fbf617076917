"""Day-2 operations: backup and restore, certificates, upgrade and rollback, pinned versions.

The work on a host is done by the tool scripts every bundle carries (``sequences.TOOLS``: backup.sh,
restore.sh, certs.sh, upgrade.sh); this package ships them (``remote``), copies backups off the node
and checks them (``fetch``), orders rolling upgrades (``rolling``) and describes the versions a
configuration pins and what a change of env file changes (``versions``).
"""
