#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    from portal.config import exit_on_setting_error, load_settings_or_exit

    # A missing or malformed setting: one line on stderr naming it and where to set it, exit 2.
    load_settings_or_exit(2)
    with exit_on_setting_error(2):
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
