"""The claims the test provider hands out: e-mail, whether it is verified, the user's groups."""

import os
from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator


class ClaimsValidator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "profile"}

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        unverified = {e.strip().lower() for e in os.environ.get("OIDC_PROVIDER_UNVERIFIED", "").split(",") if e.strip()}
        return {"email": user.email, "email_verified": user.email.lower() not in unverified,
                "name": user.get_full_name() or user.username,
                "groups": sorted(user.groups.values_list("name", flat=True))}
