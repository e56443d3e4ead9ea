"""The gateway's resources: keys (issue, rotate, revoke, block, the Cline setup), provider credentials, routes."""
