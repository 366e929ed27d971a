"""Backups: streamed from the site into a store, incremental, verifiable, restorable by hand.

``store`` (S3 or a local directory, one layout), ``config`` (inventory vars),
``pack`` (tar streams in and out), ``manifest`` (the backup set), ``database``
(dumps and table checksums), ``retention`` (what prune keeps), and the
operations on top: ``backup.run_backup``, ``restore``, ``verify``, ``prune``.
"""
