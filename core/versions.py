"""The version contract shared by rows, events and caches.

A row's version starts at 1 and goes up by one on every save (`core.models.VersionedModel`); an
event carries the version its change produced, and a cache keeps the highest version it has seen.
A deletion carries `FINAL_VERSION`, above any version a row can reach, so its tombstone outranks
every late event about the deleted entity. (2**53: still exact in a Lua number and in JSON.)
"""

FINAL_VERSION = 2**53
