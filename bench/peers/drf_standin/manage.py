#!/usr/bin/env python
"""Django's command line for the stand-in (bench/peers/drf.py runs it in var/peers/drf)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "standin.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
