"""The client (the portal) and the people of the test provider."""

from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application


class Command(BaseCommand):
    help = "Registers the portal as a client and creates users: --user email:password:group1,group2"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--client-id", required=True)
        parser.add_argument("--client-secret", required=True)
        parser.add_argument("--redirect-uri", required=True)
        parser.add_argument("--user", action="append", default=[])

    def handle(self, *args: Any, **options: Any) -> None:
        Application.objects.update_or_create(client_id=options["client_id"], defaults={
            "name": "LLMOps Portal", "client_secret": options["client_secret"],
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": options["redirect_uri"], "algorithm": Application.RS256_ALGORITHM,
            "skip_authorization": True})
        for spec in options["user"]:
            email, password, groups = spec.split(":", 2)
            user, _ = User.objects.get_or_create(username=email, defaults={"email": email})
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups.split(",") if g])
