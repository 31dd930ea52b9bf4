"""The limits that keep one user from taking the service from the others, and the whole
service from taking more than it can hold (docs/fair-sharing.md): `rules.py` (what each
refusal answers), `disk.py` (the upload file system's free space)."""
