"""Shared by every stage, owned by none: typed errors and exit codes, where the data
directories are, escaping of user text per output context, reading untrusted files,
board files, and the numbers of the host <-> firmware protocol.

May import: nothing else in tinygen (it is the bottom layer).
"""
