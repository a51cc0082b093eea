"""Make the collection importable as ansible_collections.virtops.migration for unit tests.

Installed (from the tarball, under ansible_collections/virtops/migration), it already is:
ansible-test puts its collections root on sys.path. In a checkout, the same link as
`make collection` does it: .tmp/collections/ansible_collections/virtops/migration points
at the checkout, and .tmp/collections goes first on sys.path.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTALLED = REPO.split(os.sep)[-3:] == ["ansible_collections", "virtops", "migration"]
COLLECTIONS = os.path.join(REPO, ".tmp", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "virtops", "migration")

if not INSTALLED:
    if os.path.realpath(LINK) != os.path.realpath(REPO):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        if os.path.islink(LINK):
            os.unlink(LINK)
        os.symlink(REPO, LINK)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
