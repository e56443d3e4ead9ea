"""Accounts: invitations, password set and reset, single sign-on (OIDC), organization switching."""
