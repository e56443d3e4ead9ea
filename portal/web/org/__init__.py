"""Organization administration: settings and budgets, teams and members, projects, API tokens, the audit log."""
