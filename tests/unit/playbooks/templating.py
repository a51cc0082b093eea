"""Ansible's own templating, for evaluating the playbooks' conditions in unit tests.

Importing the controller's templating marks the process as Ansible's controller
(ansible.module_utils._internal.is_controller), after which a module's warnings go to the
controller's display instead of its result. The module tests of the same run need the
module's behaviour, so the flag is put back after each use.
"""

import contextlib

from ansible.module_utils import _internal


@contextlib.contextmanager
def templating(variables):
    """A function that evaluates an expression (a string) with ``variables``, as Ansible does."""
    was = _internal.is_controller
    try:
        from ansible.parsing.dataloader import DataLoader
        from ansible.template import Templar, trust_as_template

        templar = Templar(loader=DataLoader(), variables=variables)

        def evaluate(text, conditional=False):
            if conditional:
                return templar.evaluate_conditional(trust_as_template(text))
            return templar.template(trust_as_template(text))

        yield evaluate
    finally:
        _internal.is_controller = was
