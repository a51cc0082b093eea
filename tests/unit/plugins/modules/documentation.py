"""A module's documentation as ansible-doc shows it: its DOCUMENTATION with its doc fragments merged.

The merge follows ansible.utils.plugin_docs.add_fragments: a fragment's option is taken whole,
and what the module itself says of that option (only a different default, in this collection)
is laid over it.
"""

import importlib

import yaml

PREFIX = "virtops.migration."


def fragment_options(name):
    """The options of the doc fragment ``virtops.migration.FILE[.SECTION]``."""
    path = name[len(PREFIX):].split(".")
    module = importlib.import_module("ansible_collections.virtops.migration.plugins.doc_fragments." + path[0])
    text = getattr(module.ModuleDocFragment, path[1].upper() if len(path) > 1 else "DOCUMENTATION")
    return yaml.safe_load(text).get("options") or {}


def documentation(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = doc.setdefault("options", {})
    own = dict(options)
    for name in doc.get("extends_documentation_fragment", []):
        for key, value in fragment_options(name).items():
            merged = dict(value)
            merged.update(own.get(key) or {})
            options[key] = merged
    return doc
