"""python manage.py bootstrap_org SLUG --owner EMAIL [--name NAME]

Creates an organization with its owner and prints an owner API token as the
last line of its output, for scripts and first set-up."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from portal.services import bootstrap_organization


class Command(BaseCommand):
    help = "Create an organization with an owner; print an owner API token as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, help="The owner's email (the user is created if missing).")
        parser.add_argument("--name", default="", help="Display name (default: the slug).")

    def handle(self, *args: Any, slug: str, owner: str, name: str, **options: Any) -> None:
        try:
            validate_email(owner)
            org, token = bootstrap_organization(slug=slug, owner_email=owner, name=name)
        except ValidationError as exc:
            messages = exc.message_dict if hasattr(exc, "error_dict") else {"error": exc.messages}
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in messages.items())) from None
        self.stderr.write(f"Created organization '{org.slug}' owned by {owner}.")
        self.stderr.write("API token (shown once; use as 'Authorization: Bearer <token>'):")
        self.stdout.write(token)
