"""Writes to virtual keys, by meaning:

- `rules`: who may write a key, its team's routes, the checks every write runs, the audited state;
- `writes`: issue (also idempotently), edit, rotate with a grace period;
- `status`: block, unblock, revoke, and revoke the keys of someone who leaves;
- `secret`: a key's secret and the gateway (told inside the transaction; ended graces pushed);
- `portal_keys`: the portal's own keys per project (judge and benchmark calls).

Callers import from here: `from gateway.services import keys; keys.key_create(...)`."""

from gateway.services.keys.portal_keys import service_key_create, service_key_rederive
from gateway.services.keys.rules import (
                                         EDITABLE,
                                         KEY_FIELDS,
                                         LIMIT_FIELDS,
                                         MAX_METADATA_BYTES,
                                         check_may_write,
                                         default_model,
                                         key_state,
                                         usable_routes,
)
from gateway.services.keys.secret import keys_push_ended_graces
from gateway.services.keys.status import key_block, key_revoke, key_unblock, keys_revoke_owned_by
from gateway.services.keys.writes import (
                                         IdempotentResult,
                                         IssuedKey,
                                         key_create,
                                         key_create_idempotent,
                                         key_rotate,
                                         key_update,
)

__all__ = ["EDITABLE", "KEY_FIELDS", "LIMIT_FIELDS", "MAX_METADATA_BYTES", "IdempotentResult", "IssuedKey",
           "check_may_write", "default_model", "key_block", "key_create", "key_create_idempotent", "key_revoke",
           "key_rotate", "key_state", "key_unblock", "key_update", "keys_push_ended_graces", "keys_revoke_owned_by",
           "service_key_create", "service_key_rederive", "usable_routes"]
