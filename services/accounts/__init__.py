"""Accounts and their API keys: who may call the API, and whose orders are whose (docs/decisions/0012).

Accounts and key hashes are command-side state in PostgreSQL (`oee_state.accounts`, `oee_state.api_keys`);
`Directory` answers "whose key is this" from a small cache that a revocation clears on every API process
(LISTEN/NOTIFY, with a short TTL beneath); `oee accounts ...` manages them.
"""
