"""A module's documentation as ansible-doc shows it: its DOCUMENTATION with its doc fragments merged.

The merge follows ansible.utils.plugin_docs.add_fragments: a fragment's option (or attribute)
is taken whole, and what the document already says of it (the module's own different default,
or an earlier fragment) is laid over it.
"""

import importlib

import yaml

PREFIX = "virtops.migration."


def fragment(name):
    """The doc fragment ``virtops.migration.FILE[.SECTION]``."""
    path = name[len(PREFIX):].split(".")
    module = importlib.import_module("ansible_collections.virtops.migration.plugins.doc_fragments." + path[0])
    return yaml.safe_load(getattr(module.ModuleDocFragment, path[1].upper() if len(path) > 1 else "DOCUMENTATION"))


def fragment_options(name):
    """The options of the doc fragment ``virtops.migration.FILE[.SECTION]``."""
    return fragment(name).get("options") or {}


def documentation(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    fragments = [fragment(name) for name in doc.get("extends_documentation_fragment", [])]
    for section in ("options", "attributes"):
        merged_section = doc.setdefault(section, {})
        for found in fragments:
            for key, value in (found.get(section) or {}).items():
                # As Ansible merges: what the document already says of the key wins over the fragment.
                merged = dict(value)
                merged.update(merged_section.get(key) or {})
                merged_section[key] = merged
    return doc
