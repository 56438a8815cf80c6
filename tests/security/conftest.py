"""The attack suite: hostile files, hostile model output, every URL for every kind of visitor.

Everything hostile is made here, at test time (tests/security/hostile.py); nothing is stored in
the repository. The web fixtures (a private media folder per test, users, recorded tasks) are the
web tests' own."""

from tests.web.conftest import (  # noqa: F401  (fixtures)
    alice,
    alice_client,
    bob,
    forget_made_up_workers,
    media_root,
    post_upload,
    sent_tasks,
)
